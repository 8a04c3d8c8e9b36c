/** Typed engine events: metrics, the console printer and tests subscribe to them. */
import { EventEmitter } from 'node:events';
import type { Diagnostic } from './ports.js';
import type { OffsetGap } from './gap.js';
import type { RuleResult } from '../types.js';

export interface BatchStats {
  batchId: number;
  messages: number;
  orders: number;
  replayed: number;
  duplicates: number;
  deadLetters: number;
  late: number;
  /** Alerts written to the outbox with this batch. */
  alerts: number;
  /** Orders retained in the window state (as of the last retention pass). */
  stateOrders: number;
  /** Seconds per stage. */
  stages: { decode: number; ingest: number; rules: number; sink: number; retention: number };
  /** Milliseconds from each new message's broker timestamp to the commit. */
  latenciesMs: number[];
  results: RuleResult[];
  /** Seconds each rule took (failed rules included). */
  ruleSeconds: { rule: string; seconds: number }[];
  /** Per partition: next offset committed, and the effective watermark (µs). */
  partitions: { partition: number; nextOffset: bigint; watermarkUs: number | null }[];
}

export interface EngineEvents {
  'batch:end': [BatchStats];
  'rule:error': [{ rule: string; diagnostic: Diagnostic }];
  assigned: [{ partitions: number[]; seek: Map<number, bigint> }];
  finalized: [{ watermarks: Map<number, number> }];
  'rules:reloaded': [{ ok: boolean; problems: Diagnostic[] }];
  /** A partition's committed offset is outside the topic (see OffsetGapPolicy). */
  'offset:gap': [OffsetGap];
  /** A commit was refused: another process had advanced its partitions; they are rebuilt from the sink. */
  fenced: [Error];
  /** Closing idle windows failed; the next tick tries again. */
  'tick:error': [Error];
}

export class EngineEmitter extends EventEmitter<EngineEvents> {
  /** A throwing listener must not break the batch loop. */
  safeEmit<K extends keyof EngineEvents>(event: K, ...args: EngineEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: EngineEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      process.emitWarning(`listener of ${String(event)} threw: ${(err as Error).message}`);
    }
  }
}
