/**
 * Burst rules: the author writes the definition, fraud-sql maintains it.
 *
 *   -- burst: ip_address when count(*) >= $min_orders within $window
 *   SELECT count(*) AS order_count, sum(price * quantity) AS total_spent
 *   FROM burst
 *
 * An order of a key is *hot* when the condition holds over the key's orders in
 * (t - window, t]; each hot order covers that span; overlapping spans of one key
 * merge into a burst; one row per key per burst with window_start (its first
 * order), window_end (its last hot order) and the aggregates over its orders.
 *
 * This module parses that form and generates the incremental SQL: it reads the
 * rule's own rows as of the last batch (result_<name>) and only the orders of the
 * batch's keys from one window before their first new order. A burst that began
 * earlier is carried: it keeps its start and its aggregates so far and adds what
 * the new orders bring, so a burst lasting hours is exact with state of one
 * window. That needs every condition to be monotone (adding an order never
 * makes a hot order cold: `>=` over count, sum of non-negative values, max) and
 * every aggregate to be mergeable (count, sum, min, max; count(DISTINCT x) keeps
 * the distinct values seen in a text column `<alias>_values` of the target).
 */
import { evalDuration, sqlLiteral, substitute, type ParamValue } from './params.js';

type Fn = 'count' | 'sum' | 'min' | 'max';

export interface BurstAggregate {
  fn: Fn;
  distinct: boolean;
  /** The argument as written (`*` or an expression over order columns). */
  arg: string;
  alias: string;
  /** Line of the rule file it is written on. */
  line: number;
}

export interface BurstSpec {
  /** The order column whose orders form bursts (also what its orders are partitioned by). */
  key: string;
  windowMicros: number;
  /** The hot condition, parameters substituted: terms `fn(arg) >= operand` joined by AND/OR. */
  condition: string;
  /** Line of the `-- burst:` header. */
  line: number;
  aggregates: BurstAggregate[];
  /** `FROM burst WHERE <condition>`: only the orders it holds for count (e.g. an allow list left out). */
  where: BurstWhere | null;
}

export interface BurstWhere {
  /** The condition as written, over the order's columns. */
  text: string;
  /** Line of the rule file it starts on. */
  line: number;
}

/** Order columns a burst may be keyed by: the text fields that name who or what is busy (an order without a payment method is in no burst by it). */
export const BURST_KEYS: readonly string[] = ['user_id', 'ip_address', 'product_id', 'product_name', 'payment_method'];

const IDENT = /^[a-z_][a-z0-9_]*$/;

/** Pieces of `text` separated by `sep` (a regex matching at the start) outside parentheses and quotes. */
function splitTopLevel(text: string, sep: RegExp): { text: string; offset: number }[] {
  const out: { text: string; offset: number }[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "'") quoted = !quoted;
    if (quoted) continue;
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (depth === 0) {
      const m = sep.exec(text.slice(i));
      if (m && (i === 0 || /\s|,/.test(text[i - 1]!) || m[0].startsWith(','))) {
        out.push({ text: text.slice(start, i), offset: start });
        start = i + m[0].length;
        i = start - 1;
      }
    }
  }
  out.push({ text: text.slice(start), offset: start });
  return out;
}

