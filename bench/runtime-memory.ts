/**
 * The agent's resident memory on the release's Node.js against the node running this script
 * (the baseline, measured in the same run): the built agent (loop backend, the node flags it
 * ships with, agent/node-flags.ts) started on each runtime, 100 volumes created, then 2000
 * requests of the hot path's mix (Get 60 % / Path 30 % / List 10 %), then its VmRSS.
 * Prints each runtime's figure (and its split into anonymous and file-backed memory, from
 * /proc/<pid>/smaps_rollup) and the ratio to the baseline; the target (docs/operations.md,
 * "Plugin hot path") is 60 MB after a run. Each `--flags "…"` adds the release's node with
 * those flags instead of the shipped ones, measured in the same rounds (to compare flag sets); each
 * `--env "NAME=value …"` adds the release's node with the shipped flags and that environment
 * (glibc's MALLOC_ARENA_MAX, libuv's UV_THREADPOOL_SIZE).
 *
 * Needs root (the plugin socket under /run/docker/plugins).
 *
 *   node --import tsx bench/runtime-memory.ts [--rounds 3] [--flags "--a --b"]… [--env "A=1 B=2"]…
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { sleep } from '../lib/sleep.js';
import { median, rssOf, unixPoster } from './lib.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, flags: { type: 'string', multiple: true, default: [] }, env: { type: 'string', multiple: true, default: [] } } });
const rounds = Number(values.rounds);
const repo = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'berth-runtime-memory-'));
execFileSync(process.execPath, [join(repo, 'scripts/release.mjs'), '--stage', join(dir, 'release')], { stdio: 'inherit' });
const release = join(dir, 'release');

interface Memory {
  rss: number;
  anonymous: number;
  fileBacked: number;
}

async function measure(node: string, flags: readonly string[], extraEnv: Record<string, string>, round: number, index: number): Promise<Memory> {
  const name = `berth-rtmem-${process.pid}-${round}-${index}`;
  const socket = `/run/docker/plugins/${name}.sock`;
  const state = join(dir, `state-${round}-${index}`);
  const child = spawn(node, [...flags, join(release, 'dist/agent/main.js')], {
    env: { PATH: process.env.PATH, BERTH_BACKEND: 'loop', BERTH_PLUGIN_NAME: name, BERTH_STATE_DIR: state, BERTH_HEALTH_ADDR: '127.0.0.1:0', ...extraEnv },
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
    if (child.exitCode !== null) throw new Error(`${node} ${flags.join(' ')}: the agent exited with ${child.exitCode}`);
    const rollup = readFileSync(`/proc/${child.pid}/smaps_rollup`, 'utf8');
    const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0) * 1024;
    return { rss: rssOf(child.pid!, (p) => readFileSync(p, 'utf8')), anonymous: kB('Anonymous'), fileBacked: kB('Rss') - kB('Anonymous') };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(state, { recursive: true, force: true });
  }
}

const releaseNode = join(release, 'bin/node');
const envOf = (e: string) => Object.fromEntries(e.split(' ').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const runtimes: (readonly [string, string, readonly string[], Record<string, string>])[] = [
  ['baseline (this node)', process.execPath, AGENT_NODE_FLAGS, {}],
  ['release', releaseNode, AGENT_NODE_FLAGS, {}],
  ...values.flags.map((f) => [`release, ${f}`, releaseNode, f.split(' ').filter(Boolean), {}] as const),
  ...values.env.map((e) => [`release, ${e}`, releaseNode, AGENT_NODE_FLAGS, envOf(e)] as const),
];
const results = new Map<string, Memory[]>();
for (let round = 0; round < rounds; round++) {
  const order = round % 2 ? [...runtimes].reverse() : runtimes;
  for (const [label, node, flags, extraEnv] of order) {
    const m = await measure(node, flags, extraEnv, round, runtimes.findIndex((r) => r[0] === label));
    results.set(label, [...(results.get(label) ?? []), m]);
  }
}
const version = (node: string) => execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const pick = (label: string, key: keyof Memory) => median(results.get(label)!.map((m) => m[key]));
const base = pick(runtimes[0]![0], 'rss');
console.log(`load average: ${loadavg().map((x) => x.toFixed(2)).join(' ')}; node flags shipped: ${AGENT_NODE_FLAGS.join(' ')}`);
for (const [label, node] of runtimes) {
  const rss = pick(label, 'rss');
  console.log(
    `${label.padEnd(22)} node ${version(node).padEnd(9)} RSS after 2000 requests: ${mb(rss)} MiB (median of ${rounds}: ${results.get(label)!.map((m) => mb(m.rss)).join(', ')}; ` +
      `anonymous ${mb(pick(label, 'anonymous'))}, file-backed ${mb(pick(label, 'fileBacked'))}), ${(rss / base).toFixed(2)}x the baseline; target 60 MB = ${mb(60e6)} MiB: ${rss <= 60e6 ? 'met' : 'NOT met'}`,
  );
}
rmSync(dir, { recursive: true, force: true });
