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
import type { Logger } from '../log.js';
import { truncate } from '../time.js';

export interface PublisherOptions {
  /** A transaction on the sink's database (PgSink.transaction). */
  transaction: <T>(fn: (c: pg.ClientBase) => Promise<T>) => Promise<T>;
  /** Connected, idempotent; null: alerts go to webhooks only. */
  producer: Producer | null;
  topic: string;
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
/** Webhook requests in flight at once. */
const PARALLEL_DELIVERIES = 8;

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

  constructor(private readonly opts: PublisherOptions) {}

  start(): void {
    this.timer = setInterval(() => this.nudge(), this.opts.pollMs);
    this.nudge();
  }

  /** Publishes soon (after a batch committed alerts); passes never overlap. */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((err) => this.opts.logger.warn(`publishing alerts failed, retrying: ${(err as Error).message}`))
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
    if (this.opts.producer) while ((await this.publishKafka()) === CLAIM && !this.stopped);
    while ((await this.deliverWebhooks()) === CLAIM && !this.stopped);
  }

  /** One claim of unpublished alerts to Kafka; returns how many. */
  private async publishKafka(): Promise<number> {
    const { producer, topic } = this.opts;
    return this.opts.transaction(async (c) => {
      const r = await c.query<{ seq: string; alert_key: string; payload: string }>(
        `SELECT seq::text, alert_key, payload FROM alert_outbox WHERE published_at IS NULL ORDER BY seq LIMIT ${CLAIM} FOR UPDATE SKIP LOCKED`,
      );
      if (r.rows.length === 0) return 0;
      await producer!.send({ topic, acks: -1, messages: r.rows.map((a) => ({ key: a.alert_key, value: a.payload })) });
      await c.query('UPDATE alert_outbox SET published_at = now() WHERE seq = ANY($1::bigint[])', [r.rows.map((a) => a.seq)]);
      for (let i = 0; i < r.rows.length; i++) this.opts.onEvent?.('published');
      return r.rows.length;
    });
  }

  /**
   * One claim of due webhook deliveries: each is leased (its next attempt pushed past
   * the request's timeout) before it is sent, so no other process sends it meanwhile.
   */
  private async deliverWebhooks(): Promise<number> {
    const lease = Math.ceil(this.opts.webhookTimeoutMs / 1000) + 30;
    const due = await this.opts.transaction((c) =>
      c.query<{ alert_id: string; url: string; attempts: number; payload: string }>(
        `UPDATE alert_deliveries d SET next_attempt_at = now() + ${lease} * interval '1 second'
         FROM alert_outbox o
         WHERE o.alert_id = d.alert_id AND (d.alert_id, d.url) IN (
           SELECT alert_id, url FROM alert_deliveries WHERE delivered_at IS NULL AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT ${CLAIM} FOR UPDATE SKIP LOCKED)
         RETURNING d.alert_id, d.url, d.attempts, o.payload`,
      ),
    );
    const queue = [...due.rows];
    const worker = async () => {
      for (let d = queue.shift(); d; d = queue.shift()) await this.deliver(d);
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_DELIVERIES, queue.length) }, worker));
    return due.rows.length;
  }

  private async deliver(d: { alert_id: string; url: string; attempts: number; payload: string }): Promise<void> {
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
    const attempts = d.attempts + 1;
    await this.opts.transaction(async (c) => {
      if (error === null) {
        await c.query('UPDATE alert_deliveries SET attempts = $3, delivered_at = now(), last_error = NULL WHERE alert_id = $1 AND url = $2', [
          d.alert_id,
          d.url,
          attempts,
        ]);
        this.opts.onEvent?.('delivered');
      } else if (attempts >= webhookMaxAttempts) {
        await c.query(
          `INSERT INTO alert_dead_letters (alert_id, url, attempts, last_error, payload) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (alert_id, url) DO NOTHING`,
          [d.alert_id, d.url, attempts, error, d.payload],
        );
        await c.query('DELETE FROM alert_deliveries WHERE alert_id = $1 AND url = $2', [d.alert_id, d.url]);
        logger.warn(`alert ${d.alert_id} to ${redactUrlForLog(d.url)} failed ${attempts} times (${error}): moved to alert_dead_letters`);
        this.opts.onEvent?.('dead_lettered');
      } else {
        await c.query(
          `UPDATE alert_deliveries SET attempts = $3, last_error = $4, next_attempt_at = now() + $5 * interval '1 millisecond'
           WHERE alert_id = $1 AND url = $2`,
          [d.alert_id, d.url, attempts, error, retryDelayMs(webhookRetryMs, attempts)],
        );
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
