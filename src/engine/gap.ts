/**
 * Offset gaps (see OffsetGapPolicy): a committed offset outside what a partition
 * holds. Judged the same way by the engine, for the topic its rules read, and by
 * the repartition hop, for the input topic it forwards.
 */
import { FraudSqlError } from '../errors.js';
import type { OffsetGapPolicy, OffsetRange } from './ports.js';

export interface OffsetGap {
  partition: number;
  kind: 'past-end' | 'before-start';
  committed: bigint;
  low: bigint;
  high: bigint | null;
  /** Found while consuming, the gap stops the process whatever the policy: state and results are mid-flight; the restart applies the policy. */
  policy: OffsetGapPolicy;
}

/** The gap at `committed`, if any; `whileConsuming` when found mid-stream rather than on assignment. */
export function findGap(partition: number, committed: bigint, range: OffsetRange, policy: OffsetGapPolicy, whileConsuming: boolean): OffsetGap | null {
  const kind = range.high !== null && committed > range.high ? 'past-end' : committed < range.low ? 'before-start' : null;
  return kind === null ? null : { partition, kind, committed, low: range.low, high: range.high, policy: whileConsuming ? 'fail' : policy };
}

/** The error of a gap under the `fail` policy: one line with what happened and what to do. */
export function gapError(g: OffsetGap, whileConsuming: boolean): FraudSqlError {
  const where = `partition ${g.partition}: ${whileConsuming ? 'while consuming, the next offset' : 'committed offset'} ${g.committed} is ${g.kind === 'past-end' ? 'past the end' : 'before the start'} of the topic (offsets ${g.low}..${g.high ?? '?'})`;
  const why = g.kind === 'past-end' ? 'the topic was recreated or its log truncated' : 'retention deleted orders that were never processed';
  return new FraudSqlError(
    'OFFSET_GAP',
    `${where}: ${why}. Nothing past it was written. Restart with --on-offset-gap earliest (process all the topic holds) or latest (skip to its end)`,
  );
}

/** Where a partition resumes under the `earliest` or `latest` policy. */
export const resumeAfterGap = (g: OffsetGap): bigint => (g.policy === 'earliest' ? g.low : (g.high ?? g.low));
