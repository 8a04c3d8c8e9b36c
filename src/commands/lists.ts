/**
 * `fraud-sql lists add|remove|show`: entries of the allow and block lists kept in
 * PostgreSQL, for what operators change while fraud-sql runs (an office's new
 * address, a stolen account). They add to the list files in queries/lists/ and
 * every running process applies a change at its next batch.
 */
import { isIP } from 'node:net';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { redactUrl, type Config } from '../config.js';
import { FraudSqlError } from '../errors.js';
import { createLogger } from '../log.js';
import { loadLists, type List } from '../rules/lists.js';
import { addListEntry, readListEntries, removeListEntry } from '../sink/list-entries.js';
import { openSink } from '../compose.js';
import { safe } from '../console.js';
import { configFrom, withSettings } from './common.js';

const KEYS = ['databaseUrl', 'pgSchema', 'pgSslMode', 'pgSslCa', 'queriesDir', 'logLevel'] as const;

/** The list named, as its file defines it; a clear error naming the ones there are otherwise. */
function fileList(config: Readonly<Config>, name: string): List {
  const { lists, diagnostics } = loadLists(config.queriesDir);
  const list = lists.find((l) => l.name === name);
  if (list) return list;
  const broken = diagnostics.find((d) => path.basename(d.file, '.csv') === name);
  if (broken) throw new FraudSqlError('LIST_INVALID', `${broken.file}:${broken.line}: ${broken.message}`);
  const dir = path.join(config.queriesDir, 'lists');
  throw new FraudSqlError(
    'LIST_INVALID',
    `no list "${name}" in ${dir} (${lists.length > 0 ? `lists: ${lists.map((l) => l.name).join(', ')}` : 'none there'}); a list is a file ${dir}/<name>.csv`,
  );
}

/** The problems with a value for `list`: its first column says what it holds. */
function valueProblem(list: List, value: string): string | null {
  if (value.length === 0 || value.length > 100) return 'a value is 1 to 100 characters';
  if (/\p{Cc}/u.test(value)) return 'a value has no control characters';
  if (list.columns[0] === 'ip_address' && isIP(value) === 0) return `"${safe(value)}" is not an IPv4 or IPv6 address`;
  return null;
}

/** `readOnly`: reads only, from a schema that must have been migrated already. */
async function withSink<T>(config: Readonly<Config>, fn: (sink: Awaited<ReturnType<typeof openSink>>) => Promise<T>, readOnly = false): Promise<T> {
  const sink = await openSink(config, createLogger(config.logLevel), readOnly ? { readOnly: { needs: ['list_entries'] } } : {});
  try {
    return await fn(sink);
  } finally {
    await sink.close();
  }
}

const add: CommandModule<object, { list: string; value: string; reason?: string }> = {
  command: 'add <list> <value>',
  describe: 'add a value to a list (e.g. lists add allow_ips 203.0.113.9 --reason "office NAT")',
  builder: (y) =>
    withSettings(y, KEYS)
      .positional('list', { type: 'string', demandOption: true })
      .positional('value', { type: 'string', demandOption: true })
      .option('reason', { type: 'string', describe: 'why (kept with the entry)' }),
  handler: async (argv) => {
    const config = configFrom(argv as unknown as Record<string, unknown>);
    const list = fileList(config, argv.list);
    const value = String(argv.value).trim();
    const problem = valueProblem(list, value);
    if (problem) throw new FraudSqlError('LIST_INVALID', `${argv.list}: ${problem}`);
    const added = await withSink(config, (sink) => addListEntry(sink, config.pgSchema, { list: list.name, value, reason: argv.reason ?? '' }));
    process.stdout.write(
      `${added ? 'added' : 'already there (reason updated)'}: ${list.name} ${safe(value)} (${redactUrl(config.databaseUrl)}, schema ${config.pgSchema}); running processes apply it at their next batch\n`,
    );
  },
};

const remove: CommandModule<object, { list: string; value: string }> = {
  command: 'remove <list> <value>',
  describe: 'remove a value added with lists add (entries of the list file stay: edit the file)',
  builder: (y) => withSettings(y, KEYS).positional('list', { type: 'string', demandOption: true }).positional('value', { type: 'string', demandOption: true }),
  handler: async (argv) => {
    const config = configFrom(argv as unknown as Record<string, unknown>);
    const list = fileList(config, argv.list);
    const value = String(argv.value).trim();
    const removed = await withSink(config, (sink) => removeListEntry(sink, config.pgSchema, list.name, value));
    if (!removed) {
      const inFile = list.rows.some((r) => r[0] === value);
      throw new FraudSqlError(
        'LIST_ENTRY_UNKNOWN',
        inFile ? `${list.name}: ${safe(value)} is in ${list.file}: remove it there` : `${list.name}: ${safe(value)} was not added with lists add`,
      );
    }
    process.stdout.write(`removed: ${list.name} ${safe(value)}; running processes apply it at their next batch\n`);
  },
};

const show: CommandModule<object, { list?: string }> = {
  command: 'show [list]',
  describe: 'every entry of the lists (or of one), from its file and from PostgreSQL',
  builder: (y) => withSettings(y, KEYS).positional('list', { type: 'string' }),
  handler: async (argv) => {
    const config = configFrom(argv as unknown as Record<string, unknown>);
    const lists = argv.list ? [fileList(config, argv.list)] : loadLists(config.queriesDir).lists;
    const entries = await withSink(config, (sink) => readListEntries(sink), true);
    for (const l of lists) {
      process.stdout.write(`${l.name} (${l.columns[0]}):\n`);
      const reason = l.columns.indexOf('reason');
      for (const r of l.rows) process.stdout.write(`  ${safe(r[0])}  ${reason >= 0 ? safe(r[reason]) : ''}  [${path.basename(l.file)}]\n`);
      for (const e of entries.filter((x) => x.list === l.name)) process.stdout.write(`  ${safe(e.value)}  ${safe(e.reason)}  [lists add]\n`);
    }
  },
};

export const listsCommand: CommandModule = {
  command: 'lists <action>',
  describe: 'the allow and block lists: add and remove entries at run time, show them',
  builder: (y) => y.command(add).command(remove).command(show).demandCommand(1, 'name an action: add, remove or show'),
  handler: () => {},
};
