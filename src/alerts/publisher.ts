/**
 * Publishes the alert outbox: every alert to a Kafka topic (keyed by the detected
 * key), and to each webhook with retries, a timeout and an HMAC signature. Both
 * read what the batches committed to PostgreSQL, so an alert exists exactly when
 * its detection does; a crash between sending and marking sent sends it again with
 * the same alert_id (at-least-once; consumers deduplicate on it). Several processes
 * may publish one outbox: rows are claimed with SKIP LOCKED.
 */
import { createHmac } from 'node:crypto';
import type { Producer } from 'kafkajs';
import type pg from 'pg';
import type { Columns } from '../engine/ports.js';
import type { Logger } from '../log.js';
import { truncate } from '../time.js';
import { sleep } from '../retry.js';

export interface PublisherOptions {
  /** A transaction on the sink's database (PgSink.transaction). */
  transaction: <T>(fn: (c: pg.ClientBase) => Promise<T>) => Promise<T>;
  /** One statement on the sink's database, outside a transaction (PgSink.read). */
  read: (sql: string) => Promise<Columns>;
  /** Connected, idempotent; null: alerts go to webhooks only. */
  producer: Producer | null;
  topic: string;
  /** Whether webhooks are configured. */
  webhooks: boolean;
  /** HMAC-SHA256 key of the X-Fraud-SQL-Signature header. */
  webhookSecret: string;
  webhookTimeoutMs: number;
  /** Attempts per delivery before it goes to alert_dead_letters. */
  webhookMaxAttempts: number;
  /** First retry delay; doubled each attempt up to a minute. */
  webhookRetryMs: number;
  /** How often the outbox is read when not nudged. */
  pollMs: number;
  logger: Logger;
  /** Told of each alert published (to Kafka), delivered, retried, or dead-lettered. */
  onEvent?: (what: 'published' | 'delivered' | 'retried' | 'dead_lettered') => void;
}

/** The most alerts one pass handles per destination. */
const CLAIM = 500;
/**
 * How long a published and delivered alert stays in the outbox: a replay of older
 * input than that sends its alerts again (with the same ids).
 */
const KEEP_DAYS = 7;
const PRUNE_EVERY_MS = 3_600_000;
/** How long a nudge waits for more batches' alerts before a pass. */
const COALESCE_MS = 20;
/** Webhook requests in flight at once. */
const PARALLEL_DELIVERIES = 8;

/**
 * Runs a claim (CLAIM_ALERTS, claimDeliveries), or its EXPLAIN, in the caller's
 * transaction, walking its partial index (alert_outbox_unpublished,
 * alert_deliveries_due) in order to stop at its limit. Left to its estimates (a
 * table not analyzed yet, or rows piled up since it was), the planner reads every
 * waiting row and sorts them all, so that each claim of a backlog costs the whole
 * backlog.
 */
export async function claim<R extends pg.QueryResultRow>(c: pg.ClientBase, sql: string): Promise<pg.QueryResult<R>> {
  await c.query('SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off');
  return c.query<R>(sql);
}

/**
 * The next alerts to publish, in the order they were written. seq as it is
 * (node-postgres gives a bigint as a string): ORDER BY names the output column, and
 * ordering a text cast would put seq 10 before seq 9.
 */
export const CLAIM_ALERTS = `SELECT seq, alert_key, payload FROM alert_outbox WHERE published_at IS NULL ORDER BY seq LIMIT ${CLAIM} FOR UPDATE SKIP LOCKED`;

/** The next webhook deliveries due, leased for `leaseSeconds`, with their payloads. */
export function claimDeliveries(leaseSeconds: number): string {
  return `UPDATE alert_deliveries d SET next_attempt_at = now() + ${leaseSeconds} * interval '1 second'
    FROM alert_outbox o
    WHERE o.alert_id = d.alert_id AND (d.alert_id, d.url) IN (
      SELECT alert_id, url FROM alert_deliveries WHERE delivered_at IS NULL AND next_attempt_at <= now()
      ORDER BY next_attempt_at LIMIT ${PARALLEL_DELIVERIES} FOR UPDATE SKIP LOCKED)
    RETURNING d.alert_id, d.url, o.payload`;
}