/** An aggregate call in a condition, with one level of nested parentheses: `sum(price * quantity)`. */
const CALL_IN_TEXT = /\b(?:count|sum|max)\s*\((?:[^()']|'[^']*'|\((?:[^()']|'[^']*')*\))*\)/gi;
const CALL = /^(count|sum|min|max)\s*\(\s*(DISTINCT\s+)?([\s\S]+?)\s*\)$/i;

/** `-- burst: <key> when <condition> within <duration>`, the value of the header on `line`. */
export function parseBurstHeader(
  value: string,
  line: number,
  params: ReadonlyMap<string, ParamValue>,
  report: (message: string) => void,
): Omit<BurstSpec, 'aggregates' | 'where'> | null {
  const shape = /^([a-z_][a-z0-9_]*)\s+when\s+(.+?)\s+within\s+(\S+)$/i;
  const raw = shape.exec(value);
  if (!raw) {
    report(
      'a burst reads "-- burst: <key column> when <condition> within <duration>", e.g. "-- burst: ip_address when count(*) >= $min_orders within $window"',
    );
    return null;
  }
  const key = raw[1]!;
  let ok = true;
  const fail = (message: string) => {
    ok = false;
    report(message);
  };
  if (!BURST_KEYS.includes(key)) fail(`burst: "${key}" is not an order column a burst can be keyed by (one of: ${BURST_KEYS.join(', ')})`);
  const window = evalDuration(raw[3]!, params);
  if (typeof window === 'string') fail(`burst: within ${window}`);
  else if (window <= 0) fail('burst: the window must be longer than 0');
  const condition = substitute(raw[2]!, params);
  for (const u of condition.unknown) fail(`burst: unknown parameter $${u.name}`);
  const terms = splitTopLevel(condition.text, /^(AND|OR)\s/i);
  for (const term of terms) {
    const m = /^\s*(.+?)\s*>=\s*(.+?)\s*$/.exec(term.text);
    const call = m && CALL.exec(m[1]!);
    if (!m || !call || call[1]!.toLowerCase() === 'min' || (call[3] === '*' && (call[2] || call[1]!.toLowerCase() !== 'count'))) {
      fail(
        `burst: "${term.text.trim()}" is not a condition fraud-sql can carry: write "count(*) >= N", "count(DISTINCT column) >= N", "sum(expr) >= N" or "max(expr) >= N", joined by AND/OR (a burst only grows)`,
      );
    }
  }
  if (!ok || typeof window === 'string') return null;
  return { key, windowMicros: window, condition: condition.text, line };
}

/**
 * The rule's body, `SELECT <aggregate> AS <alias>, ... FROM burst`, from the
 * file's lines (parameters substituted); problems reported at their line.
 */
export function parseBurstBody(
  lines: readonly string[],
  bodyStart: number,
  report: (line: number, message: string) => void,
): { aggregates: BurstAggregate[]; where: BurstWhere | null } | null {
  // Comments blanked, not removed, so that offsets stay on their lines.
  const code = lines
    .slice(bodyStart)
    .map((l) => l.replace(/--.*$/, (c) => ' '.repeat(c.length)))
    .join('\n');
  const lineAt = (offset: number) => bodyStart + 1 + (code.slice(0, offset).match(/\n/g)?.length ?? 0);
  const m = /^\s*SELECT\s+([\s\S]+?)\s+FROM\s+burst(?:\s+WHERE\s+([\s\S]+?))?\s*;?\s*$/i.exec(code);
  if (!m) {
    report(
      bodyStart + 1,
      'a burst rule\'s SQL reads "SELECT <aggregate> AS <name>, ... FROM burst [WHERE <condition on the order>]" (fraud-sql adds the key, window_start and window_end)',
    );
    return null;
  }
  const where = m[2] === undefined ? null : { text: m[2], line: lineAt(m.index + m[0].lastIndexOf(m[2])) };
  const listStart = m.index + m[0].indexOf(m[1]!);
  const aggregates: BurstAggregate[] = [];
  let ok = true;
  for (const item of splitTopLevel(m[1]!, /^,/)) {
    const lead = item.text.length - item.text.trimStart().length;
    const line = lineAt(listStart + item.offset + lead);
    const a = /^([\s\S]+?)\s+AS\s+([A-Za-z_][A-Za-z0-9_]*)$/i.exec(item.text.trim());
    const call = a && CALL.exec(a[1]!);
    if (!a || !call) {
      ok = false;
      report(line, `"${item.text.trim()}": each column of a burst is count(*), count(x), count(DISTINCT x), sum(x), min(x) or max(x) AS <name>`);
      continue;
    }
    const fn = call[1]!.toLowerCase() as Fn;
    const distinct = Boolean(call[2]);
    const alias = a[2]!;
    if (!IDENT.test(alias)) {
      ok = false;
      report(line, `column name "${alias}" must be lower_snake_case`);
    } else if (['source_partition', 'window_start', 'window_end'].includes(alias)) {
      ok = false;
      report(line, `"${alias}" is written by fraud-sql for every burst; name the aggregate otherwise`);
    } else if (distinct && fn !== 'count') {
      ok = false;
      report(line, `${fn}(DISTINCT ...) is ${fn}(...) over distinct values: write ${fn}(...)`);
    } else if (call[3] === '*' && (fn !== 'count' || distinct)) {
      ok = false;
      report(line, `${fn}(${call[2] ?? ''}*) is not an aggregate: only count(*) takes *`);
    }
    aggregates.push({ fn, distinct, arg: call[3]!, alias, line });
  }
  if (aggregates.length === 0 && ok) {
    report(bodyStart + 1, 'a burst rule outputs at least one aggregate');
    return null;
  }
  return ok ? { aggregates, where } : null;
}

/**
 * The header fields a burst implies: one row per key per burst, replaced when
 * bursts merge, counts that only grow, final a window after its last hot order,
 * and one window of orders read (see burstSql).
 */
export function burstFields(
  def: Pick<BurstSpec, 'key' | 'windowMicros'>,
  aggregates: readonly BurstAggregate[],
): { key: string[]; replace: string[]; grows: string[]; finalAfter: string; stateMicros: number } {
  return {
    key: ['source_partition', def.key, 'window_start'],
    replace: ['source_partition', def.key],
    grows: aggregates.filter((a) => a.fn === 'count').map((a) => a.alias),
    finalAfter: `window_end + INTERVAL '${def.windowMicros} microseconds'`,
    stateMicros: def.windowMicros,
  };
}

/**
 * The columns a burst rule's rows carry for fraud-sql alone: per count(DISTINCT x),
 * the values seen so far (a JSON list that may hold thousands of ids). Left out
 * wherever rows are shown or sent: alerts, the page, Grafana, backtest's CSV.
 */
export function burstBookkeeping(spec: BurstSpec | null): string[] {
  return spec ? spec.aggregates.filter((a) => a.distinct).map((a) => `${a.alias}_values`) : [];
}

/** The result columns of a burst rule, in output order. */
export function burstColumns(spec: BurstSpec): string[] {
  return ['source_partition', spec.key, 'window_start', 'window_end', ...spec.aggregates.map((a) => a.alias), ...burstBookkeeping(spec)];
}

/**
 * The incremental SQL of a burst rule that reads its own rows as `result_<name>`.
 * The author's condition sits on the header's line and each aggregate on its own
 * line, so that a DuckDB error in them points at the right line of the file.
 */
export function burstSql(name: string, spec: BurstSpec): string {
  const K = spec.key;
  const W = sqlLiteral({ kind: 'duration', micros: spec.windowMicros });
  const frame = `INTERVAL '${spec.windowMicros - 1} microseconds'`;
  // The condition over one order's window (hot), and over a key's recent orders at
  // once: false there means false for every window inside them (monotone), so
  // most keys are never looked at order by order.
  // `count(*) >= N` alone, the commonest condition, is the time of the order N - 1
  // places back falling inside the window: cheaper than counting each order's
  // frame (4-9% of suspicious_ips' time at 10,000 orders/s). Of orders at the same
  // time the last one sees them all, and `hot` takes any of them.
  const countOnly = /^\s*count\(\*\)\s*>=\s*(\d+)\s*$/.exec(spec.condition);
  const over = countOnly
    ? `lag(event_time, ${countOnly[1]} - 1) OVER (PARTITION BY kafka_partition, ${K} ORDER BY event_time) > event_time - ${W}`
    : spec.condition.replace(CALL_IN_TEXT, (call) => `${call} OVER w`);
  const aggs = spec.aggregates;
  const fresh = aggs.map((a, i) => {
    const arg = a.arg === '*' ? 'event_time' : a.arg;
    const sql = a.distinct ? `list(DISTINCT CAST(${arg} AS VARCHAR)) FILTER (WHERE ${arg} IS NOT NULL)` : `${a.fn}(${arg})`;
    return { line: a.line, text: `${sql} AS agg_${i},`, verbatim: true };
  });
  const carriedSums = aggs
    .map((a, i) =>
      a.distinct
        ? `flatten(list(coalesce(from_json(c.${a.alias}_values, '["VARCHAR"]'), []::VARCHAR[]))) AS carried_${i}`
        : `${a.fn === 'count' ? 'sum' : a.fn}(c.${a.alias}) AS carried_${i}`,
    )
    .join(', ');
  const sets = aggs
    .flatMap((a, i) => (a.distinct ? [`list_distinct(list_concat(coalesce(carried_${i}, []::VARCHAR[]), coalesce(agg_${i}, []::VARCHAR[]))) AS set_${i}`] : []))
    .join(', ');
  const outputs = aggs
    .map((a, i) => {
      if (a.distinct) return `len(set_${i}) AS ${a.alias}`;
      if (a.fn === 'count') return `coalesce(carried_${i}, 0) + agg_${i} AS ${a.alias}`;
      if (a.fn === 'sum') return `coalesce(carried_${i} + agg_${i}, carried_${i}, agg_${i}) AS ${a.alias}`;
      return `${a.fn === 'min' ? 'least' : 'greatest'}(carried_${i}, agg_${i}) AS ${a.alias}`;
    })
    .concat(aggs.flatMap((a, i) => (a.distinct ? [`to_json(list_sort(set_${i}))::VARCHAR AS ${a.alias}_values`] : [])))
    .join(', ');
  const columns = burstColumns(spec).join(', ');
  // result_<name> takes its types from this SQL's own output (see seedOwnMirror):
  // the columns read from it are typed here.
  const distinctCasts = aggs
    .filter((a) => a.distinct)
    .map((a) => `, ${a.alias}_values::VARCHAR AS ${a.alias}_values`)
    .join('');

  // Per key of the batch, with first_new its earliest new order: no order before
  // first_new changes its hot status, so only orders from one window before it are
  // read (each hot order from first_new on has its whole window among them). The
  // key's bursts that end before first_new - W are out of reach and stay as they
  // are; those that start after first_new are recomputed; the others are carried:
  // each stands in as the span from its first order to its last hot order, with
  // its aggregates so far, and takes the orders it did not count yet (new ones, and
  // old ones outside it that a merge brings in). Two spans whose union a hot order
  // bridges merge, as overlapping spans of hot orders do.
  const head = `
WITH ${touchedCte(spec)},
previous AS (
  SELECT r.*, t.first_new FROM (
    SELECT * REPLACE (source_partition::INTEGER AS source_partition, ${K}::VARCHAR AS ${K},
                      window_start::TIMESTAMP AS window_start, window_end::TIMESTAMP AS window_end${distinctCasts})
    FROM result_${name}) r
  JOIN touched t ON t.kafka_partition = r.source_partition AND t.${K} = r.${K}
),
carried AS (
  SELECT * FROM previous WHERE ${carriedWhere(spec)}
),
recent AS (
  SELECT o.*, t.first_new, o.kafka_offset >= t.first_offset AS is_new,
         EXISTS (SELECT 1 FROM carried c WHERE c.source_partition = o.kafka_partition AND c.${K} = o.${K}
                 AND o.event_time BETWEEN c.window_start AND c.window_end) AS in_carried
  ${recentFrom(spec)}
),
busy AS (
  SELECT kafka_partition, ${K} FROM recent GROUP BY ALL HAVING ${spec.condition}
  UNION SELECT source_partition, ${K} FROM carried
),
heat AS (
  SELECT *, (${over}) AS hot
  FROM (SELECT r.* FROM recent r SEMI JOIN busy b ON b.kafka_partition = r.kafka_partition AND b.${K} = r.${K})
  WINDOW w AS (PARTITION BY kafka_partition, ${K} ORDER BY event_time RANGE BETWEEN ${frame} PRECEDING AND CURRENT ROW)
),
spans AS (
  SELECT DISTINCT kafka_partition, ${K}, event_time - ${W} AS lo, event_time AS hi, NULL::TIMESTAMP AS carried_start
  FROM heat WHERE hot AND event_time >= first_new
  UNION ALL
  SELECT source_partition, ${K}, window_start - INTERVAL 1 MICROSECOND, window_end, window_start FROM carried
),
grouped AS (
  SELECT *, sum(CASE WHEN reach IS NULL OR lo >= reach THEN 1 ELSE 0 END)
              OVER (PARTITION BY kafka_partition, ${K} ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS grp
  FROM (SELECT *, max(hi) OVER (PARTITION BY kafka_partition, ${K} ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
        FROM spans)
),
bursts AS (
  SELECT kafka_partition, ${K}, grp, min(lo) AS lo, max(hi) AS last_hot FROM grouped GROUP BY ALL
),
members AS (
  SELECT b.kafka_partition AS burst_partition, b.${K} AS burst_key, b.grp, b.last_hot, o.*
  FROM bursts b
  LEFT JOIN recent o
    ON o.kafka_partition = b.kafka_partition AND o.${K} = b.${K} AND o.event_time > b.lo AND o.event_time <= b.last_hot
   AND (o.is_new OR NOT o.in_carried)
),
fresh AS (
  SELECT burst_partition, burst_key, grp, last_hot, min(event_time) AS first_order,`;
  const tail = `
  FROM members GROUP BY burst_partition, burst_key, grp, last_hot
),
carried_sums AS (
  SELECT g.kafka_partition, g.${K}, g.grp, min(c.window_start) AS carried_start, ${carriedSums}
  FROM grouped g JOIN carried c ON c.source_partition = g.kafka_partition AND c.${K} = g.${K} AND c.window_start = g.carried_start
  GROUP BY g.kafka_partition, g.${K}, g.grp
),
merged AS (
  SELECT *${sets ? `, ${sets}` : ''}
  FROM (SELECT f.*, cs.* EXCLUDE (kafka_partition, ${K}, grp) FROM fresh f
        LEFT JOIN carried_sums cs ON cs.kafka_partition = f.burst_partition AND cs.${K} = f.burst_key AND cs.grp = f.grp)
)
SELECT burst_partition AS source_partition, burst_key AS ${K}, least(carried_start, first_order) AS window_start,
       last_hot AS window_end, ${outputs}
FROM merged
UNION ALL
SELECT ${columns} FROM previous WHERE window_end < first_new - ${W}`;
  // The head up to the condition goes on the header's line, the aggregates on theirs.
  const lastComma = fresh.length - 1;
  fresh[lastComma] = { ...fresh[lastComma]!, text: fresh[lastComma]!.text.replace(/,$/, '') };
  return placeOnLines([{ line: spec.line, text: head }, ...fresh, { text: tail }]);
}

/**
 * Whether burstSql would change anything this batch: some key of the batch is
 * busy (the condition holds over its recent orders at once, or it carries a
 * burst). When none is, burstSql only repeats rows as they are, so the rule is
 * skipped: the same answer for a fraction of the planning (a quiet batch is most
 * batches at a light load, and planning is most of a small batch's cost).
 */
export function burstGateSql(name: string, spec: BurstSpec): string {
  const K = spec.key;
  const head = `
WITH ${touchedCte(spec)}
SELECT EXISTS (
  SELECT 1 FROM (SELECT o.* ${recentFrom(spec)})
  GROUP BY kafka_partition, ${K} HAVING ${spec.condition}`;
  const tail = `) OR EXISTS (
  SELECT 1 FROM result_${name} r JOIN touched t ON t.kafka_partition = r.source_partition AND t.${K} = r.${K}
  WHERE ${carriedWhere(spec, 'r.', 't.')})`;
  return placeOnLines([{ line: spec.line, text: head }, { text: tail }]);
}

/** Orders the WHERE leaves out are in no burst: neither touched nor counted. `bound`: a condition to apply first. */
function kept(spec: BurstSpec, source: string, bound?: string): string {
  const conditions = [...(bound ? [bound] : []), ...(spec.where ? [`(${spec.where.text.replace(/\s+/g, ' ')})`] : [])];
  return conditions.length > 0 ? `(SELECT * FROM ${source} WHERE ${conditions.join(' AND ')})` : source;
}

/** Per key of the batch, its earliest new order (first_new) and its first offset. */
function touchedCte(spec: BurstSpec): string {
  return `touched AS (
  SELECT kafka_partition, ${spec.key}, min(event_time) AS first_new, min(kafka_offset) AS first_offset
  FROM ${kept(spec, 'batch_orders')} GROUP BY ALL
)`;
}

/** A key's burst the batch carries on: it ends within a window of first_new and starts by it. */
function carriedWhere(spec: BurstSpec, row = '', touched = ''): string {
  const W = sqlLiteral({ kind: 'duration', micros: spec.windowMicros });
  return `${row}window_end >= ${touched}first_new - ${W} AND ${row}window_start <= ${touched}first_new`;
}

/**
 * The orders of the batch's keys from one window before their first new order (`o`,
 * joined with touched `t`). None is earlier than a window before the batch's
 * earliest order (batch_from, a constant to DuckDB): said first, it skips the older
 * row groups of the retained orders before anything else reads them.
 */
function recentFrom(spec: BurstSpec): string {
  const K = spec.key;
  const W = sqlLiteral({ kind: 'duration', micros: spec.windowMicros });
  return `FROM ${kept(spec, 'orders', `event_time > getvariable('batch_from') - ${W}`)} o
  JOIN touched t ON t.kafka_partition = o.kafka_partition AND t.${K} = o.${K}
  WHERE o.event_time > t.first_new - ${W}`;
}

/**
 * Joins generated SQL so that each piece with a line starts on it. Generated text
 * is folded onto one line; the author's text (verbatim) keeps its own line breaks.
 */
function placeOnLines(pieces: { line?: number; text: string; verbatim?: boolean }[]): string {
  let out = '';
  let line = 1;
  for (const p of pieces) {
    while (p.line !== undefined && line < p.line) {
      out += '\n';
      line++;
    }
    const text = p.verbatim ? p.text : p.text.replace(/\s+/g, ' ').trim();
    out += ' ' + text;
    line += text.split('\n').length - 1;
  }
  return out;
}
