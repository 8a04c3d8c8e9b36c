/** Loads, checks and runs the rule set as the engine's RulesPort. */
import { FraudSqlError } from '../errors.js';
import { DuckState } from '../state/duckdb.js';
import type { Columns, Diagnostic, RulesPort } from '../engine/ports.js';
import { formatDiagnostic, loadRules, type ParamOverrides, type Rule } from './loader.js';
import { TableChangeRefused, type ResultTable } from '../sink/tables.js';
import { installLists, loadLists, withEntries, type List, type ListEntry } from './lists.js';
import { finalizeMirrors, prepareRules, rebuildMirrors, restoreMirror, runRules, trimMirrors, type PreparedRule } from './runner.js';

/**
 * Brings the sinks' tables to a rule set's definition before it runs; throws (with
 * one line per refused table) when a change would lose rows.
 */
export type TablesHook = (tables: readonly ResultTable[]) => Promise<void>;

/**
 * Picks the rules one engine runs out of all the valid ones (see src/plan.ts), or
 * says why the set cannot run as it is.
 */
export type RuleSelection = (rules: readonly Rule[]) => { rules: Rule[]; problems: Diagnostic[] };

const everyRule: RuleSelection = (rules) => ({ rules: [...rules], problems: [] });

export class RuleSet implements RulesPort {
  private constructor(
    private readonly state: DuckState,
    private current: PreparedRule[],
    private readonly select: RuleSelection,
    /** The lists installed with the current rules. */
    private currentLists: List[],
    /** The list entries added at run time (PostgreSQL), on top of the list files. */
    private readonly listEntries: () => readonly ListEntry[],
  ) {}

  /** Loads and checks every rule (or those `select` picks); any problem fails with all diagnostics listed. */
  static async load(
    state: DuckState,
    dir: string,
    overrides?: ParamOverrides,
    select: RuleSelection = everyRule,
    listEntries: () => readonly ListEntry[] = () => [],
  ): Promise<RuleSet> {
    const diagnostics = await checkRules(state, dir, overrides, select, listEntries());
    if (diagnostics.problems.length > 0) {
      throw new FraudSqlError('RULES_INVALID', `invalid rules in ${dir}:\n  ${diagnostics.problems.map(formatDiagnostic).join('\n  ')}`);
    }
    return new RuleSet(state, diagnostics.prepared, select, diagnostics.lists, listEntries);
  }

  /**
   * Loads the rules again. The new set is checked on an empty scratch database
   * first; if anything is wrong the current rules stay and the problems are
   * returned. Otherwise it replaces the current set: window state is untouched,
   * and the results other rules read are rebuilt from the retained orders for
   * every such rule whose version changed (a rule that reads its own results
   * keeps them, unless its output columns changed).
   */
  async reload(
    dir: string,
    overrides?: ParamOverrides,
    /** Called with the new set's tables before it replaces the current one; a throw rejects the edit. */
    ensureTables?: TablesHook,
  ): Promise<{ ok: boolean; problems: Diagnostic[]; changed: string[]; added: string[]; removed: string[] }> {
    const scratch = await DuckState.open(':memory:', { threads: 1 });
    let check: Awaited<ReturnType<typeof checkRules>>;
    try {
      check = await checkRules(scratch, dir, overrides, this.select, this.listEntries());
    } finally {
      scratch.close();
    }
    if (check.problems.length > 0) return { ok: false, problems: check.problems, changed: [], added: [], removed: [] };
    if (ensureTables) {
      try {
        await ensureTables(resultTables(check.prepared));
      } catch (err) {
        const problems =
          err instanceof TableChangeRefused
            ? err.refusals.map((r) => ({ file: r.file, line: 1, column: 1, message: r.message }))
            : [{ file: dir, line: 0, column: 0, message: `result tables: ${(err as Error).message}` }];
        return { ok: false, problems, changed: [], added: [], removed: [] };
      }
    }
    const before = new Map(this.current.map((p) => [p.rule.name, p.rule.version]));
    const rules = check.prepared.map((p) => p.rule);
    // Results are kept when the rule is unchanged, and for a rule that reads its own
    // rows: they are its state, which the new version carries on from.
    const wasMirrored = new Set(this.current.filter((p) => p.mirrored).map((p) => p.rule.name));
    const keep = new Set(rules.filter((r) => wasMirrored.has(r.name) && (r.readsOwnResults || before.get(r.name) === r.version)).map((r) => r.name));
    await installLists(this.state, check.lists);
    const { prepared, diagnostics } = await prepareRules(this.state, rules, keep);
    if (diagnostics.length > 0) return { ok: false, problems: diagnostics, changed: [], added: [], removed: [] };
    const rebuild = new Set(prepared.filter((p) => p.emptyMirror).map((p) => p.rule.name));
    if (rebuild.size > 0) {
      await this.state.setBatch(-1);
      await rebuildMirrors(this.state, prepared, rebuild);
    }
    this.current = prepared;
    this.currentLists = check.lists;
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

  /** The allow and block lists in force. */
  lists(): readonly List[] {
    return this.currentLists;
  }

  /** The result tables of the current rules, one per target. */
  tables(): ResultTable[] {
    return resultTables(this.current);
  }

  finalize(watermarks: ReadonlyMap<number, number>) {
    return finalizeMirrors(this.state, this.current, watermarks);
  }

  run(opts: { keepChanged: boolean } = { keepChanged: false }) {
    return runRules(this.state, this.current, opts.keepChanged);
  }

  async restoreMirror(rule: string, partitions: readonly number[], rows: Columns | null): Promise<void> {
    const p = this.current.find((x) => x.rule.name === rule);
    if (p) await restoreMirror(this.state, p, partitions, rows);
  }

  trim(watermarks: ReadonlyMap<number, number>, horizonUs: number) {
    return trimMirrors(this.state, this.current, watermarks, horizonUs);
  }
}

export async function checkRules(
  state: DuckState,
  dir: string,
  overrides?: ParamOverrides,
  select: RuleSelection = everyRule,
  entries: readonly ListEntry[] = [],
): Promise<{ prepared: PreparedRule[]; lists: List[]; problems: Diagnostic[] }> {
  const loaded = loadRules(dir, overrides);
  const picked = select(loaded.rules);
  // Before the rules: they are checked against the lists' tables.
  const lists = loadLists(dir);
  const merged = withEntries(lists.lists, entries);
  await installLists(state, merged);
  const { prepared, diagnostics } = await prepareRules(state, picked.rules);
  return { prepared, lists: merged, problems: [...lists.diagnostics, ...loaded.diagnostics, ...picked.problems, ...diagnostics] };
}

/** One table per target (prepareRules has checked that rules sharing a target agree on it). */
function resultTables(prepared: readonly PreparedRule[]): ResultTable[] {
  return [...new Map(prepared.map((p) => [p.table.name, p.table])).values()];
}
