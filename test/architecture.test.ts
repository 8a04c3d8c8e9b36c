/**
 * The direction of dependencies is a lint rule (eslint.config.js): the engine
 * imports only its ports, plain types and Node's own modules; adapters never
 * import the composition. The tree passes, and the rule catches a violation.
 */
import t from 'tap';
import { ESLint } from 'eslint';

const root = new URL('..', import.meta.url).pathname;
const eslint = new ESLint({ cwd: root });
const problems = async (code: string, filePath: string) =>
  (await eslint.lintText(code, { filePath: `${root}${filePath}` })).flatMap((r) => r.messages.map((m) => `${m.ruleId}: ${m.message}`));

t.test('src/ has no lint problems', async (t) => {
  const results = await eslint.lintFiles(['src']);
  const found = results.flatMap((r) => r.messages.map((m) => `${r.filePath.slice(root.length)}:${m.line}: ${m.ruleId}: ${m.message}`));
  t.same(found, []);
});

t.test('the engine may not import an adapter or a driver', async (t) => {
  for (const spec of [
    '../sink/postgres.js',
    '../state/duckdb.js',
    '../source/kafka.js',
    '../rules/index.js',
    '../http/metrics.js',
    '../compose.js',
    'kafkajs',
    'pg',
    '@duckdb/node-api',
  ]) {
    const found = await problems(`import * as x from '${spec}';\nexport const y = x;\n`, 'src/engine/probe.ts');
    t.match(found.join('\n'), /no-restricted-imports/, `${spec} is refused`);
  }
  t.same(
    await problems(
      `import type { SinkPort } from './ports.js';\nimport { EventEmitter } from 'node:events';\nexport type Y = SinkPort | EventEmitter;\n`,
      'src/engine/probe.ts',
    ),
    [],
    'its own ports and Node modules are fine',
  );
});

t.test('an adapter may not import the composition', async (t) => {
  const found = await problems(`import { startRun } from '../commands/run.js';\nexport const y = startRun;\n`, 'src/sink/probe.ts');
  t.match(found.join('\n'), /no-restricted-imports/);
});
