#!/usr/bin/env node
/**
 * The whole vitest suite, once, on the Node.js a release ships (scripts/runtime.mjs),
 * whatever node runs npm: the root's vitest run (the unit and the system projects) and the
 * infra/ workspace's. The runtime's bin/ goes first on PATH, so that every `node` the tests
 * start (the built bundle, the agent image's base, tsx children) is that one too. `npm test`
 * runs this after typecheck and lint (docs/testing.md).
 *
 *   node scripts/test-on-runtime.mjs [vitest options and files]
 *
 * With arguments, only the root's vitest run gets them (e.g. `--project unit`); infra's runs
 * only without arguments, and only then is the Debian rootfs of test/systemd-host.test.ts
 * made in the background from the start of the run (BERTH_TEST_EARLY_DEBOOTSTRAP=1,
 * test/helpers/debian-rootfs-setup.ts).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { runtime, runtimeNode } from './runtime.mjs';

const root = resolve(import.meta.dirname, '..');
const node = runtimeNode();
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? ''}` };
const extra = process.argv.slice(2);
if (extra.length === 0) env.BERTH_TEST_EARLY_DEBOOTSTRAP = '1';
const runs = [{ cwd: root, args: extra, what: 'vitest run' }];
if (extra.length === 0) runs.push({ cwd: join(root, 'infra'), args: [], what: 'vitest run (infra/)' });
for (const { cwd, args, what } of runs) {
  const line = [what, ...args].join(' ');
  console.log(`\nNode.js ${runtime.version} (the release's runtime): ${line}`);
  const started = Date.now();
  const res = spawnSync(node, [vitest, 'run', ...args], { cwd, env, stdio: 'inherit' });
  console.log(`Node.js ${runtime.version}: ${line}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (res.status !== 0) process.exit(res.status ?? 1);
}
