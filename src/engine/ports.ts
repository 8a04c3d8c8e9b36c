/**
 * The engine's ports: everything the batch loop hands to, or gets from, the
 * outside. The adapters (Kafka, DuckDB, the rule runner, PostgreSQL, the demo's
 * generator, the in-memory harness) implement these; the engine imports no adapter.
 */
import type { DeadLetter, LateEvent, Order, PartitionProgress, SourceMessage } from '../types.js';
import type { AlertSpec, OutboxAlert } from '../alerts/alert.js';
import type { DetectionEvidence, DetectionId, EvidenceSpec } from '../alerts/evidence.js';
import type { Precedence } from './precedence.js';

/** A problem in a rule file, at file:line:column (1-based). */
export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  message: string;
}

/** One retained order with where it came from. */
export interface IngestRow {
  order: Order;
  partition: number;
  offset: bigint;
}

/** A result in column-major form, values converted for the sink. */
export interface Columns {
  names: string[];
  types: string[];
  columns: unknown[][];
  rowCount: number;
}

/** What the engine needs to know of a rule: where its rows go and how they are merged. */
export interface RuleOutput {
  name: string;
  file: string;
  /** Result table the rows are upserted into. */
  target: string;
  /** Columns that identify a row: the upsert's conflict target. */
  key: string[];
  /** For each value of these columns in a result, open rows not in the result are removed. */
  replace: string[];
  /**
   * Columns that, for one key and one rule version, only ever grow (counts). The
   * sink replaces a row only with one at least as large in all of them: a replay
   * or a restart that has seen fewer orders so far cannot overwrite a correct row.
   */
  grows: string[];
  /** SQL expression over a result row; the row is final once the watermark passes it. */
  finalAfter: string | null;
  /** How far back in event time the rule reads, in µs. */
  stateMicros: number;
  /** Content hash of the file and its parameter values: the rule version on every row. */
  version: string;
  /** Whether and how its rows alert (`-- alert:`); null: they do not. */
  alert: AlertSpec | null;
  /** Whether and how its rows record their orders (detection_evidence); null: they do not. */
  evidence: EvidenceSpec | null;
}

/** A rule as loaded: its output, its result columns, and whether its rows are read back (result_<name>). */
export interface ActiveRule {
  rule: RuleOutput;
  columns: string[];
  mirrored: boolean;
}

export interface RuleRun {
  rule: RuleOutput;
  result?: Columns;
  error?: Diagnostic;
  durationMs: number;
}

/** One rule's output for one batch, column-major. */
export interface ResultSet {
  rule: string;
  target: string;
  key: readonly string[];
  replace: readonly string[];
  grows: readonly string[];
  version: string;
  alert: AlertSpec | null;
  evidence: EvidenceSpec | null;
  names: readonly string[];
  /** DuckDB type names of the columns. */
  types: readonly string[];
  columns: readonly (readonly unknown[])[];
  rowCount: number;
}

/** Which rows of a rule's results to read back (see SinkPort.openResults). */
export interface ResultQuery {
  target: string;
  columns: readonly string[];
  finalAfter: string | null;
}

export interface PartitionAdvance {
  partition: number;
  /** The offset the sink must still be at: a stale writer is fenced off. */
  expected: bigint;
  next: bigint;
  restoreFrom: bigint;
  watermarkUs: number | null;
}

export interface CommitInput {
  results: readonly ResultSet[];
  deadLetters: readonly DeadLetter[];
  late: readonly LateEvent[];
  progress: readonly PartitionAdvance[];
  /** Each finalizable target with the expression after which its rows are final. */
  finalizers: readonly { target: string; finalAfter: string }[];
  /** Effective watermark per partition (event time, or extrapolated when idle). */
  watermarks: ReadonlyMap<number, number>;
  /** Alerts of this batch's detections, written to the outbox with the results. */
  alerts: readonly OutboxAlert[];
  /** The orders behind this batch's detections, written to detection_evidence with the results. */
  evidence: readonly DetectionEvidence[];
}

