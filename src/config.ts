/**
 * Configuration: flags > environment > defaults, validated once with every problem
 * listed, then frozen. Nothing else reads process.env. Secrets (the database URL's
 * password, SASL credentials) come from the environment only.
 */
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { FraudSqlError } from './errors.js';
import { assertTimeZone } from './time.js';
import { parseFailpoint } from './failpoint.js';

export interface Config {
  brokers: string[];
  topic: string;
  dlqTopic: string;
  groupId: string;
  clientId: string;
  databaseUrl: string;
  pgSchema: string;
  queriesDir: string;
  batchMaxSize: number;
  batchMaxWaitMs: number;
  windowBatchIntervalMs: number;
  latenessMs: number;
  idleTimeoutMs: number;
  timeZone: string;
  maxMessageBytes: number;
  httpHost: string;
  httpPort: number;
  console: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  kafkaSsl: boolean;
  kafkaSaslMechanism: 'none' | 'plain' | 'scram-sha-256' | 'scram-sha-512';
  kafkaSaslUsername: string;
  kafkaSaslPassword: string;
  pgSslMode: 'disable' | 'require' | 'verify-full';
  pgSslCa: string;
  failpoint: string;
  kafkaSessionTimeoutMs: number;
  /** Rule parameter overrides, `rule.param=value`, applied without editing the SQL. */
  params: string[];
  onOffsetGap: 'fail' | 'earliest' | 'latest';
  /** The order field the input topic is keyed by (`--input-keyed-by`); '' when unknown or none. */
  inputKeyedBy: string;
  createTopics: boolean;
  topicPartitions: number;
  topicReplicationFactor: number;
  alertsTopic: string;
  decisionsPort: number;
  alertWebhook: string[];
  alertWebhookSecret: string;
  alertWebhookTimeoutMs: number;
  alertWebhookMaxAttempts: number;
  alertWebhookRetryMs: number;
  /** Whether a database URL was given (flag or environment) rather than defaulted: the demo writes to PostgreSQL only then. */
  databaseConfigured: boolean;
}

type Kind = 'string' | 'int' | 'bool' | 'list';

interface Setting {
  key: keyof Config;
  env: string;
  kind: Kind;
  default: unknown;
  describe: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
  /** Only from the environment: it may carry a password. */
  secret?: boolean;
  /** May be empty. */
  optional?: boolean;
}

