/**
 * Hot path: Get, List, Path and Capabilities over the plugin's unix socket at
 * 500 requests/s for 10 s with 100 volumes, against the agent as a real child
 * process running the built dist/ (npm run build first; loop backend). Baseline in the same run: a bare node:http server on
 * a unix socket answering a constant JSON body (the transport's floor).
 * Then the agent's resident memory. Targets: p99 ≤ 2 ms, RSS ≤ 60 MB.
 *
 *   node --import tsx bench/plugin-hot-path.ts [--rate 500] [--seconds 10] [--volumes 100]
 */
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { socketOf, startChildAgent, stopChild, uniquePluginName } from '../test/helpers/agent.js';
import { detachLoopDevicesUnder, tempDir } from '../test/helpers/loop.js';
import { fmtMs, percentile, rssOf, unixPoster } from './lib.js';

const { values } = parseArgs({ options: { rate: { type: 'string', default: '500' }, seconds: { type: 'string', default: '10' }, volumes: { type: 'string', default: '100' } } });
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const volumes = Number(values.volumes);

type Call = [string, unknown];

async function drive(post: ReturnType<typeof unixPoster>, calls: Call[]): Promise<Map<string, number[]>> {
  const byEndpoint = new Map<string, number[]>();
  const total = rate * seconds;
  const interval = 1000 / rate;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const [path, body] = calls[i % calls.length]!;
    const t0 = performance.now();
    pending.push(
      post(path, body).then((res) => {
        if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(res.json)}`);
        const ms = performance.now() - t0;
        const list = byEndpoint.get(path) ?? [];
        list.push(ms);
        byEndpoint.set(path, list);
      }),
    );
  }
  await Promise.all(pending);
  return byEndpoint;
}

function report(label: string, byEndpoint: Map<string, number[]>): number {
  const all = [...byEndpoint.values()].flat();
  console.log(`${label}: n=${all.length} p50=${fmtMs(percentile(all, 50))} p99=${fmtMs(percentile(all, 99))} max=${fmtMs(Math.max(...all))}`);
  for (const [path, xs] of byEndpoint) console.log(`  ${path.padEnd(28)} p50=${fmtMs(percentile(xs, 50))} p99=${fmtMs(percentile(xs, 99))}`);
  return percentile(all, 99);
}

const tmp = tempDir('berth-bench');
const dir = tmp.path;
const name = uniquePluginName('berth-bench');
// The agent runs with the node flags of userdata/berth.service unless AGENT_NODE_ARGS says otherwise.
const unitFlags = /^ExecStart=\S+ node (.*) \/opt\/berth\/dist\/agent\/main\.js$/m.exec(readFileSync(new URL('../userdata/berth.service', import.meta.url), 'utf8'))?.[1] ?? '';
const nodeArgs = (process.env.AGENT_NODE_ARGS ?? unitFlags).split(' ').filter(Boolean);
const child = await startChildAgent(name, join(dir, 'state'), { BERTH_LOG_LEVEL: 'warn' }, true, nodeArgs);
console.log(`agent node flags: ${nodeArgs.join(' ') || '(none)'}`);
try {
  const post = unixPoster(socketOf(name));
  for (let i = 0; i < volumes; i++) await post('/VolumeDriver.Create', { Name: `v${i}`, Opts: { size: '64MiB' } });
  const calls: Call[] = [];
  for (let i = 0; i < volumes; i++) {
    calls.push(['/VolumeDriver.Get', { Name: `v${i}` }], ['/VolumeDriver.Path', { Name: `v${i}` }]);
    if (i % 10 === 0) calls.push(['/VolumeDriver.List', {}], ['/VolumeDriver.Capabilities', {}]);
  }

  const baselineSock = join(dir, 'baseline.sock');
  const body = JSON.stringify({ Volume: { Name: 'v0', Mountpoint: '' }, Err: '' });
  const baseline = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'Content-Type': 'application/json' }).end(body));
  });
  await new Promise<void>((r) => baseline.listen(baselineSock, r));
  const baseP99 = report('baseline (bare node:http on a unix socket)', await drive(unixPoster(baselineSock), calls));
  baseline.close();

  const p99 = report(`berth (${volumes} volumes, ${rate} req/s for ${seconds} s)`, await drive(post, calls));
  const rss = rssOf(child.pid!, (p) => readFileSync(p, 'utf8'));
  console.log(`p99 ${fmtMs(p99)} (target ≤ 2 ms) — ratio to baseline p99: ${(p99 / baseP99).toFixed(2)}`);
  console.log(`agent resident memory after the run: ${(rss / 2 ** 20).toFixed(1)} MiB = ${(rss / 1e6).toFixed(1)} MB (target ≤ 60 MB)`);
  const rollup = readFileSync(`/proc/${child.pid}/smaps_rollup`, 'utf8');
  const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0);
  console.log(`  of which anonymous ${(kB('Anonymous') / 1e3).toFixed(1)} MB (heap, malloc), file-backed ${((kB('Rss') - kB('Anonymous')) / 1e3).toFixed(1)} MB (the node binary, libraries)`);
} finally {
  await stopChild(child, 'SIGTERM');
  tmp.cleanup();
  detachLoopDevicesUnder(dir);
}
