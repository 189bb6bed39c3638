#!/usr/bin/env node
/**
 * The tests of what a host runs, again on the Node.js a release ships (scripts/runtime.mjs),
 * whatever node runs the rest of the suite: the unit project (the agent, the plugin, the
 * userdata), then the built bundle (test/build.test.ts) and the region test
 * (test/region.test.ts). The runtime's bin/ goes first on PATH, so that every `node` the
 * tests start is that one too. Part of `npm test`.
 *
 *   node scripts/test-on-runtime.mjs [vitest options]
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { runtime, runtimeNode } from './runtime.mjs';

const root = resolve(import.meta.dirname, '..');
const node = runtimeNode();
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? ''}` };
const extra = process.argv.slice(2);
for (const args of [['--project', 'unit'], ['--project', 'system', 'test/build.test.ts', 'test/region.test.ts']]) {
  console.log(`\nNode.js ${runtime.version} (the release's runtime): vitest run ${args.join(' ')}`);
  const started = Date.now();
  const res = spawnSync(node, [vitest, 'run', ...args, ...extra], { cwd: root, env, stdio: 'inherit' });
  console.log(`Node.js ${runtime.version}: vitest run ${args.join(' ')}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (res.status !== 0) process.exit(res.status ?? 1);
}