/** The package root, so the built-in queries/ are found wherever fraud-sql is started from. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const SETTINGS: readonly Setting[] = [
  { key: 'brokers', env: 'FRAUD_SQL_BROKERS', kind: 'list', default: ['localhost:9092'], describe: 'Kafka bootstrap brokers, comma-separated' },
  { key: 'topic', env: 'FRAUD_SQL_TOPIC', kind: 'string', default: 'orders', describe: 'the orders topic (run reads it, generate writes to it)' },
  { key: 'dlqTopic', env: 'FRAUD_SQL_DLQ_TOPIC', kind: 'string', default: 'orders.dlq', describe: 'topic for dead letters (malformed orders)' },
  { key: 'groupId', env: 'FRAUD_SQL_GROUP', kind: 'string', default: 'fraud-sql', describe: 'Kafka consumer group' },
  { key: 'clientId', env: 'FRAUD_SQL_CLIENT_ID', kind: 'string', default: 'fraud-sql', describe: 'Kafka client id' },
  {
    key: 'databaseUrl',
    env: 'FRAUD_SQL_DATABASE_URL',
    kind: 'string',
    default: 'postgres://postgres@127.0.0.1:5432/fraud_sql',
    describe: 'PostgreSQL connection URL (a password belongs in the environment, or in PGPASSWORD)',
  },
  { key: 'pgSchema', env: 'FRAUD_SQL_PG_SCHEMA', kind: 'string', default: 'public', describe: 'PostgreSQL schema for the result tables' },
  {
    key: 'params',
    env: 'FRAUD_SQL_PARAMS',
    kind: 'list',
    default: [],
    optional: true,
    describe: 'rule parameter overrides, comma-separated rule.param=value (e.g. suspicious_ips.min_orders=12)',
  },
  {
    key: 'onOffsetGap',
    env: 'FRAUD_SQL_ON_OFFSET_GAP',
    kind: 'string',
    default: 'fail',
    choices: ['fail', 'earliest', 'latest'],
    describe:
      'a committed offset outside the topic (recreated topic, truncated log, retention): fail and write nothing, or resume at the earliest or latest offset',
  },
  {
    key: 'inputKeyedBy',
    env: 'FRAUD_SQL_INPUT_KEYED_BY',
    kind: 'string',
    default: '',
    optional: true,
    choices: ['', 'order_id', 'user_id', 'product_id', 'product_name', 'ip_address', 'payment_method'],
    describe:
      'the order field the input topic is keyed by, if any (e.g. ip_address): rules partitioned by it read the input directly instead of a repartition topic',
  },
  {
    key: 'createTopics',
    env: 'FRAUD_SQL_CREATE_TOPICS',
    kind: 'bool',
    default: false,
    describe: 'create the input and dead-letter topics when missing (otherwise wait for them)',
  },
  {
    key: 'topicPartitions',
    env: 'FRAUD_SQL_TOPIC_PARTITIONS',
    kind: 'int',
    default: 4,
    min: 1,
    max: 10_000,
    describe: 'partitions of a topic created by --create-topics',
  },
  {
    key: 'topicReplicationFactor',
    env: 'FRAUD_SQL_TOPIC_REPLICATION_FACTOR',
    kind: 'int',
    default: 1,
    min: 1,
    max: 100,
    describe: 'replication factor of a topic created by --create-topics (3 on a production cluster)',
  },
  { key: 'queriesDir', env: 'FRAUD_SQL_QUERIES', kind: 'string', default: path.join(PACKAGE_ROOT, 'queries'), describe: 'directory of rule files (*.sql)' },
  {
    key: 'batchMaxSize',
    env: 'FRAUD_SQL_BATCH_MAX_SIZE',
    kind: 'int',
    // 20,000 held about 100 MB more in flight while draining a backlog; 5,000 drains it somewhat slower.
    default: 5_000,
    min: 1,
    max: 1_000_000,
    describe: 'a micro-batch closes at this many messages',
  },
  {
    key: 'batchMaxWaitMs',
    env: 'FRAUD_SQL_BATCH_MAX_WAIT_MS',
    kind: 'int',
    default: 50,
    min: 1,
    max: 60_000,
    describe: 'a micro-batch closes at the latest this long after its first message (sooner once the engine is free for it)',
  },
  {
    key: 'windowBatchIntervalMs',
    env: 'FRAUD_SQL_WINDOW_BATCH_INTERVAL_MS',
    kind: 'int',
    // At 15 orders/s a window engine took one-order batches, each costing tens of ms of
    // query planning; 250 ms keeps window detections well under a second.
    default: 250,
    min: 0,
    max: 60_000,
    describe:
      'next to the per-order lane, a window engine starts a micro-batch at most this often (fewer, larger batches: less CPU, and the lane is not crowded out); its detections come up to this much later (0: as soon as it is free)',
  },
  { key: 'latenessMs', env: 'FRAUD_SQL_LATENESS_MS', kind: 'int', default: 5_000, min: 0, max: 3_600_000, describe: 'allowed lateness of event time' },
  {
    key: 'idleTimeoutMs',
    env: 'FRAUD_SQL_IDLE_TIMEOUT_MS',
    kind: 'int',
    default: 10_000,
    min: 100,
    max: 3_600_000,
    describe: 'after this much quiet, windows close on wall-clock time',
  },
  { key: 'timeZone', env: 'FRAUD_SQL_TIME_ZONE', kind: 'string', default: 'Asia/Seoul', describe: 'zone of order timestamps that carry no offset' },
  {
    key: 'maxMessageBytes',
    env: 'FRAUD_SQL_MAX_MESSAGE_BYTES',
    kind: 'int',
    default: 65_536,
    min: 256,
    max: 16_777_216,
    describe: 'larger messages are dead letters',
  },
  { key: 'httpHost', env: 'FRAUD_SQL_HTTP_HOST', kind: 'string', default: '127.0.0.1', describe: 'address of the metrics/health server' },
  {
    key: 'httpPort',
    env: 'FRAUD_SQL_HTTP_PORT',
    kind: 'int',
    default: 8787,
    min: 0,
    max: 65_535,
    describe: 'port of the metrics/health server (0: any free port)',
  },
  { key: 'console', env: 'FRAUD_SQL_CONSOLE', kind: 'bool', default: false, describe: 'print detections to the terminal as they happen' },
  { key: 'logLevel', env: 'FRAUD_SQL_LOG_LEVEL', kind: 'string', default: 'info', choices: ['debug', 'info', 'warn', 'error'], describe: 'log level' },
  {
    key: 'kafkaSessionTimeoutMs',
    env: 'FRAUD_SQL_KAFKA_SESSION_TIMEOUT_MS',
    kind: 'int',
    default: 10_000,
    min: 6_000,
    max: 300_000,
    describe: 'how long a crashed instance keeps its partitions before the group moves them',
  },
  { key: 'kafkaSsl', env: 'FRAUD_SQL_KAFKA_SSL', kind: 'bool', default: false, describe: 'connect to Kafka over TLS' },
  {
    key: 'kafkaSaslMechanism',
    env: 'FRAUD_SQL_KAFKA_SASL_MECHANISM',
    kind: 'string',
    default: 'none',
    choices: ['none', 'plain', 'scram-sha-256', 'scram-sha-512'],
    describe: 'Kafka SASL mechanism',
  },
  { key: 'kafkaSaslUsername', env: 'FRAUD_SQL_KAFKA_SASL_USERNAME', kind: 'string', default: '', optional: true, describe: 'Kafka SASL user name' },
  {
    key: 'kafkaSaslPassword',
    env: 'FRAUD_SQL_KAFKA_SASL_PASSWORD',
    kind: 'string',
    default: '',
    optional: true,
    secret: true,
    describe: 'Kafka SASL password (environment only)',
  },
  {
    key: 'pgSslMode',
    env: 'FRAUD_SQL_PG_SSL_MODE',
    kind: 'string',
    default: 'disable',
    choices: ['disable', 'require', 'verify-full'],
    describe: 'PostgreSQL TLS: disable, require (encrypt), verify-full (encrypt and verify the server certificate)',
  },
  { key: 'pgSslCa', env: 'FRAUD_SQL_PG_SSL_CA', kind: 'string', default: '', optional: true, describe: 'CA certificate file for verify-full' },
  {
    key: 'alertsTopic',
    env: 'FRAUD_SQL_ALERTS_TOPIC',
    kind: 'string',
    default: 'fraud.alerts',
    optional: true,
    describe: 'Kafka topic every alert is published to (created if missing); empty: none',
  },
  {
    key: 'decisionsPort',
    env: 'FRAUD_SQL_DECISIONS_PORT',
    kind: 'int',
    default: 8788,
    min: 0,
    max: 65_535,
    describe: 'port of the decision lookup, GET /v1/decisions (on --http-host, served by a thread of its own); 0: any free one',
  },
  {
    key: 'alertWebhook',
    env: 'FRAUD_SQL_ALERT_WEBHOOK',
    kind: 'list',
    default: [],
    optional: true,
    describe: 'URL every alert is POSTed to, signed with FRAUD_SQL_ALERT_WEBHOOK_SECRET (repeat the flag, or comma-separate, for several)',
  },
  {
    key: 'alertWebhookSecret',
    env: 'FRAUD_SQL_ALERT_WEBHOOK_SECRET',
    kind: 'string',
    default: '',
    optional: true,
    secret: true,
    describe: 'HMAC-SHA256 key of the X-Fraud-SQL-Signature header of webhook alerts (environment only)',
  },
  {
    key: 'alertWebhookTimeoutMs',
    env: 'FRAUD_SQL_ALERT_WEBHOOK_TIMEOUT_MS',
    kind: 'int',
    default: 5_000,
    min: 100,
    max: 120_000,
    describe: 'a webhook attempt fails after this long without an answer',
  },
  {
    key: 'alertWebhookMaxAttempts',
    env: 'FRAUD_SQL_ALERT_WEBHOOK_MAX_ATTEMPTS',
    kind: 'int',
    default: 8,
    min: 1,
    max: 100,
    describe: 'attempts per webhook alert before it goes to the alert_dead_letters table',
  },
  {
    key: 'alertWebhookRetryMs',
    env: 'FRAUD_SQL_ALERT_WEBHOOK_RETRY_MS',
    kind: 'int',
    default: 1_000,
    min: 10,
    max: 600_000,
    describe: 'delay before the first webhook retry, doubled for each next one (at most a minute)',
  },
  {
    key: 'failpoint',
    env: 'FRAUD_SQL_FAILPOINT',
    kind: 'string',
    default: '',
    optional: true,
    secret: true,
    describe: 'testing aid: kill the process at a point of the batch cycle (e.g. before-commit:3), or fail there (fetch-error, repartition-check-error)',
  },
];

/** Flag name for a setting: batchMaxSize -> batch-max-size. */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

