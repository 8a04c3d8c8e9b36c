/** Loads, checks and runs the rule set as the engine's RulesPort. */
import { FraudSqlError } from '../errors.js';
import type { DuckState } from '../state/duckdb.js';
import type { RulesPort } from '../engine/engine.js';
import { formatDiagnostic, loadRules, type Diagnostic, type ParamOverrides } from './loader.js';
import { prepareRules, rebuildMirrors, runRules, trimMirrors, type PreparedRule } from './runner.js';

export class RuleSet implements RulesPort {
  private constructor(
    private readonly state: DuckState,
    private current: PreparedRule[],
  ) {}

  /** Loads and checks every rule; any problem fails with all diagnostics listed. */
  static async load(state: DuckState, dir: string, overrides?: ParamOverrides): Promise<RuleSet> {
    const diagnostics = await checkRules(state, dir, overrides);
    if (diagnostics.problems.length > 0) {
      throw new FraudSqlError('RULES_INVALID', `invalid rules in ${dir}:\n  ${diagnostics.problems.map(formatDiagnostic).join('\n  ')}`);
    }
    return new RuleSet(state, diagnostics.prepared);
  }

  prepared(): readonly PreparedRule[] {
    return this.current;
  }

  run() {
    return runRules(this.state, this.current);
  }

  rebuildMirrors() {
    return rebuildMirrors(this.state, this.current);
  }

  trim(watermarks: ReadonlyMap<number, number>, horizonUs: number) {
    return trimMirrors(this.state, this.current, watermarks, horizonUs);
  }
}

export async function checkRules(state: DuckState, dir: string, overrides?: ParamOverrides): Promise<{ prepared: PreparedRule[]; problems: Diagnostic[] }> {
  const loaded = loadRules(dir, overrides);
  const { prepared, diagnostics } = await prepareRules(state, loaded.rules);
  return { prepared, problems: [...loaded.diagnostics, ...diagnostics] };
}
