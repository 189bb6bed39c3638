/**
 * The agent's resident memory on the release's Node.js against the node running this script
 * (the baseline, measured in the same run): the built agent (loop backend, the node flags it
 * ships with, agent/node-flags.ts) started on each runtime, 100 volumes created, then 2000
 * requests of the hot path's mix (Get 60 % / Path 30 % / List 10 %), then its VmRSS.
 * Prints each runtime's figure and the ratio to the baseline; the target (docs/operations.md,
 * "Plugin hot path") is 60 MB after a run.
 *
 * Needs root (the plugin socket under /run/docker/plugins).
 *
 *   node --import tsx bench/runtime-memory.ts [--rounds 3]
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { sleep } from '../lib/sleep.js';
import { median, rssOf, unixPoster } from './lib.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } });
const rounds = Number(values.rounds);
const repo = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'berth-runtime-memory-'));
execFileSync(process.execPath, [join(repo, 'scripts/release.mjs'), '--stage', join(dir, 'release')], { stdio: 'inherit' });
const release = join(dir, 'release');

async function measure(node: string, round: number): Promise<number> {
  const name = `berth-rtmem-${process.pid}-${round}`;
  const socket = `/run/docker/plugins/${name}.sock`;
  const state = join(dir, `state-${round}-${node.length}`);
  const child = spawn(node, [...AGENT_NODE_FLAGS, join(release, 'dist/agent/main.js')], {
    env: { PATH: process.env.PATH, BERTH_BACKEND: 'loop', BERTH_PLUGIN_NAME: name, BERTH_STATE_DIR: state, BERTH_HEALTH_ADDR: '127.0.0.1:0' },
    stdio: 'ignore',
  });
  try {
    for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(100);
    const post = unixPoster(socket);
    // Volumes the agent knows: Create writes a sparse image and its sidecar; nothing is attached or mounted.
    for (let v = 0; v < 100; v++) await post('/VolumeDriver.Create', { Name: `v${v}`, Opts: { size: '64MiB' } });
    for (let i = 0; i < 2000; i++) {
      const v = `v${i % 100}`;
      const r = i % 10;
      await post(r < 6 ? '/VolumeDriver.Get' : r < 9 ? '/VolumeDriver.Path' : '/VolumeDriver.List', { Name: v });
    }
    await sleep(2000);
    return rssOf(child.pid!, (p) => readFileSync(p, 'utf8'));
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(state, { recursive: true, force: true });
  }
}

const runtimes = [['baseline (this node)', process.execPath], ['release', join(release, 'bin/node')]] as const;
const results = new Map<string, number[]>();
for (let round = 0; round < rounds; round++) {
  for (const [label, node] of round % 2 ? [...runtimes].reverse() : runtimes) {
    const rss = await measure(node, round);
    results.set(label, [...(results.get(label) ?? []), rss]);
  }
}
const version = (node: string) => execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
const base = median(results.get(runtimes[0][0])!);
for (const [label, node] of runtimes) {
  const rss = median(results.get(label)!);
  console.log(`${label.padEnd(22)} node ${version(node).padEnd(9)} RSS after 2000 requests: ${(rss / 2 ** 20).toFixed(1)} MB (median of ${rounds}), ${(rss / base).toFixed(2)}x the baseline; target 60 MB`);
}
rmSync(dir, { recursive: true, force: true });