function parseValue(s: Setting, raw: unknown, origin: string, problems: string[]): unknown {
  const where = origin;
  switch (s.kind) {
    case 'string': {
      const v = String(raw).trim();
      if (v === '' && !s.optional) problems.push(`${where}: must not be empty`);
      else if (s.choices && !s.choices.includes(v)) problems.push(`${where}: "${v}" is not one of ${s.choices.join(', ')}`);
      return v;
    }
    case 'int': {
      const v = typeof raw === 'number' ? raw : Number(String(raw).trim());
      if (!Number.isInteger(v)) problems.push(`${where}: "${String(raw)}" is not a whole number`);
      else if (s.min !== undefined && v < s.min) problems.push(`${where}: ${v} is below the minimum ${s.min}`);
      else if (s.max !== undefined && v > s.max) problems.push(`${where}: ${v} is above the maximum ${s.max}`);
      return v;
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      const v = String(raw).trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
      problems.push(`${where}: "${String(raw)}" is not a boolean (true/false)`);
      return false;
    }
    case 'list': {
      const v = (Array.isArray(raw) ? raw.map(String) : String(raw).split(',')).map((x) => x.trim()).filter(Boolean);
      if (v.length === 0 && !s.optional) problems.push(`${where}: must name at least one entry`);
      return v;
    }
  }
}

