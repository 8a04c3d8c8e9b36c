/**
 * Errors with a stable code, a retriable flag and a cause. Driver errors are mapped
 * to these in one place per driver (sink/pg-errors.ts, source/kafka.ts) so that the
 * rest of the program decides on `retriable`, never on driver messages.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'RULES_INVALID'
  | 'RULE_FAILED'
  | 'PG_UNREACHABLE'
  | 'PG_DATABASE_MISSING'
  | 'PG_FAILED'
  | 'PG_FENCED'
  | 'PG_SCHEMA_MISSING'
  | 'KAFKA_UNREACHABLE'
  | 'KAFKA_FAILED'
  | 'KAFKA_TOPIC_MISSING'
  | 'SOURCE_STOPPED'
  | 'OFFSET_GAP'
  | 'STATE_LOCKED'
  | 'PORT_IN_USE'
  | 'INPUT_INVALID'
  | 'TABLE_CHANGE_REFUSED'
  | 'TABLE_UNKNOWN'
  | 'LIST_INVALID'
  | 'LIST_ENTRY_UNKNOWN'
  | 'DETECTION_UNKNOWN';

export class FraudSqlError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'FraudSqlError';
    this.code = code;
    this.retriable = opts.retriable ?? false;
  }
}

/** The one line an operator reads: our message, or the driver's for an unmapped error. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
