/**
 * ISO-8601 timestamps to event time in microseconds (UTC), with the zone rule of
 * README.md, *The order event*: an explicit offset or `Z` is taken as is; a timestamp
 * without one is local time in the configured IANA zone (default Asia/Seoul).
 */

const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** Throws RangeError for a zone name the runtime does not know. */
export function assertTimeZone(zone: string): void {
  formatterFor(zone);
}

/** Offset of `zone` from UTC at instant `utcMs`, in milliseconds. */
function zoneOffsetMs(zone: string, utcMs: number): number {
  const parts = formatterFor(zone).formatToParts(new Date(utcMs));
  const get = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return asUtc - Math.floor(utcMs / 1000) * 1000;
}

/**
 * The second of the last timestamp parsed: `head` its first 19 characters
 * (YYYY-MM-DDTHH:MM:SS), `zoneText` what followed its fraction, `us` that second's
 * instant. Orders come roughly in time order, hundreds within one second: the next
 * one is most often the same second with another fraction, which sameSecond reads
 * without the full parse (decoding 100,000 generated orders took 353-405 ms a pass
 * instead of 519-703).
 */
let lastSecond: { head: string; zoneText: string; zone: string; us: number } | null = null;

/** `text`'s instant when it is lastSecond's second, with a valid fraction or none; null otherwise. */
function sameSecond(text: string, zone: string): number | null {
  const c = lastSecond;
  if (c === null || zone !== c.zone || !text.startsWith(c.head) || !text.endsWith(c.zoneText)) return null;
  const end = text.length - c.zoneText.length;
  if (end === 19) return c.us;
  const sep = text.charCodeAt(19);
  const digits = end - 20;
  // "." or ",", then 1 to 9 digits, as ISO allows; microseconds are the first six.
  if ((sep !== 46 && sep !== 44) || digits < 1 || digits > 9) return null;
  let fraction = 0;
  for (let i = 20; i < end; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return null;
    if (i < 26) fraction = fraction * 10 + d;
  }
  return c.us + fraction * 10 ** Math.max(0, 6 - digits);
}

/**
 * Parses an ISO-8601 timestamp into microseconds since the epoch.
 * Returns a reason string instead of throwing: bad input is data, not a bug.
 */
export function parseEventTime(text: string, zone: string): number | string {
  const same = sameSecond(text, zone);
  if (same !== null) return same;
  const m = ISO.exec(text);
  if (!m) return `timestamp "${truncate(text)}" is not ISO-8601 (YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM])`;
  // Field by field, without intermediate arrays or Date objects: this runs once per order.
  const year = +m[1]!;
  const month = +m[2]!;
  const day = +m[3]!;
  const hour = +m[4]!;
  const minute = +m[5]!;
  const second = +m[6]!;
  const f = m[7];
  const fraction = f === undefined ? 0 : f.length >= 6 ? +f.slice(0, 6) : +f * 10 ** (6 - f.length);
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) {
    return `timestamp "${truncate(text)}" has a field out of range`;
  }
  if (day < 1 || day > daysInMonth(year, month)) return `timestamp "${truncate(text)}" names a day that does not exist`;
  const wallMs = Date.UTC(year, month - 1, day, hour, minute, second);
  let utcMs: number;
  const zoneText = m[8];
  if (zoneText === undefined) {
    // Local wall time: find the instant whose offset maps back to this wall time.
    // Two passes settle the offset across a daylight-saving change.
    let guess = wallMs - zoneOffsetMs(zone, wallMs);
    guess = wallMs - zoneOffsetMs(zone, guess);
    utcMs = guess;
  } else if (zoneText === 'Z' || zoneText === 'z') {
    utcMs = wallMs;
  } else {
    const sign = zoneText[0] === '-' ? -1 : 1;
    const digits = zoneText.slice(1).replace(':', '');
    const offH = Number(digits.slice(0, 2));
    const offM = Number(digits.slice(2, 4) || '0');
    if (offH > 23 || offM > 59) return `timestamp "${truncate(text)}" has an offset out of range`;
    utcMs = wallMs - sign * (offH * 60 + offM) * 60_000;
  }
  if (year < 1970 || year > 2200) return `timestamp "${truncate(text)}" is outside 1970..2200`;
  lastSecond = { head: text.slice(0, 19), zoneText: zoneText ?? '', zone, us: utcMs * 1000 };
  return utcMs * 1000 + fraction;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** Microseconds since the epoch as an ISO-8601 UTC string with microseconds. */
export function formatMicros(us: number | bigint): string {
  const n = BigInt(us);
  const ms = Number(n / 1000n);
  const micros = Number(((n % 1_000_000n) + 1_000_000n) % 1_000_000n);
  return new Date(ms).toISOString().slice(0, 19) + '.' + String(micros).padStart(6, '0') + 'Z';
}

export function truncate(text: string, max = 60): string {
  return text.length > max ? text.slice(0, max) + '…' : text;
}