/**
 * Builds the configuration. `flags` holds only what the user passed on the command
 * line (undefined = not given). Throws CONFIG_INVALID listing every problem.
 */
export function loadConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv, overrides: Partial<Config> = {}): Readonly<Config> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const flag = flags[s.key] ?? flags[flagName(s.key)];
    if (overrides[s.key] !== undefined) out[s.key] = overrides[s.key];
    else if (flag !== undefined && s.secret) problems.push(`--${flagName(s.key)}: secrets are read from ${s.env} only`);
    else if (flag !== undefined) out[s.key] = parseValue(s, flag, `--${flagName(s.key)}`, problems);
    else if (env[s.env] !== undefined) out[s.key] = parseValue(s, env[s.env], s.env, problems);
    else out[s.key] = s.default;
  }
  const c = out as unknown as Config;
  c.databaseConfigured =
    overrides.databaseUrl !== undefined || flags.databaseUrl !== undefined || flags['database-url'] !== undefined || env.FRAUD_SQL_DATABASE_URL !== undefined;
  if (!c.databaseUrl.startsWith('postgres://') && !c.databaseUrl.startsWith('postgresql://')) {
    problems.push(`database URL: "${redactUrl(c.databaseUrl)}" must start with postgres:// or postgresql://`);
  }
  for (const b of c.brokers) {
    if (!/^[^\s:]+:\d{1,5}$/.test(b)) problems.push(`brokers: "${b}" is not host:port`);
  }
  if (c.kafkaSaslMechanism !== 'none' && (!c.kafkaSaslUsername || !c.kafkaSaslPassword)) {
    problems.push(`kafka SASL ${c.kafkaSaslMechanism}: set FRAUD_SQL_KAFKA_SASL_USERNAME and FRAUD_SQL_KAFKA_SASL_PASSWORD`);
  }
  for (const p of c.params) {
    if (!/^[a-z_][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*=.+$/.test(p)) problems.push(`params: "${p}" is not rule.param=value`);
  }
  if (c.failpoint) {
    const f = parseFailpoint(c.failpoint);
    if (typeof f === 'string') problems.push(`FRAUD_SQL_FAILPOINT: ${f}`);
  }
  for (const u of c.alertWebhook) {
    if (!/^https?:\/\/[^\s]+$/.test(u) || !URL.canParse(u)) problems.push(`alert webhook: "${u}" is not an http:// or https:// URL`);
  }
  if (c.alertWebhook.length > 0 && !c.alertWebhookSecret) {
    problems.push('alert webhooks are signed: set FRAUD_SQL_ALERT_WEBHOOK_SECRET (receivers check X-Fraud-SQL-Signature with it)');
  }
  if (c.pgSslCa && c.pgSslMode !== 'verify-full') problems.push('FRAUD_SQL_PG_SSL_CA is used only with FRAUD_SQL_PG_SSL_MODE=verify-full');
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(c.pgSchema)) problems.push(`pg schema: "${c.pgSchema}" is not a plain SQL identifier`);
  try {
    assertTimeZone(c.timeZone);
  } catch {
    problems.push(`time zone: "${c.timeZone}" is not an IANA zone name (e.g. Asia/Seoul, UTC)`);
  }
  if (problems.length > 0) {
    throw new FraudSqlError('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return Object.freeze({ ...c, brokers: Object.freeze([...c.brokers]) as string[] });
}

/** The URL with its password replaced, safe for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
  }
}

/** The parameter overrides as the rule loader takes them. */
export function paramOverrides(c: Readonly<Config>): Map<string, string> {
  return new Map(c.params.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
}

/** Kafka TLS/SASL settings in the adapter's terms. */
export function kafkaSecurity(c: Readonly<Config>) {
  return {
    ssl: c.kafkaSsl,
    sasl: c.kafkaSaslMechanism === 'none' ? null : { mechanism: c.kafkaSaslMechanism, username: c.kafkaSaslUsername, password: c.kafkaSaslPassword },
  };
}

/** PostgreSQL TLS in node-postgres' terms: require encrypts, verify-full also checks the certificate. */
export function pgSsl(c: Readonly<Config>, readCa: (path: string) => string): false | { rejectUnauthorized: boolean; ca?: string } {
  if (c.pgSslMode === 'disable') return false;
  if (c.pgSslMode === 'require') return { rejectUnauthorized: false };
  return c.pgSslCa ? { rejectUnauthorized: true, ca: readCa(c.pgSslCa) } : { rejectUnauthorized: true };
}