/** The X-Fraud-SQL-Signature header's value for `body`. */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Delay before attempt `attempts + 1`: exponential from `baseMs`, at most a minute. */
export function retryDelayMs(baseMs: number, attempts: number): number {
  return Math.min(60_000, baseMs * 2 ** Math.max(0, attempts - 1));
}

export class AlertPublisher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private failing = false;
  /** The next pass is the poll's (see pass). */
  private polled = false;
  private prunedAt = 0;

  constructor(private readonly opts: PublisherOptions) {}

  start(): void {
    this.timer = setInterval(() => {
      this.polled = true;
      this.nudge();
    }, this.opts.pollMs);
    this.polled = true;
    this.nudge();
  }

  /**
   * Publishes soon (after a batch committed alerts): the batches committed in the
   * next few milliseconds go in the same pass. Passes never overlap.
   */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = sleep(COALESCE_MS)
      .then(() => this.pass())
      .then(
        () => {
          if (this.failing) this.opts.logger.info('publishing alerts again');
          this.failing = false;
        },
        (err) => {
          // One line per outage, not one per poll: the alerts wait in the outbox meanwhile.
          if (!this.failing) this.opts.logger.warn(`publishing alerts failed, retrying every ${this.opts.pollMs / 1000} s: ${(err as Error).message}`);
          this.failing = true;
        },
      )
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.nudge();
        }
      });
  }

  /** Stops polling; the pass in flight finishes. Unsent alerts stay in the outbox for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  private async pass(): Promise<void> {
    const polled = this.polled;
    this.polled = false;
    if (Date.now() - this.prunedAt >= PRUNE_EVERY_MS) {
      await this.prune();
      this.prunedAt = Date.now();
    }
    // A nudge follows a batch's alerts. The poll is for what no nudge announced
    // (another process's alerts, retries coming due) and most often finds nothing:
    // one read says so, rather than two claims in transactions every second.
    // Deliveries exist only with webhooks: without any configured, those of an
    // earlier configuration are retried on the poll, not after every batch.
    const waiting = polled ? await this.waiting() : { alerts: true, deliveries: this.opts.webhooks };
    if (waiting.alerts) {
      if (this.opts.producer) while ((await this.publishKafka()) === CLAIM && !this.stopped);
      // Without a topic there is nothing to publish to: they count as published, so
      // that setting one later does not send the old ones.
      else await this.opts.transaction((c) => c.query('UPDATE alert_outbox SET published_at = now() WHERE published_at IS NULL'));
    }
    if (waiting.deliveries) while ((await this.deliverWebhooks()) === PARALLEL_DELIVERIES && !this.stopped);
  }

  /** Whether any alert waits to be published, and any delivery is due. */
  private async waiting(): Promise<{ alerts: boolean; deliveries: boolean }> {
    const r = await this.opts.read(
      `SELECT EXISTS (SELECT 1 FROM alert_outbox WHERE published_at IS NULL),
              EXISTS (SELECT 1 FROM alert_deliveries WHERE delivered_at IS NULL AND next_attempt_at <= now())`,
    );
    return { alerts: r.columns[0]![0] === true, deliveries: r.columns[1]![0] === true };
  }

  /** Forgets alerts published and delivered more than KEEP_DAYS ago (dead letters stay). */
  private async prune(): Promise<void> {
    await this.opts.transaction(async (c) => {
      const old = `o.published_at < now() - interval '${KEEP_DAYS} days'`;
      await c.query(`DELETE FROM alert_deliveries d USING alert_outbox o WHERE o.alert_id = d.alert_id AND ${old} AND d.delivered_at IS NOT NULL`);
      await c.query(`DELETE FROM alert_outbox o WHERE ${old} AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = o.alert_id)`);
    });
  }

  /** One claim of unpublished alerts to Kafka; returns how many. */
  private async publishKafka(): Promise<number> {
    const { producer, topic } = this.opts;
    return this.opts.transaction(async (c) => {
      const r = await claim<{ seq: string; alert_key: string; payload: string }>(c, CLAIM_ALERTS);
      if (r.rows.length === 0) return 0;
      await producer!.send({ topic, acks: -1, messages: r.rows.map((a) => ({ key: a.alert_key, value: a.payload })) });
      await c.query('UPDATE alert_outbox SET published_at = now() WHERE seq = ANY($1::bigint[])', [r.rows.map((a) => a.seq)]);
      for (let i = 0; i < r.rows.length; i++) this.opts.onEvent?.('published');
      return r.rows.length;
    });
  }

  /**
   * One claim of due webhook deliveries, as many as are sent at once: each is leased
   * (its next attempt pushed past the request's timeout) before it is sent, so no
   * other process sends it meanwhile.
   */
  private async deliverWebhooks(): Promise<number> {
    const lease = Math.ceil(this.opts.webhookTimeoutMs / 1000) + 30;
    const due = await this.opts.transaction((c) => claim<{ alert_id: string; url: string; attempts: number; payload: string }>(c, claimDeliveries(lease)));
    // Every one settles before the next claim, a failed one included.
    const settled = await Promise.allSettled(due.rows.map((d) => this.deliver(d)));
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return due.rows.length;
  }

  private async deliver(d: { alert_id: string; url: string; payload: string }): Promise<void> {
    const { webhookSecret, webhookTimeoutMs, webhookMaxAttempts, webhookRetryMs, logger } = this.opts;
    let error: string | null = null;
    try {
      const res = await fetch(d.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-fraud-sql-alert-id': d.alert_id,
          'x-fraud-sql-signature': signature(webhookSecret, d.payload),
        },
        body: d.payload,
        signal: AbortSignal.timeout(webhookTimeoutMs),
        redirect: 'error',
      });
      // The body is not read: a receiver's answer is only its status.
      await res.body?.cancel().catch(() => {});
      if (!res.ok) error = `HTTP ${res.status}`;
    } catch (err) {
      error = (err as Error).name === 'TimeoutError' ? `no answer within ${webhookTimeoutMs} ms` : (err as Error).message;
    }
    await this.opts.transaction(async (c) => {
      const r = await c.query<{ attempts: number }>(
        `UPDATE alert_deliveries SET attempts = attempts + 1, last_error = $3,
           delivered_at = CASE WHEN $3::text IS NULL THEN now() END
         WHERE alert_id = $1 AND url = $2 RETURNING attempts`,
        [d.alert_id, d.url, error],
      );
      const attempts = r.rows[0]?.attempts;
      // Gone: another process dead-lettered it meanwhile.
      if (attempts === undefined) return;
      if (error === null) this.opts.onEvent?.('delivered');
      else if (attempts >= webhookMaxAttempts) {
        await c.query(
          `INSERT INTO alert_dead_letters (alert_id, url, attempts, last_error, payload) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (alert_id, url) DO NOTHING`,
          [d.alert_id, d.url, attempts, error, d.payload],
        );
        await c.query('DELETE FROM alert_deliveries WHERE alert_id = $1 AND url = $2', [d.alert_id, d.url]);
        logger.warn(`alert ${d.alert_id} to ${redactUrlForLog(d.url)} failed ${attempts} times (${error}): moved to alert_dead_letters`);
        this.opts.onEvent?.('dead_lettered');
      } else {
        await c.query(`UPDATE alert_deliveries SET next_attempt_at = now() + $3 * interval '1 millisecond' WHERE alert_id = $1 AND url = $2`, [
          d.alert_id,
          d.url,
          retryDelayMs(webhookRetryMs, attempts),
        ]);
        this.opts.onEvent?.('retried');
      }
    });
  }
}

/** A webhook URL for a log line: its query string may carry a token. */
function redactUrlForLog(url: string): string {
  try {
    const u = new URL(url);
    return truncate(`${u.origin}${u.pathname}`, 120);
  } catch {
    return '(invalid URL)';
  }
}
