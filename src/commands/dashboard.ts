/** `fraud-sql dashboard`: the Grafana dashboard for the rules, one panel each, printed as JSON. */
import type { CommandModule } from 'yargs';
import { paramOverrides } from '../config.js';
import { grafanaDashboard } from '../grafana/dashboard.js';
import { RuleSet } from '../rules/index.js';
import { DuckState } from '../state/duckdb.js';
import { configFrom, withSettings } from './common.js';

/** The dashboard JSON for the rules of `dir`, as the file in grafana/dashboards/ holds it. */
export async function dashboardJson(dir: string, overrides?: ReadonlyMap<string, string>): Promise<string> {
  const state = await DuckState.open(':memory:', { threads: 1 });
  try {
    const rules = await RuleSet.load(state, dir, overrides);
    return `${JSON.stringify(grafanaDashboard(rules.prepared()), null, 2)}\n`;
  } finally {
    state.close();
  }
}

export const dashboardCommand: CommandModule<object, Record<string, unknown>> = {
  command: 'dashboard',
  describe: 'print the Grafana dashboard for the rules (one panel per rule): fraud-sql dashboard > grafana/dashboards/fraud-sql.json',
  builder: (y) => withSettings(y, ['queriesDir', 'params']),
  handler: async (argv) => {
    const config = configFrom(argv);
    process.stdout.write(await dashboardJson(config.queriesDir, paramOverrides(config)));
  },
};
