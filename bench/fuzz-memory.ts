/**
 * The agent's memory under hostile requests: is what 10 000 fuzzed requests
 * leave a leak (it grows with every further 10 000) or a high-water mark (the
 * first round raises it, later rounds do not)?
 *
 * Two agents as shipped (the built dist/, loop backend, the shipped node
 * flags, agent/node-flags.ts), each holding one mounted volume, get the
 * requests of test/fuzz-plugin.test.ts (test/helpers/fuzz-requests.ts, same
 * seed for both) in rounds of `--requests`: one the whole mix, the other the
 * same mix without the requests larger than 64 KiB (the 1 MiB bodies, the
 * 100 000-character strings, the 40 KiB headers). After each round: RSS,
 * anonymous memory (smaps_rollup: heap and malloc arenas), the V8 heap used
 * (/metrics), open fds and active resources, right after and again 10 s
 * later at idle. A leak shows as idle figures that rise round after round; a
 * high-water mark as a first round that raises them and later rounds that do
 * not.
 * Every answer is judged as the test judges it.
 *
 *   npm run build && node --import tsx bench/fuzz-memory.ts [--rounds 4] [--requests 10000] [--seed N]
 *
 * AGENT_NODE_ARGS="…" replaces the shipped flags. Needs root (the loop backend).
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { sleep } from '../lib/sleep.js';
import { Endpoints } from '../volume-plugin/protocol.js';
import { socketOf, startChildAgent, stopChild, uniquePluginName } from '../test/helpers/agent.js';
import { FUZZ_IN_FLIGHT, generate, HOLDER, KEEP, rng, sendAll, type Case } from '../test/helpers/fuzz-requests.js';
import { detachLoopDevicesUnder, tempDir } from '../test/helpers/loop.js';
import { rssOf, unixPoster } from './lib.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '4' },
    requests: { type: 'string', default: '10000' },
    seed: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
const perRound = Number(values.requests);
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const LARGE = 64 * 1024;
const IDLE_MS = 10_000;
if (process.getuid?.() !== 0) {
  console.log('SKIPPED: needs root (loop devices, mount)');
  process.exit(0);
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

interface Figures {
  rss: number;
  anon: number;
  heap: number;
  fds: number;
  resources: number;
}
async function figures(pid: number, healthPort: number): Promise<Figures> {
  const text = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
  const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return {
    rss: rssOf(pid, (p) => readFileSync(p, 'utf8')),
    anon: Number(/^Anonymous:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024,
    heap: metric('berth_nodejs_heap_size_used_bytes'),
    fds: readdirSync(`/proc/${pid}/fd`).length,
    resources: metric('berth_nodejs_active_resources_total'),
  };
}
const show = (f: Figures) => `RSS ${mb(f.rss)} (anonymous ${mb(f.anon)}), heap used ${mb(f.heap)}, fds ${f.fds}, active resources ${f.resources}`;

const tmp = tempDir('berth-bench-fuzzmem');
const nodeArgs = process.env.AGENT_NODE_ARGS !== undefined ? process.env.AGENT_NODE_ARGS.split(' ').filter(Boolean) : [...AGENT_NODE_FLAGS];
const agents: ChildProcess[] = [];
let exitCode = 0;
try {
  console.log(`fuzz memory: ${rounds} rounds of ${perRound} requests, seed ${seed}, ${FUZZ_IN_FLIGHT} in flight; load average at start ${load()}`);
  for (const mix of ['whole mix', `without requests over ${LARGE / 1024} KiB`] as const) {
    const name = uniquePluginName('berth-fuzzmem');
    const stateDir = join(tmp.path, name);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(stateDir, { recursive: true });
    const healthPort = await freePort();
    const child = await startChildAgent(name, stateDir, { BERTH_LOG_LEVEL: 'warn', BERTH_HEALTH_ADDR: `127.0.0.1:${healthPort}` }, true, nodeArgs);
    agents.push(child);
    const socket = socketOf(name);
    const post = unixPoster(socket);
    for (const [path, body] of [
      [Endpoints.create, { Name: KEEP, Opts: { size: '16MiB' } }],
      [Endpoints.mount, { Name: KEEP, ID: HOLDER }],
    ] as const) {
      const res = await post(path, body);
      if (res.status !== 200 || res.json.Err) throw new Error(`${path} answered ${res.status} ${JSON.stringify(res.json)}`);
    }
    await sleep(2_000);
    const pid = child.pid!;
    console.log(`\n${mix}: idle before ${show(await figures(pid, healthPort))}`);
    const r = rng(seed);
    let failures = 0;
    const idleRss: number[] = [];
    const firstFailures: string[] = [];
    for (let round = 1; round <= rounds; round++) {
      const cases: Case[] = [];
      let skipped = 0;
      for (let i = 0; cases.length < perRound; i++) {
        const c = generate(r, (round - 1) * perRound + i);
        if (mix !== 'whole mix' && c.bytes.length > LARGE) skipped++;
        else cases.push(c);
      }
      const started = Date.now();
      for (const { c, problem } of await sendAll(socket, cases)) {
        failures++;
        if (firstFailures.length < 3) firstFailures.push(`${c.what.slice(0, 100)}: ${problem.slice(0, 200)}`);
      }
      const large = cases.filter((c) => c.bytes.length > LARGE).length;
      const after = await figures(pid, healthPort);
      await sleep(IDLE_MS);
      const idle = await figures(pid, healthPort);
      console.log(
        `  round ${round} (${large} requests over ${LARGE / 1024} KiB${skipped ? `, ${skipped} such generated and not sent` : ''}; ${((Date.now() - started - IDLE_MS) / 1000).toFixed(1)} s): ` +
          `right after ${show(after)}; idle ${IDLE_MS / 1000} s later ${show(idle)}`,
      );
      idleRss.push(idle.rss);
    }
    const grew = idleRss[idleRss.length - 1]! - idleRss[0]!;
    console.log(`  idle RSS after round 1 → round ${rounds}: ${mb(idleRss[0]!)} → ${mb(idleRss[idleRss.length - 1]!)} (${grew >= 0 ? '+' : ''}${mb(grew)} over ${(rounds - 1) * perRound} more requests)`);
    console.log(`  bad answers: ${failures}${firstFailures.length ? ` (e.g. ${firstFailures.join(' | ')})` : ''}`);
    if (failures > 0) exitCode = 1;
  }
  console.log(`\nload average at the end: ${load()}`);
} finally {
  for (const a of agents) await stopChild(a, 'SIGTERM');
  tmp.cleanup();
  detachLoopDevicesUnder(tmp.path);
}
process.exit(exitCode);
