/** node-postgres and socket errors mapped to FraudSqlError, in one place. */
import { FraudSqlError } from '../errors.js';
import { redactUrl } from '../config.js';

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'EAI_AGAIN']);

export function mapPgError(err: unknown, databaseUrl: string): FraudSqlError {
  if (err instanceof FraudSqlError) return err;
  const e = err as { code?: string; message?: string };
  const code = e.code ?? '';
  const url = new URL(databaseUrl);
  const where = `${url.hostname}:${url.port || 5432}`;
  if (code === '3D000') {
    const db = decodeURIComponent(url.pathname.slice(1));
    return new FraudSqlError(
      'PG_DATABASE_MISSING',
      `PostgreSQL database "${db}" does not exist on ${where}; create it with: createdb -h ${url.hostname} -p ${url.port || 5432} -U ${url.username || 'postgres'} ${db}`,
      { cause: err },
    );
  }
  if (
    UNREACHABLE_CODES.has(code) ||
    code.startsWith('08') || // connection exceptions
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' || // shutdown, crash, starting up
    /Connection terminated|connection timeout|Client has encountered a connection error/i.test(e.message ?? '')
  ) {
    return new FraudSqlError('PG_UNREACHABLE', `cannot reach PostgreSQL at ${where} (${code || e.message})`, { retriable: true, cause: err });
  }
  if (code === '40001' || code === '40P01' || code === '55P03') {
    return new FraudSqlError('PG_FAILED', `PostgreSQL transaction conflict (${code}): ${e.message}`, { retriable: true, cause: err });
  }
  return new FraudSqlError('PG_FAILED', `PostgreSQL error${code ? ' ' + code : ''} at ${redactUrl(databaseUrl)}: ${e.message}`, { cause: err });
}
