/**
 * Result rows as CSV for a spreadsheet. Order fields come from the outside (an
 * attacker chooses his product name), so text is never trusted: every text value
 * is quoted (RFC 4180: the quotes inside doubled, commas and newlines kept inside
 * the quotes), and one that starts with = + - @, a tab or a carriage return, which
 * Excel, LibreOffice and Google Sheets would run as a formula, gets a leading
 * apostrophe so that it shows as text (OWASP, "CSV Injection"). Numbers and
 * timestamps are written bare, so a negative number stays a number.
 */
import type { Columns } from './engine/ports.js';

const FORMULA_START = /^[=+\-@\t\r]/;

export function csvField(value: unknown, text: boolean): string {
  if (value === null || value === undefined) return '';
  const s = String(value);
  if (!text) return s;
  return `"${(FORMULA_START.test(s) ? `'${s}` : s).replace(/"/g, '""')}"`;
}

/** A header line of the column names, then one line per row; lines end in CRLF as RFC 4180 has it. */
export function toCsv(result: Columns): string {
  const text = result.types.map((t) => t === 'VARCHAR');
  const lines = [result.names.join(',')];
  for (let i = 0; i < result.rowCount; i++) lines.push(result.columns.map((c, j) => csvField(c[i], text[j]!)).join(','));
  return lines.map((l) => l + '\r\n').join('');
}
