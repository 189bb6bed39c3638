/**
 * Hot path: Get 60 % / Path 30 % / List 10 % over 100 volumes, open loop at
 * 500 and 2000 requests/s, against the agent as shipped (the built dist/ on
 * the loop backend, started with the node flags it ships with, agent/node-flags.ts, on
 * the release's own Node.js, bin/node of `scripts/release.mjs --stage`; `--runtime this`
 * runs it on the node running this script instead) and,
 * as the baseline in
 * the same run, a minimal Docker volume plugin written with Go's standard
 * library (bench/go/plugin/main.go: in-memory volumes, same endpoints and JSON
 * shapes, unix socket).
 *
 * The load comes from a separate process, bench/go/load/main.go: requests
 * leave on schedule, latency runs from the scheduled send time (queueing is
 * not hidden), over keep-alive connections the way dockerd's plugin client
 * makes them. Rounds interleave the two servers (order alternating), and the
 * figure is the median over rounds of berth's p99 divided by Go's p99. Then
 * the agent's resident memory after the run and at idle.
 *
 * Targets: p99 ≤ 1.5× Go at 500 req/s, ≤ 2.0× at 2000 req/s, 0 errors,
 * agent RSS after the run ≤ 60 MB.
 *
 * Needs: root (the plugin socket), `npm run build`, and Go to build the
 * baseline and the generator (Debian: `apt-get install -y golang-go`); without
 * `go` on PATH the benchmark says so and exits without measuring.
 *
 *   npm run build && node --import tsx bench/plugin-hot-path.ts [--rates 500,2000] [--seconds 10] [--rounds 3] [--volumes 100] [--runtime release|this]
 *
 * AGENT_NODE_ARGS="…" replaces the shipped flags (to compare flag sets).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { socketOf, startChildAgent, stopChild, uniquePluginName } from '../test/helpers/agent.js';
import { detachLoopDevicesUnder, tempDir } from '../test/helpers/loop.js';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { sleep } from '../lib/sleep.js';
import { median, rssOf, unixPoster } from './lib.js';

const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '500,2000' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    volumes: { type: 'string', default: '100' },
    runtime: { type: 'string', default: 'release' },
  },
});
const rates = values.rates.split(',').map(Number);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const volumes = Number(values.volumes);
const targets = new Map([
  [500, 1.5],
  [2000, 2.0],
]);
const RSS_TARGET_MB = 60;

const goDir = fileURLToPath(new URL('./go/', import.meta.url));
const hasGo = (() => {
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!hasGo) {
  console.log('SKIPPED: `go` is not on PATH; the Go baseline and the load generator are built from bench/go/ (Debian: apt-get install -y golang-go)');
  process.exit(0);
}

interface Summary {
  n: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}
interface LoadResult {
  all: Summary;
  endpoints: Record<string, Summary>;
  errors: number;
  errorSamples: Record<string, number>;
  senderMaxLateMs: number;
}

const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const ms = (x: number) => `${x.toFixed(2)} ms`;

const tmp = tempDir('berth-bench-hot');
const dir = tmp.path;
const name = uniquePluginName('berth-bench');
const nodeArgs = process.env.AGENT_NODE_ARGS !== undefined ? process.env.AGENT_NODE_ARGS.split(' ').filter(Boolean) : [...AGENT_NODE_FLAGS];
let goPlugin: ChildProcess | undefined;
let agent: ChildProcess | undefined;
try {
  const env = { ...process.env, GOCACHE: process.env.GOCACHE ?? join(dir, 'gocache') };
  const goPluginBin = join(dir, 'go-plugin');
  const loadBin = join(dir, 'go-load');
  await execa('go', ['build', '-o', goPluginBin, join(goDir, 'plugin/main.go')], { env });
  await execa('go', ['build', '-o', loadBin, join(goDir, 'load/main.go')], { env });
  const goSock = join(dir, 'go-plugin.sock');
  goPlugin = spawn(goPluginBin, [goSock], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100 && !existsSync(goSock); i++) await sleep(50);
  if (!existsSync(goSock)) throw new Error('the Go plugin did not open its socket within 5 s');

  // The agent as hosts run it: the release's node (docs/deploy.md, "Runtime") and the bundle staged beside it.
  let agentNode = process.execPath;
  let agentMain: string | true = true;
  if (values.runtime === 'release') {
    const stage = join(dir, 'release');
    execFileSync(process.execPath, [join(goDir, '../../scripts/release.mjs'), '--stage', stage], { stdio: ['ignore', 'ignore', 'inherit'] });
    agentNode = join(stage, 'bin/node');
    agentMain = join(stage, 'dist/agent/main.js');
  } else if (values.runtime !== 'this') throw new Error(`--runtime is release or this, not ${values.runtime}`);
  agent = await startChildAgent(name, join(dir, 'state'), { BERTH_LOG_LEVEL: 'warn' }, agentMain, nodeArgs, agentNode);
  const berthSock = socketOf(name);
  const rss = () => rssOf(agent!.pid!, (p) => readFileSync(p, 'utf8'));

  for (const sock of [goSock, berthSock]) {
    const post = unixPoster(sock);
    for (let i = 0; i < volumes; i++) {
      const res = await post('/VolumeDriver.Create', { Name: `v${i}`, Opts: { size: '64MiB' } });
      if (res.status !== 200) throw new Error(`Create v${i} on ${sock} answered ${res.status}: ${JSON.stringify(res.json)}`);
    }
  }
  await sleep(2_000);
  const idleBefore = rss();

  // CPU seconds the server spent (utime + stime, all threads): a figure the machine's load disturbs less than latency.
  const cpuOf = (pid: number) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  };
  const drive = async (sock: string, rate: number, secs: number): Promise<LoadResult & { cpuUsPerRequest: number }> => {
    const pid = sock === goSock ? goPlugin!.pid! : agent!.pid!;
    const before = cpuOf(pid);
    const { stdout } = await execa(loadBin, ['-socket', sock, '-rate', String(rate), '-seconds', String(secs), '-volumes', String(volumes)]);
    const result = JSON.parse(stdout) as LoadResult;
    return { ...result, cpuUsPerRequest: ((cpuOf(pid) - before) * 1e6) / (rate * secs) };
  };
  // Warm-up, not counted: connections, caches, the agent's lazily compiled code.
  await drive(goSock, 500, 2);
  await drive(berthSock, 500, 2);

  console.log(`agent on node ${execFileSync(agentNode, ['--version'], { encoding: 'utf8' }).trim()}, node flags: ${nodeArgs.join(' ') || '(none)'}; ${volumes} volumes; ${seconds} s per run; load average at start: ${load()}`);
  const ratios = new Map<number, number[]>(rates.map((r) => [r, []]));
  const cpu = { go: [] as number[], berth: [] as number[] };
  let errors = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const rate of rates) {
      const order: Array<['go' | 'berth', string]> = round % 2 === 1 ? [['go', goSock], ['berth', berthSock]] : [['berth', berthSock], ['go', goSock]];
      const got: Partial<Record<'go' | 'berth', Awaited<ReturnType<typeof drive>>>> = {};
      for (const [who, sock] of order) got[who] = await drive(sock, rate, seconds);
      const [g, b] = [got.go!, got.berth!];
      errors += g.errors + b.errors;
      for (const [who, r] of [['go', g], ['berth', b]] as const) {
        if (r.errors > 0) console.log(`  ${who}: ${r.errors} errors, e.g. ${JSON.stringify(r.errorSamples)}`);
      }
      const ratio = b.all.p99 / g.all.p99;
      ratios.get(rate)!.push(ratio);
      cpu.go.push(g.cpuUsPerRequest);
      cpu.berth.push(b.cpuUsPerRequest);
      const eps = (r: LoadResult) => Object.entries(r.endpoints).map(([e, s]) => `${e} ${ms(s.p99)}`).join(', ');
      console.log(
        `round ${round} ${String(rate).padStart(4)} req/s: go p50 ${ms(g.all.p50)} p99 ${ms(g.all.p99)} max ${ms(g.all.max)} | ` +
          `berth p50 ${ms(b.all.p50)} p99 ${ms(b.all.p99)} max ${ms(b.all.max)} | p99 ratio ${ratio.toFixed(2)} ` +
          `(berth p99 by endpoint: ${eps(b)}; CPU per request go ${g.cpuUsPerRequest.toFixed(0)} µs, berth ${b.cpuUsPerRequest.toFixed(0)} µs; sender late ≤ ${ms(Math.max(g.senderMaxLateMs, b.senderMaxLateMs))}; load ${load()})`,
      );
    }
  }
  const after = rss();
  await sleep(10_000);
  const idleAfter = rss();
  const goRss = rssOf(goPlugin.pid!, (p) => readFileSync(p, 'utf8'));

  console.log('');
  for (const rate of rates) {
    const m = median(ratios.get(rate)!);
    const target = targets.get(rate);
    const verdict = target === undefined ? '' : ` (target ≤ ${target}: ${m <= target ? 'met' : 'NOT met'})`;
    console.log(`${rate} req/s: median p99 ratio berth/go over ${rounds} rounds ${m.toFixed(2)} [${ratios.get(rate)!.map((r) => r.toFixed(2)).join(', ')}]${verdict}`);
  }
  console.log(`server CPU per request, median of every run: go ${median(cpu.go).toFixed(0)} µs, berth ${median(cpu.berth).toFixed(0)} µs`);
  console.log(`errors: ${errors} (target 0: ${errors === 0 ? 'met' : 'NOT met'})`);
  console.log(`agent RSS: idle before the run ${mb(idleBefore)}, right after the run ${mb(after)} (target ≤ ${RSS_TARGET_MB} MB: ${after <= RSS_TARGET_MB * 1e6 ? 'met' : 'NOT met'}), idle 10 s later ${mb(idleAfter)}; Go plugin ${mb(goRss)}`);
  const rollup = readFileSync(`/proc/${agent.pid}/smaps_rollup`, 'utf8');
  const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0);
  console.log(`  of which anonymous ${(kB('Anonymous') / 1e3).toFixed(1)} MB (heap, malloc), file-backed ${((kB('Rss') - kB('Anonymous')) / 1e3).toFixed(1)} MB (the node binary, libraries)`);
  console.log(`load average at the end: ${load()}`);
} finally {
  if (agent) await stopChild(agent, 'SIGTERM');
  if (goPlugin) await stopChild(goPlugin, 'SIGTERM');
  tmp.cleanup();
  detachLoopDevicesUnder(dir);
}