/** Per partition, the offsets the source holds: its first, and the next to be written (null: unknown, no end). */
export interface OffsetRange {
  low: bigint;
  high: bigint | null;
}

/** Tells the engine a new set of partitions; answers where each one must resume. */
export type AssignHandler = (partitions: number[], ranges: Map<number, OffsetRange>) => Promise<Map<number, bigint>>;

/**
 * What to do when the committed offset of a partition is outside what the source
 * holds: past its end (the topic was recreated, its log truncated) or before its
 * start (retention deleted orders that were never processed).
 */
export type OffsetGapPolicy = 'fail' | 'earliest' | 'latest';

/** Where messages come from: Kafka, the demo's generator, recorded orders. */
export interface SourcePort {
  /**
   * Starts delivering. `onAssign` is called before the first message of any newly
   * assigned partition is delivered, and the source resumes each partition where
   * it answers.
   */
  start(onAssign: AssignHandler): Promise<void>;
  /**
   * The next micro-batch: up to `maxSize` messages, handed over at most `maxWaitMs`
   * after the first one arrived, or as soon as `free` resolved (the engine can
   * take it); empty when nothing arrived; null once the input has ended for good.
   */
  next(maxSize: number, maxWaitMs: number, signal: AbortSignal, free?: Promise<unknown>): Promise<readonly SourceMessage[] | null>;
  /** Told of the offsets whose results are committed (Kafka mirrors them for lag tools). */
  committed(offsets: ReadonlyMap<number, bigint>): Promise<void>;
  /**
   * Applies the current assignment again: `onAssign` is called with it and the
   * source resumes each partition where it answers, dropping what it buffered.
   * For a source shared with other processes, whose commits can be fenced.
   */
  reassign?(): Promise<void>;
  /** The offsets a partition holds now; a source without one never has offset gaps. */
  offsetRange?(partition: number): Promise<OffsetRange>;
}

export type Decoded = { ok: true; order: Order } | { ok: false; reason: string };

/** Turns a message's bytes into an order or a dead-letter reason (README.md, *The order event*). */
export type Decoder = (value: Buffer | null) => Decoded;

export interface StatePort {
  ingest(rows: readonly IngestRow[], batchId: number): Promise<{ inserted: number; duplicates: number }>;
  setBatch(batchId: number): Promise<void>;
  /** Drops what no open window needs; returns how many orders are left. */
  retain(watermarks: ReadonlyMap<number, number>, horizonUs: number): Promise<number>;
  retainedFrom(): Promise<Map<number, bigint>>;
  dropPartitions(partitions: readonly number[]): Promise<void>;
  /**
   * Per request, the retained orders whose `field` has the value and whose event
   * time is within [from, to] (ISO-8601; null: unbounded), and, with `after`, only
   * those the current batch brought or later than `after`: their count and the
   * first `limit` by event time (before `listBefore`).
   */
  evidence(field: string, requests: readonly EvidenceRequest[], limit: number): Promise<EvidenceFound[]>;
}

export interface EvidenceRequest {
  value: string;
  from: string | null;
  to: string | null;
  /** Only the current batch's orders and those later than this (ISO-8601): what a detection counted up to it lacks. */
  after?: string | null;
  /** List only orders before this one (by event time, then order_id); the count is of them all. */
  listBefore?: { us: number; orderId: string } | null;
}

export interface EvidenceFound {
  orderIds: string[];
  /** Event times of `orderIds`, in µs. */
  eventUs: number[];
  orderCount: number;
}

