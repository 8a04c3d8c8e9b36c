/**
 * The Node versions package.json promises are ones every installed package
 * supports, and so is this Node: `npm ci` warns of no EBADENGINE. The lockfile
 * records each package's `engines`, so this needs no registry.
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import semver from 'semver';

const root = new URL('../', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
const lock = JSON.parse(readFileSync(`${root}package-lock.json`, 'utf8'));

t.test('every installed package supports the Node versions fraud-sql promises, and this one', async (t) => {
  const ours: string = pkg.engines.node;
  t.equal(lock.packages[''].engines?.node, ours, 'the lockfile is current');
  let checked = 0;
  for (const [path, entry] of Object.entries<{ version?: string; engines?: { node?: string } }>(lock.packages)) {
    const theirs = entry.engines?.node;
    // Per-platform builds for other systems are in the lockfile but not installed.
    if (path === '' || !theirs || !existsSync(`${root}${path}`)) continue;
    checked++;
    const name = `${path.replace(/^.*node_modules\//, '')}@${entry.version}`;
    t.ok(semver.subset(ours, theirs), `${name} (node ${theirs}) runs on every Node of ${ours}`);
    t.ok(semver.satisfies(process.version, theirs), `${name} runs on ${process.version}`);
  }
  t.ok(checked > 50, `${checked} packages declare the Node versions they support`);
});
