/** Loads, checks and runs the rule set as the engine's RulesPort. */
import { FraudSqlError } from '../errors.js';
import { DuckState } from '../state/duckdb.js';
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

  /**
   * Loads the rules again. The new set is checked on an empty scratch database
   * first; if anything is wrong the current rules stay and the problems are
   * returned. Otherwise it replaces the current set: window state is untouched,
   * and the results other rules read are rebuilt from the retained orders for
   * every such rule whose version changed.
   */
  async reload(dir: string, overrides?: ParamOverrides): Promise<{ ok: boolean; problems: Diagnostic[]; changed: string[]; added: string[]; removed: string[] }> {
    const scratch = await DuckState.open(':memory:', { threads: 1 });
    let check: Awaited<ReturnType<typeof checkRules>>;
    try {
      check = await checkRules(scratch, dir, overrides);
    } finally {
      scratch.close();
    }
    if (check.problems.length > 0) return { ok: false, problems: check.problems, changed: [], added: [], removed: [] };
    const before = new Map(this.current.map((p) => [p.rule.name, p.rule.version]));
    const rules = check.prepared.map((p) => p.rule);
    const keep = new Set(this.current.filter((p) => p.mirrored && before.get(p.rule.name) === rules.find((r) => r.name === p.rule.name)?.version).map((p) => p.rule.name));
    const { prepared, diagnostics } = await prepareRules(this.state, rules, keep);
    if (diagnostics.length > 0) return { ok: false, problems: diagnostics, changed: [], added: [], removed: [] };
    const rebuild = new Set(prepared.filter((p) => p.mirrored && !keep.has(p.rule.name)).map((p) => p.rule.name));
    if (rebuild.size > 0) {
      await this.state.setBatch(-1);
      await rebuildMirrors(this.state, prepared, rebuild);
    }
    this.current = prepared;
    const after = new Map(rules.map((r) => [r.name, r.version]));
    return {
      ok: true,
      problems: [],
      changed: [...after].filter(([n, v]) => before.has(n) && before.get(n) !== v).map(([n]) => n),
      added: [...after.keys()].filter((n) => !before.has(n)),
      removed: [...before.keys()].filter((n) => !after.has(n)),
    };
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