export interface SinkPort {
  /**
   * Whether a batch's commit may run while the next batch's rules run. A sink
   * that copies rows inside the state's own DuckDB cannot: the next batch would
   * replace the rows it copies.
   */
  readonly concurrentCommit: boolean;
  /**
   * Whether it copies each rule's rows from the rule's changed_<rule> table in the
   * state's DuckDB (the DuckDB sink). Otherwise only the rules whose rows are read
   * again (by another rule, or as their own state) keep one: the others' rows are
   * read straight from their query, one statement instead of two.
   */
  readonly copiesRuleTables?: boolean;
  progress(startOffsets: ReadonlyMap<number, bigint>): Promise<Map<number, PartitionProgress>>;
  commit(input: CommitInput): Promise<void>;
  finalize(finalizers: CommitInput['finalizers'], watermarks: ReadonlyMap<number, number>): Promise<void>;
  /** Moves a partition's progress (after an offset gap, see OffsetGapPolicy). */
  resetProgress(partition: number, nextOffset: bigint): Promise<void>;
  /** Per detection, the window end its committed evidence counted up to; null for one not committed. */
  evidenceEnds(detections: readonly DetectionId[]): Promise<(string | null)[]>;
  /** A rule's committed rows for these partitions, to carry its results across a restart. */
  openResults(q: ResultQuery, partitions: readonly number[], horizonUs: number): Promise<Columns>;
}

export interface RulesPort {
  /** `keepChanged`: every rule's rows are kept in changed_<rule> (SinkPort.copiesRuleTables). */
  run(opts?: { keepChanged: boolean }): Promise<RuleRun[]>;
  /** Sets the rows of result_<rule> for these partitions (none: forgets them). */
  restoreMirror(rule: string, partitions: readonly number[], rows: Columns | null): Promise<void>;
  trim(watermarks: ReadonlyMap<number, number>, horizonUs: number): Promise<void>;
  /** Marks result_<rule> rows final as the sink does, with the watermarks of the same commit or idle tick. */
  finalize(watermarks: ReadonlyMap<number, number>): Promise<void>;
  prepared(): readonly ActiveRule[];
}

export interface DeadLetterPort {
  send(deadLetters: readonly DeadLetter[]): Promise<void>;
}

export interface EnginePorts {
  state: StatePort;
  sink: SinkPort;
  rules: RulesPort;
  deadLetters: DeadLetterPort;
  decode: Decoder;
}

/** Points of the batch cycle where a test makes the process die like a power cut (see failpoint.ts). */
export const KILL_POINTS = [
  'after-fetch',
  'after-ingest',
  'after-rules',
  'before-commit',
  'after-commit',
  'after-kafka-commit',
  // The repartition hop: copies sent, input offsets not yet committed.
  'after-repartition-produce',
] as const;
/**
 * Points that throw instead, as a broken client or a broker still loading would:
 * `fetch-error` in the Kafka client's fetch handler, `repartition-check-error` in
 * the repartition hop's check of a new assignment.
 */
export const ERROR_POINTS = ['fetch-error', 'repartition-check-error'] as const;
/** Every named failpoint. */
export const FAILPOINTS = [...KILL_POINTS, ...ERROR_POINTS] as const;
export type FailpointName = (typeof FAILPOINTS)[number];

export interface EngineOptions {
  latenessMs: number;
  idleTimeoutMs: number;
  /** Retention, and marking rows final, run at most this often (wall clock). */
  retentionIntervalMs: number;
  /** This engine's DuckDB work for live traffic goes first (the per-order lane; see Precedence). */
  precedence?: Precedence;
  /** Wall clock in ms; injected so tests move time. */
  now: () => number;
  onOffsetGap: OffsetGapPolicy;
  /** Called at each named point of the batch cycle. */
  failpoint?: (name: FailpointName) => void;
  /**
   * Whether malformed input is recorded here (dead-letter topic and table). An
   * engine that reads the input next to the one that records it (the per-order
   * lane) skips it, so a dead letter has one writer and holds one engine back.
   */
  recordsDeadLetters?: boolean;
  /** Whether the rules' detections become alerts (`-- alert:`), written to the sink's outbox. */
  alerts?: boolean;
}

export interface LoopOptions {
  batchMaxSize: number;
  batchMaxWaitMs: number;
  /** How often idle windows are closed on wall-clock time; 0: never (event time only). */
  tickMs: number;
  /**
   * The least time from one batch's close to the next one's (0: none). A full batch
   * is not held back: a backlog drains at full speed.
   */
  minBatchIntervalMs?: number;
  /** Aborted: stop fetching, finish the batches in flight. */
  signal: AbortSignal;
}
