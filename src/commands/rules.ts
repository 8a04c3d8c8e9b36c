/** `fraud-sql rules check|test`: the rule files checked and their fixtures run, in memory. */
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { paramOverrides } from '../config.js';
import { checkRules } from '../rules/index.js';
import { formatDiagnostic } from '../rules/loader.js';
import { DuckState } from '../state/duckdb.js';
import { planPipelines } from '../plan.js';
import { runFixtures } from './fixtures.js';
import { configFrom, withSettings } from './common.js';

/** The settings the in-memory rule runs honour. */
export const RULE_RUN_KEYS = ['queriesDir', 'params', 'latenessMs', 'timeZone', 'maxMessageBytes'] as const;

const check: CommandModule<object, Record<string, unknown>> = {
  command: 'check',
  describe: 'validate every rule against the order schema (no Kafka or PostgreSQL needed)',
  builder: (y) => withSettings(y, ['queriesDir', 'params', 'topic', 'groupId', 'inputKeyedBy']),
  handler: async (argv) => {
    const config = configFrom(argv);
    const state = await DuckState.open(':memory:');
    try {
      const r = await checkRules(state, config.queriesDir, paramOverrides(config));
      // Where each rule's orders meet (src/plan.ts): a set whose rules need two partitionings at once is refused by run too.
      const plan = planPipelines(
        r.prepared.map((p) => p.rule),
        { topic: config.topic, group: config.groupId, inputKeyedBy: config.inputKeyedBy || null },
      );
      for (const p of r.prepared) {
        const lane = plan.plan.pipelines.find((x) => x.rules.includes(p.rule.name));
        const by = p.rule.partitionKey ? `, partitioned by ${p.rule.partitionKey}` : lane?.perOrder ? ', per order' : '';
        process.stdout.write(`ok   ${p.rule.name} -> ${p.rule.target} (${p.rule.file}, version ${p.rule.version}${by})\n`);
        if (p.rule.description) process.stdout.write(`     ${p.rule.description}\n`);
      }
      const problems = [...r.problems, ...plan.diagnostics];
      for (const d of problems) process.stdout.write(`FAIL ${formatDiagnostic(d)}\n`);
      if (problems.length > 0) process.exitCode = 1;
    } finally {
      state.close();
    }
  },
};

const test: CommandModule<object, { rule?: string }> = {
  command: 'test [rule]',
  describe: "run the rules' fixtures (queries/fixtures/<rule>/*.json) in memory: no Kafka or PostgreSQL needed",
  builder: (y) => withSettings(y, RULE_RUN_KEYS).positional('rule', { type: 'string', describe: "only this rule's fixtures" }),
  handler: async (argv) => {
    const config = configFrom(argv);
    const outcomes = await runFixtures(config, argv.rule);
    for (const o of outcomes) {
      process.stdout.write(
        `${o.ok ? 'ok  ' : 'FAIL'} ${o.rule}: ${path.basename(o.file, '.json')} (${Math.round(o.ms)} ms)${o.description ? ` - ${o.description}` : ''}\n`,
      );
      if (o.problem)
        process.stdout.write(
          `${o.problem
            .split('\n')
            .map((l) => `       ${l.trim()}`)
            .join('\n')}\n`,
        );
    }
    const failed = outcomes.filter((o) => !o.ok).length;
    process.stdout.write(`${outcomes.length - failed} passed, ${failed} failed\n`);
    if (failed > 0 || outcomes.length === 0) process.exitCode = 1;
    if (outcomes.length === 0)
      process.stderr.write(
        argv.rule
          ? `no fixtures for a rule named "${argv.rule}" under ${path.join(config.queriesDir, 'fixtures')}\n`
          : `no fixtures under ${path.join(config.queriesDir, 'fixtures')}\n`,
      );
  },
};

export const rulesCommand: CommandModule = {
  command: 'rules <action>',
  describe: 'work with the rule files',
  builder: (y) => y.command(check).command(test).demandCommand(1, 'name an action: check or test'),
  handler: () => {},
};
