/**
 * Rule parameters: `-- param name = value` in a rule header, overridable from
 * configuration. A value is a duration (`500ms`, `30s`, `5m`, `1h`), an integer,
 * or a 'quoted string'. In the SQL, `$name` is replaced by a literal of the same
 * meaning in DuckDB and PostgreSQL (`INTERVAL '30 seconds'`, `10`, `'text'`).
 */
export type ParamValue = { kind: 'duration'; micros: number } | { kind: 'integer'; value: bigint } | { kind: 'string'; value: string };

const DURATION = /^(\d+)\s*(us|ms|s|m|h)$/;
const UNIT_MICROS: Record<string, number> = { us: 1, ms: 1_000, s: 1_000_000, m: 60_000_000, h: 3_600_000_000 };

export function parseParamValue(text: string): ParamValue | string {
  const t = text.trim();
  const d = DURATION.exec(t);
  if (d) return { kind: 'duration', micros: Number(d[1]) * UNIT_MICROS[d[2]!]! };
  if (/^-?\d+$/.test(t)) return { kind: 'integer', value: BigInt(t) };
  if (/^'([^']|'')*'$/.test(t)) return { kind: 'string', value: t.slice(1, -1).replace(/''/g, "'") };
  return `"${t}" is not a duration (30s, 500ms, 5m), an integer or a 'quoted string'`;
}

/** The SQL literal for a value, valid in both DuckDB and PostgreSQL. */
export function sqlLiteral(v: ParamValue): string {
  switch (v.kind) {
    case 'duration':
      return v.micros % 1_000_000 === 0 ? `INTERVAL '${v.micros / 1_000_000} seconds'` : `INTERVAL '${v.micros} microseconds'`;
    case 'integer':
      return v.value.toString();
    case 'string':
      return `'${v.value.replace(/'/g, "''")}'`;
  }
}

export interface Substitution {
  line: number; // 1-based
  column: number; // 1-based column in the original text where `$name` started
  originalLength: number;
  replacementLength: number;
}

const PARAM_REF = /\$([A-Za-z_][A-Za-z0-9_]*)/g;

/**
 * Replaces `$name` references. Unknown names are reported, not left for the SQL
 * engine to misread. Returns the substitutions so error columns map back.
 */
export function substitute(
  text: string,
  params: ReadonlyMap<string, ParamValue>,
  render: (v: ParamValue) => string = sqlLiteral,
): { text: string; unknown: { name: string; line: number; column: number }[]; substitutions: Substitution[] } {
  const unknown: { name: string; line: number; column: number }[] = [];
  const substitutions: Substitution[] = [];
  const lines = text.split('\n');
  const out = lines.map((line, i) => {
    // Comments are documentation: `$window` there must stay as written.
    const commentAt = line.indexOf('--');
    const code = commentAt >= 0 ? line.slice(0, commentAt) : line;
    const rest = commentAt >= 0 ? line.slice(commentAt) : '';
    const replaced = code.replace(PARAM_REF, (match, name: string, offset: number) => {
      const v = params.get(name);
      if (!v) {
        unknown.push({ name, line: i + 1, column: offset + 1 });
        return match;
      }
      const lit = render(v);
      substitutions.push({ line: i + 1, column: offset + 1, originalLength: match.length, replacementLength: lit.length });
      return lit;
    });
    return replaced + rest;
  });
  return { text: out.join('\n'), unknown, substitutions };
}

/** Maps a column in substituted text back to the column in the original line. */
export function originalColumn(line: number, column: number, subs: readonly Substitution[]): number {
  let shift = 0;
  for (const s of subs) {
    if (s.line !== line) continue;
    const startInNew = s.column + shift;
    if (column < startInNew) break;
    if (column < startInNew + s.replacementLength) return s.column;
    shift += s.replacementLength - s.originalLength;
  }
  return column - shift;
}

/**
 * Evaluates a duration expression such as `$window + 2 * $burst_window` to microseconds.
 * Grammar: sum of products of (durations | integers | parenthesised expressions).
 */
export function evalDuration(expr: string, params: ReadonlyMap<string, ParamValue>): number | string {
  const tokens = expr.match(/\$[A-Za-z_][A-Za-z0-9_]*|\d+\s*(?:us|ms|s|m|h)\b|\d+|[-+*()]|\S/g) ?? [];
  let pos = 0;
  const fail = (msg: string): never => {
    throw new Error(msg);
  };
  const primary = (): { v: number; duration: boolean } => {
    const t = tokens[pos++];
    if (t === undefined) return fail('unexpected end');
    if (t === '(') {
      const v = sum();
      if (tokens[pos++] !== ')') fail('missing )');
      return v;
    }
    if (t.startsWith('$')) {
      const p = params.get(t.slice(1));
      if (!p) return fail(`unknown parameter ${t}`);
      if (p.kind === 'duration') return { v: p.micros, duration: true };
      if (p.kind === 'integer') return { v: Number(p.value), duration: false };
      return fail(`${t} is a string`);
    }
    const d = DURATION.exec(t);
    if (d) return { v: Number(d[1]) * UNIT_MICROS[d[2]!]!, duration: true };
    if (/^\d+$/.test(t)) return { v: Number(t), duration: false };
    return fail(`unexpected "${t}"`);
  };
  const product = (): { v: number; duration: boolean } => {
    let left = primary();
    while (tokens[pos] === '*') {
      pos++;
      const right = primary();
      left = { v: left.v * right.v, duration: left.duration || right.duration };
    }
    return left;
  };
  const sum = (): { v: number; duration: boolean } => {
    let left = product();
    while (tokens[pos] === '+' || tokens[pos] === '-') {
      const op = tokens[pos++];
      const right = product();
      left = { v: op === '+' ? left.v + right.v : left.v - right.v, duration: left.duration || right.duration };
    }
    return left;
  };
  try {
    const r = sum();
    if (pos !== tokens.length) fail(`unexpected "${tokens[pos]}"`);
    if (!r.duration && r.v !== 0) fail('not a duration');
    if (r.v < 0) fail('negative');
    return r.v;
  } catch (err) {
    return `"${expr}": ${(err as Error).message}`;
  }
}
