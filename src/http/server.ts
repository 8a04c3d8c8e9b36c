/**
 * The HTTP server: /healthz (alive), /readyz (Kafka and PostgreSQL reachable,
 * partitions assigned), /status (JSON), /metrics (Prometheus). Built without
 * listening, so tests use inject().
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { FraudSqlError } from '../errors.js';
import type { Metrics } from './metrics.js';

export interface StatusSource {
  /** `reason`-like details may ride along (the consumer's state). */
  ready(): Promise<{ ready: boolean; checks: Record<string, boolean>; [detail: string]: unknown }>;
  status(): Promise<Record<string, unknown>>;
  /** Refreshes gauges that are read on demand (consumer lag). */
  beforeScrape?(): Promise<void>;
}

export function buildServer(metrics: Metrics, source: StatusSource): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const r = await source.ready();
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/status', async () => source.status());
  app.get('/metrics', async (_req, reply) => {
    await source.beforeScrape?.().catch(() => {});
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  return app;
}

/** Starts listening; a port in use is one clear line, not a stack trace. */
export async function listen(http: FastifyInstance, host: string, port: number): Promise<string> {
  try {
    return await http.listen({ host, port });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new FraudSqlError('PORT_IN_USE', `port ${port} on ${host} is already in use; choose another with --http-port`, { cause: err });
    }
    throw err;
  }
}
