/** What the bench scripts share: their command-line options and how they take percentiles. */

/** The value after `--<name>` on the command line, or `def`. */
export function opt(name: string, def: string): string {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
}

/** The nearest-rank percentile: the smallest value with at least p % of the values at or below it. */
export function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
