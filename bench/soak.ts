/**
 * Soak: the agent as shipped (the built dist/, the node flags it ships with,
 * agent/node-flags.ts) as a process on the EBS backend for `--minutes`
 * (default 60), driven with a realistic mix, its resources sampled all along:
 *
 * - containers: `--holders` workers, each a container's life in a loop:
 *   Mount a volume (one of `--volumes`, the popular ones more often) with a
 *   fresh 64-hex mount ID, hold it 1-20 s, Unmount, pause 0-3 s. The pauses and
 *   the unmount grace (BERTH_UNMOUNT_GRACE_SECONDS=5) put many Mounts inside
 *   a grace; cold volumes sit idle past BERTH_IDLE_DETACH_SECONDS=30 and are
 *   detached at EC2, so the next Mount attaches again. One container in 30
 *   dies without an Unmount (dockerd killed, docs/design.md §11): only the
 *   engine-reference check can drop its reference.
 * - the Docker engine's API: a unix socket answering GET /containers/json with
 *   the containers alive and the volumes they mount (moby's container Summary:
 *   State, Mounts[].Type/Name), asked by the agent every 5 s
 *   (BERTH_DOCKER_HOST, BERTH_REFERENCE_CHECK_SECONDS).
 * - volumes that come and go: every ~20 s Create (onRemove=delete), Mount,
 *   write, Unmount, Remove; every ~60 s a volume tagged to this host appears
 *   at EC2 (infra made it), the periodic reconcile pass (every 10 s) mounts
 *   it, then Remove (retain) and the bench deletes it at EC2.
 * - the hot path: `--rate` requests/s of Get 60 % / Path 30 % / List 10 %,
 *   open loop over keep-alive connections, as dockerd asks them; and /readyz
 *   every 2 s, as a load balancer or infra polls it (its not-ready answers
 *   are printed).
 *
 * EC2 is the repo's stateful model (test/aws/ec2-model.ts: AWS's request
 * buckets, attach 1 s, detach 1 s) served over HTTP in EC2's wire protocol
 * (test/aws/ec2-http-server.ts), so the agent runs its real SDK client;
 * IMDSv2 is test/aws/imds-server.ts; every attached volume is a real loop
 * device published in a fake NVMe tree (test/helpers/fake-nvme.ts), formatted,
 * fsck'd and mounted for real. No dockerd is needed: the agent has its own
 * state dir, plugin socket, engine socket and health port, and touches
 * nothing else on the machine.
 *
 * Every `--sample-seconds` (default 30): RSS (/proc/<pid>/status) and its
 * anonymous part (/proc/<pid>/smaps_rollup; file-backed pages come and go
 * with the machine's memory pressure, a leak is anonymous), open file
 * descriptors (/proc/<pid>/fd), V8 heap used and the event loop's active
 * resources by type (timers are `Timeout`; from the agent's root-only
 * /metrics: prom-client's process.getActiveResourcesInfo() gauge). At the
 * end, for each: its slope (least squares) over the first half and over the
 * second half of the run, and the verdict: flat when the second half's growth
 * is within its noise (twice the samples' scatter around the fit, and at
 * least the floor named per figure), else GROWING with the rate per hour.
 *
 * Bounded: it stops by itself after `--minutes` plus the drain (at most
 * ~2 min; a watchdog kills everything 5 min past the end), requests by the
 * rate and the holders; every mount, loop device, socket and process it made
 * is gone when it exits (also on Ctrl-C).
 *
 *   npm run build && node --import tsx bench/soak.ts [--minutes 60] [--sample-seconds 30] [--rate 100] [--volumes 12] [--holders 10] [--seed N] [--agent-log FILE] [--log-level warn]
 *
 * Needs root (loop devices, mount). AGENT_NODE_ARGS="…" replaces the shipped flags.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request, Agent as HttpAgent, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DeleteVolumeCommand } from '@aws-sdk/client-ec2';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { pluginSocketPath } from '../agent/config.js';
import { mountAt, readMountinfo } from '../lib/mountinfo.js';
import { MANAGED_BY, nodeVolumeName, tagKeys } from '../lib/node-contract.js';
import { Endpoints } from '../volume-plugin/protocol.js';
import { DEADLINES } from '../volume-plugin/service.js';
import { startEc2HttpServer } from '../test/aws/ec2-http-server.js';
import { Ec2Model } from '../test/aws/ec2-model.js';
import { startImdsServer } from '../test/aws/imds-server.js';
import { agentEnv, stopChild, uniquePluginName } from '../test/helpers/agent.js';
import { AZ, GiB, HOST, modelClient, REGION } from '../test/helpers/ebs.js';
import { createFakeNvmeTree } from '../test/helpers/fake-nvme.js';
import { rng } from '../test/helpers/fuzz-requests.js';
import { unmountUnder } from '../test/ecs/region.js';
import { detachLoopDevicesUnder, loopDevicesUnder, tempDir } from '../test/helpers/loop.js';
import { percentile, rssOf } from './lib.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    'sample-seconds': { type: 'string', default: '30' },
    rate: { type: 'string', default: '100' },
    volumes: { type: 'string', default: '12' },
    holders: { type: 'string', default: '10' },
    seed: { type: 'string' },
    /** Keep the agent's log (JSON lines) at this path; default: in the temp dir, removed at the end. */
    'agent-log': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
  },
});
const minutes = Number(values.minutes);
const sampleMs = Number(values['sample-seconds']) * 1000;
const rate = Number(values.rate);
const volumeCount = Number(values.volumes);
const holderCount = Number(values.holders);
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
if (![minutes, sampleMs, rate, volumeCount, holderCount, seed].every((x) => Number.isFinite(x) && x >= 0) || minutes <= 0 || sampleMs <= 0 || volumeCount < 1) {
  console.error('usage: node --import tsx bench/soak.ts [--minutes 60] [--sample-seconds 30] [--rate 100] [--volumes 12] [--holders 10] [--seed N]');
  process.exit(2);
}

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const built = join(repoRoot, 'dist/agent/main.js');
if (!existsSync(built)) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.log('SKIPPED: the soak needs root (loop devices, mount)');
  process.exit(0);
}

/*
 * The bench and its agent run in a mount namespace of their own (private
 * propagation): the volumes it mounts are then invisible to the rest of the
 * machine. On a shared machine another process that makes a mount namespace
 * (a private dockerd, unshare, a container's runtime) while a soak volume is
 * mounted would otherwise hold a copy of that mount, and with / private the
 * agent's unmount does not reach the copy: the device stays in use, and the
 * next Mount's e2fsck refuses it ("is in use", exit 8). Seen in the first
 * runs of this bench, traced to another helper's dockerd; the namespace also
 * keeps the soak's mounts out of everyone else's.
 */
const NAMESPACED = 'BERTH_SOAK_IN_NAMESPACE';
if (process.env[NAMESPACED] !== '1') {
  const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, [NAMESPACED]: '1' },
  });
  // Ctrl-C reaches both processes; the inner one drains and cleans up, this one waits for it.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  const code = await new Promise<number>((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
  process.exit(code);
}

// The agent's settings that shape the mix (each one explained at the top).
const UNMOUNT_GRACE_SECONDS = 5;
const IDLE_DETACH_SECONDS = 30;
const RECONCILE_SECONDS = 10;
const REFERENCE_CHECK_SECONDS = 5;
const ATTACH_MS = 1_000;
const HOT_IN_FLIGHT = 64;

const r = rng(seed);

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const elapsed = (since: number) => `${((Date.now() - since) / 60_000).toFixed(1)} min`;

// ---- the plugin socket, as dockerd calls it: keep-alive, dockerd's deadline per call ----

interface Answer {
  status: number;
  json: Record<string, unknown>;
}
const READS: ReadonlySet<string> = new Set([Endpoints.get, Endpoints.path, Endpoints.list]);
/** Lifecycle calls and the hot path on separate connections: a Hot Get never queues behind a Mount in the client. */
const lifecycleConnections = new HttpAgent({ keepAlive: true, maxSockets: 32 });
const hotConnections = new HttpAgent({ keepAlive: true, maxSockets: 16 });
function post(socketPath: string, path: string, body: unknown, timeoutMs: number, agent: HttpAgent, retry = READS.has(path)): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      { socketPath, path, method: 'POST', agent, timeout: timeoutMs, headers: { 'Content-Length': Buffer.byteLength(payload), Accept: 'application/vnd.docker.plugins.v1.2+json' } },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (data += c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(data) as Record<string, unknown> });
          } catch {
            reject(new Error(`${path} answered ${res.statusCode} with a body that is not JSON: ${data.slice(0, 200)}`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${path}: no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // A kept-alive connection the server closed as this request left on it (Node's documented race,
      // http.ClientRequest.reusedSocket): Get, Path and List change nothing, so they are sent again once.
      if (retry && req.reusedSocket && err.code === 'ECONNRESET') resolve(post(socketPath, path, body, timeoutMs, agent, false));
      else reject(err);
    });
    req.end(payload);
  });
}

/** Interruptible sleep: the drain wakes every sleeper at once. */
const stopping = new AbortController();
setMaxListeners(Infinity, stopping.signal); // one listener per sleeper
function nap(ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (stopping.signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      stopping.signal.removeEventListener('abort', done);
      resolve();
    }
    stopping.signal.addEventListener('abort', done, { once: true });
  });
}

// ---- bookkeeping of what the mix did ----

const ops = new Map<string, { ok: number; failed: number; samples: string[] }>();
function count(op: string, error?: unknown): void {
  const o = ops.get(op) ?? { ok: 0, failed: 0, samples: [] };
  ops.set(op, o);
  if (error === undefined) o.ok++;
  else {
    o.failed++;
    if (o.samples.length < 3) o.samples.push(`${new Date().toISOString().slice(11, 19)} ${error instanceof Error ? error.message : String(error)}`.slice(0, 300));
  }
}

const tmp = tempDir('berth-soak');
const dir = tmp.path;
const pluginName = uniquePluginName('berth-soak');
const stateDir = join(dir, 'state');
const pluginDir = join(dir, 'plugins');
const engineSock = join(dir, 'engine.sock');
mkdirSync(stateDir, { recursive: true });
mkdirSync(pluginDir, { recursive: true });
const socket = pluginSocketPath({ BERTH_PLUGIN_DIR: pluginDir, BERTH_PLUGIN_NAME: pluginName });
const nodeArgs = process.env.AGENT_NODE_ARGS !== undefined ? process.env.AGENT_NODE_ARGS.split(' ').filter(Boolean) : [...AGENT_NODE_FLAGS];

const TAGS = tagKeys();
const model = new Ec2Model({ region: REGION, attachLatencyMs: ATTACH_MS, detachLatencyMs: ATTACH_MS, throttling: true });
const tree = await createFakeNvmeTree(join(dir, 'hw'));
const instanceId = model.addInstance({ az: AZ, tags: { [TAGS.host]: HOST } });
model.onAttached = async (volumeId, _device, to) => {
  if (to === instanceId) await tree.bind(volumeId, model.volume(volumeId).size * GiB);
};
model.onDetached = async (volumeId) => {
  if (tree.bound().includes(volumeId)) await tree.unbind(volumeId);
};
const adminEc2 = modelClient(model);

/** Containers as the engine lists them: id → the volume it mounts and its state. */
const containers = new Map<string, { volume: string; state: 'created' | 'running' }>();
let engineAsked = 0;
const engine: Server = createHttpServer((req, res) => {
  engineAsked++;
  if (req.method !== 'GET' || !(req.url ?? '').startsWith('/containers/json')) {
    res.writeHead(404).end('{"message":"page not found"}');
    return;
  }
  const list = [...containers].map(([Id, c]) => ({ Id, State: c.state, Mounts: [{ Type: 'volume', Name: c.volume, Driver: pluginName, Destination: '/data' }] }));
  const body = JSON.stringify(list);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
});

let ec2Server: Awaited<ReturnType<typeof startEc2HttpServer>> | undefined;
let imds: Awaited<ReturnType<typeof startImdsServer>> | undefined;
let agent: ChildProcess | undefined;
let cleanedUp = false;

async function cleanup(): Promise<void> {
  if (cleanedUp) return;
  cleanedUp = true;
  // SIGTERM leaves mounts in place (docs/design.md §9, a restart must find them): the bench unmounts them below.
  if (agent) await Promise.race([stopChild(agent, 'SIGTERM'), new Promise((r) => setTimeout(r, 40_000))]);
  if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
  lifecycleConnections.destroy();
  hotConnections.destroy();
  engine.close();
  await ec2Server?.close().catch(() => undefined);
  await imds?.close().catch(() => undefined);
  model.dispose();
  adminEc2.destroy();
  unmountUnder(dir);
  await tree.cleanup().catch(() => undefined);
  detachLoopDevicesUnder(dir);
  tmp.cleanup();
}

const watchdog = setTimeout(
  () => {
    console.error('WATCHDOG: the soak ran 5 min past its end; killing the agent and cleaning up');
    void cleanup().finally(() => process.exit(1));
  },
  (minutes + 5) * 60_000,
);
watchdog.unref();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.log(`${sig}: stopping early, draining and cleaning up`);
    stopping.abort();
  });
}

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

async function metrics(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

interface Sample {
  t: number;
  rss: number;
  /** Anonymous memory (smaps_rollup): the heap and malloc's arenas, without the file pages the kernel may drop under pressure. */
  anon: number;
  heapUsed: number;
  fds: number;
  resources: number;
  timers: number;
  byType: Record<string, number>;
}

/** Least-squares slope (per ms) and the scatter of the points around the line. */
function fit(xs: number[], ys: number[]): { slope: number; scatter: number } {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  const scatter = Math.sqrt(ys.reduce((a, y, i) => a + (y - (my + slope * (xs[i]! - mx))) ** 2, 0) / Math.max(1, n - 2));
  return { slope, scatter };
}

let exitCode = 0;
try {
  ec2Server = await startEc2HttpServer(model);
  imds = await startImdsServer({ instanceId, az: AZ, region: REGION, tags: { [TAGS.host]: HOST } });
  await new Promise<void>((resolve, reject) => {
    engine.once('error', reject);
    engine.listen(engineSock, resolve);
  });
  const healthPort = await freePort();
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  for (const k of Object.keys(env)) if (k.startsWith('AWS_') || k.startsWith('BERTH_')) delete env[k];
  const agentLog = values['agent-log'] ?? join(dir, 'agent.log');
  const log = openSync(agentLog, 'a');
  agent = spawn(process.execPath, [...nodeArgs, built], {
    cwd: repoRoot,
    env: {
      ...env,
      ...agentEnv(pluginName, stateDir, {
        BERTH_BACKEND: 'ebs',
        BERTH_PLUGIN_DIR: pluginDir,
        BERTH_HEALTH_ADDR: `127.0.0.1:${healthPort}`,
        BERTH_LOG_LEVEL: values['log-level'],
        BERTH_EC2_ENDPOINT: ec2Server.endpoint,
        BERTH_IMDS_ENDPOINT: imds.endpoint,
        BERTH_SYSFS_ROOT: tree.sysfsRoot,
        BERTH_DEV_ROOT: tree.devRoot,
        BERTH_DEFAULT_SIZE: '1GiB',
        BERTH_DOCKER_HOST: `unix://${engineSock}`,
        BERTH_REFERENCE_CHECK_SECONDS: String(REFERENCE_CHECK_SECONDS),
        BERTH_RECONCILE_INTERVAL_SECONDS: String(RECONCILE_SECONDS),
        BERTH_UNMOUNT_GRACE_SECONDS: String(UNMOUNT_GRACE_SECONDS),
        BERTH_IDLE_DETACH_SECONDS: String(IDLE_DETACH_SECONDS),
        BERTH_SHUTDOWN_GRACE_SECONDS: '30',
      }),
      // The SDK's instance-profile credentials come from this instance's IMDS only (as on EC2).
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
      AWS_CONFIG_FILE: '/nonexistent',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    },
    stdio: ['ignore', log, log],
  });
  const pid = agent.pid!;
  for (let i = 0; i < 300 && !existsSync(socket); i++) {
    if (agent.exitCode !== null) throw new Error(`the agent exited with ${agent.exitCode} before its socket appeared: ${readFileSync(values['agent-log'] ?? join(dir, 'agent.log'), 'utf8').slice(-2000)}`);
    await nap(100);
  }
  if (!existsSync(socket)) throw new Error('the agent did not open its socket within 30 s');
  const call = (endpoint: string, body: unknown, connections = lifecycleConnections) => {
    const deadline = endpoint === Endpoints.create ? DEADLINES.create : endpoint === Endpoints.mount ? DEADLINES.mount : DEADLINES.other;
    return post(socket, endpoint, body, deadline, connections).then((a) => {
      const err = a.json.Err;
      if (a.status !== 200 || (typeof err === 'string' && err !== '')) throw new Error(`${endpoint.slice(1)} answered ${a.status}: ${typeof err === 'string' ? err : JSON.stringify(a.json).slice(0, 200)}`);
      return a.json;
    });
  };
  /** Mount as a container does, then check the kernel shows a filesystem at the answered mountpoint. */
  const mount = async (name: string, id: string): Promise<string> => {
    const mp = (await call(Endpoints.mount, { Name: name, ID: id })).Mountpoint as string;
    const entry = mountAt(await readMountinfo('/proc/self/mountinfo'), mp);
    if (!entry || entry.fstype !== 'ext4') throw new Error(`Mount ${name} answered ${mp}, where mountinfo shows ${entry ? entry.fstype : 'nothing'}`);
    return mp;
  };

  /** Which other mount namespaces hold a mount of this volume's device (a copy made when a process unshared its namespace). */
  const holders = async (name: string): Promise<string> => {
    const mp = join(stateDir, 'mounts', name);
    const mine = readFileSync('/proc/self/mountinfo', 'utf8');
    const found: string[] = [];
    const ns = new Set<string>();
    for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        const nsId = readlinkSync(`/proc/${p}/ns/mnt`);
        if (ns.has(nsId)) continue;
        ns.add(nsId);
        const info = readFileSync(`/proc/${p}/mountinfo`, 'utf8');
        if (info !== mine && info.includes(mp)) found.push(`pid ${p} (${readFileSync(`/proc/${p}/comm`, 'utf8').trim()}, ${nsId})`);
      } catch {
        // gone meanwhile
      }
    }
    return found.length ? `mounted in other mount namespaces: ${found.join(', ')}` : `no other mount namespace shows it now (${ns.size} namespaces)`;
  };

  const steady = Array.from({ length: volumeCount }, (_, i) => `soak-${i}`);
  for (const name of steady) await call(Endpoints.create, { Name: name, Opts: {} });
  const started = Date.now();
  const endAt = started + minutes * 60_000;
  const running = () => !stopping.signal.aborted && Date.now() < endAt;
  console.log(
    `soak: ${minutes} min, seed ${seed}, ${volumeCount} volumes, ${holderCount} containers, hot path ${rate} req/s, sample every ${sampleMs / 1000} s; ` +
      `agent pid ${pid}, node flags ${nodeArgs.join(' ') || '(none)'}; load average at start ${load()}`,
  );

  // ---- containers ----
  const dead = new Set<string>();
  const holder = async () => {
    while (running()) {
      // Popular volumes more often: the square of a uniform draw favours low indexes.
      const name = steady[Math.floor(r.next() ** 2 * steady.length)]!;
      const id = randomBytes(32).toString('hex');
      containers.set(id, { volume: name, state: 'created' });
      try {
        const mp = await mount(name, id);
        containers.set(id, { volume: name, state: 'running' });
        writeFileSync(join(mp, `c-${id.slice(0, 8)}`), id);
        count('mount');
      } catch (err) {
        containers.delete(id);
        count('mount', err);
        if (/in use|busy/i.test(String(err))) console.log(`  (${name}: ${String(err).slice(0, 160)}; ${await holders(name)})`);
        await nap(1_000);
        continue;
      }
      await nap(r.between(1_000, 20_000));
      if (r.chance(1 / 30) && !stopping.signal.aborted) {
        // dockerd killed: the container is gone, no Unmount ever comes.
        containers.delete(id);
        dead.add(id);
        count('container died (no Unmount)');
      } else {
        await call(Endpoints.unmount, { Name: name, ID: id }).then(
          () => count('unmount'),
          (err: unknown) => count('unmount', err),
        );
        containers.delete(id);
      }
      await nap(r.between(0, 3_000));
    }
  };

  // ---- volumes that come and go through the plugin ----
  let churnN = 0;
  const churn = async () => {
    await nap(r.between(0, 20_000));
    while (running()) {
      const name = `churn-${churnN++}`;
      const id = randomBytes(32).toString('hex');
      try {
        await call(Endpoints.create, { Name: name, Opts: { onRemove: 'delete' } });
        containers.set(id, { volume: name, state: 'created' });
        const mp = await mount(name, id);
        writeFileSync(join(mp, 'data'), name);
        await call(Endpoints.unmount, { Name: name, ID: id });
        containers.delete(id);
        await call(Endpoints.remove, { Name: name });
        count('create-mount-unmount-remove (delete)');
      } catch (err) {
        containers.delete(id);
        count('create-mount-unmount-remove (delete)', err);
      }
      await nap(r.between(15_000, 25_000));
    }
  };

  // ---- volumes infra tags to this host: the reconcile pass mounts them ----
  let adoptN = 0;
  const adopt = async () => {
    await nap(r.between(5_000, 30_000));
    while (running()) {
      const node = `adopt${adoptN++}`;
      const name = nodeVolumeName('soak', node);
      // The tags berth finds a node's volume by (lib/node-contract.ts), as infra sets them.
      const volumeId = model.addVolume({ az: AZ, size: 1, tags: { [TAGS.volume]: name, [TAGS.host]: HOST, [TAGS.cluster]: 'soak', [TAGS.managedBy]: MANAGED_BY } });
      try {
        const mountpoint = join(stateDir, 'mounts', name);
        const by = Date.now() + (3 * RECONCILE_SECONDS + 30) * 1000;
        while (!mountAt(await readMountinfo('/proc/self/mountinfo'), mountpoint)) {
          if (Date.now() > by || stopping.signal.aborted) throw new Error(`${name} was not mounted by a reconcile pass within ${3 * RECONCILE_SECONDS + 30} s`);
          await nap(500);
        }
        await call(Endpoints.remove, { Name: name });
        const by2 = Date.now() + 30_000;
        while (model.volume(volumeId).attachment) {
          if (Date.now() > by2) throw new Error(`${name}: still attached 30 s after Remove`);
          await nap(500);
        }
        await adminEc2.send(new DeleteVolumeCommand({ VolumeId: volumeId }));
        count('tagged at EC2 → mounted by reconcile → Remove');
      } catch (err) {
        count('tagged at EC2 → mounted by reconcile → Remove', err);
      }
      await nap(r.between(50_000, 70_000));
    }
  };

  // ---- the hot path: open loop at `rate`, bounded in flight ----
  const hot = { sent: 0, skipped: 0, failed: 0, lat: [[], []] as number[][], samples: [] as string[] };
  const hotPath = async () => {
    const tickMs = 10;
    let due = 0;
    while (running()) {
      due += (rate * tickMs) / 1000;
      const half = Date.now() < started + (endAt - started) / 2 ? 0 : 1;
      while (due >= 1) {
        due--;
        if (hot.sent - hot.failed - hot.lat[0]!.length - hot.lat[1]!.length >= HOT_IN_FLIGHT) {
          hot.skipped++;
          continue;
        }
        const roll = r.next();
        const name = steady[Math.floor(r.next() * steady.length)]!;
        const [endpoint, body] = roll < 0.6 ? [Endpoints.get, { Name: name }] : roll < 0.9 ? [Endpoints.path, { Name: name }] : [Endpoints.list, {}];
        const t0 = performance.now();
        hot.sent++;
        call(endpoint, body, hotConnections).then(
          () => hot.lat[half]!.push(performance.now() - t0),
          (err: unknown) => {
            hot.failed++;
            if (hot.samples.length < 3) hot.samples.push(String(err).slice(0, 200));
          },
        );
      }
      await nap(tickMs);
    }
  };

  // ---- samples ----
  const samples: Sample[] = [];
  const take = async (): Promise<Sample> => {
    const m = await metrics(healthPort);
    const byType: Record<string, number> = {};
    for (const [k, v] of m) {
      const t = /^berth_nodejs_active_resources\{type="([^"]+)"\}$/.exec(k)?.[1];
      if (t) byType[t] = v;
    }
    const s: Sample = {
      t: Date.now() - started,
      rss: rssOf(pid, (p) => readFileSync(p, 'utf8')),
      anon: Number(/^Anonymous:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? NaN) * 1024,
      heapUsed: m.get('berth_nodejs_heap_size_used_bytes') ?? NaN,
      fds: readdirSync(`/proc/${pid}/fd`).length,
      resources: m.get('berth_nodejs_active_resources_total') ?? NaN,
      timers: byType.Timeout ?? 0,
      byType,
    };
    samples.push(s);
    return s;
  };
  const sampler = async () => {
    while (running()) {
      const s = await take().catch((err: unknown) => {
        count('sample', err);
        return undefined;
      });
      if (s) {
        const types = Object.entries(s.byType).map(([k, v]) => `${k} ${v}`).join(', ');
        console.log(`${elapsed(started).padStart(8)}: RSS ${mb(s.rss)} (anonymous ${mb(s.anon)}), heap used ${mb(s.heapUsed)}, fds ${s.fds}, active resources ${s.resources} (${types}); containers ${containers.size}, load ${load()}`);
      }
      await nap(Math.min(sampleMs, Math.max(0, endAt - Date.now())));
    }
  };

  // ---- /readyz as a load balancer or infra would poll it: nothing here should make it flap ----
  const readyz = { asked: 0, notReady: 0, samples: [] as string[] };
  const readiness = async () => {
    while (running()) {
      try {
        const res = await fetch(`http://127.0.0.1:${healthPort}/readyz`, { signal: AbortSignal.timeout(10_000) });
        const body = await res.text();
        readyz.asked++;
        if (res.status !== 200) {
          readyz.notReady++;
          if (readyz.samples.length < 3) readyz.samples.push(`${new Date().toISOString().slice(11, 19)} ${res.status} ${body.slice(0, 300)}`);
        }
      } catch (err) {
        count('readyz', err);
      }
      await nap(2_000);
    }
  };

  await Promise.all([sampler(), readiness(), hotPath(), churn(), adopt(), ...Array.from({ length: holderCount }, holder)]);
  stopping.abort();
  await take();
  const ranFor = Date.now() - started;

  // ---- drain: the dead containers' references must go by the engine check alone ----
  const stateRefs = () => {
    const st = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { volumes: Record<string, { mounts: Record<string, number> }> };
    return Object.values(st.volumes).reduce((a, v) => a + Object.keys(v.mounts).length, 0);
  };
  const drainBy = Date.now() + (2 * REFERENCE_CHECK_SECONDS + 10) * 1000;
  while (stateRefs() > 0 && Date.now() < drainBy) await new Promise((res) => setTimeout(res, 500));
  const refsLeft = stateRefs();
  // Past the grace the agent's view and the kernel's agree: a volume is mounted exactly when state.json says so
  // (the reconciler keeps volumes tagged to this host mounted with no container: docs/design.md §6 "Boot reconcile").
  await new Promise((res) => setTimeout(res, (UNMOUNT_GRACE_SECONDS + 3) * 1000));
  const mountsDir = join(stateDir, 'mounts');
  const kernel = new Set((await readMountinfo('/proc/self/mountinfo')).filter((e) => e.mountpoint.startsWith(mountsDir + '/')).map((e) => e.mountpoint.slice(mountsDir.length + 1)));
  const said = new Set(
    Object.entries((JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { volumes: Record<string, { mounted: boolean }> }).volumes)
      .filter(([, v]) => v.mounted)
      .map(([n]) => n),
  );
  const disagree = [...kernel].filter((n) => !said.has(n)).map((n) => `${n} mounted, state says not`).concat([...said].filter((n) => !kernel.has(n)).map((n) => `${n} said mounted, is not`));
  // Idle again, as at the start: the last figures, for the reader (not in the slopes).
  const idle = await take();
  samples.pop();

  // ---- report ----
  console.log('');
  console.log(`ran ${(ranFor / 60_000).toFixed(1)} min, ${samples.length} samples; load average at the end ${load()}`);
  for (const [op, o] of ops) console.log(`  ${op}: ${o.ok} ok, ${o.failed} failed${o.samples.length ? ` (e.g. ${o.samples.join(' | ')})` : ''}`);
  const all = [...hot.lat[0]!, ...hot.lat[1]!];
  console.log(
    `  hot path: ${hot.sent} sent, ${hot.failed} failed, ${hot.skipped} not sent (${HOT_IN_FLIGHT} in flight already); p50 ${percentile(all, 50).toFixed(2)} ms, p99 first half ${percentile(hot.lat[0]!, 99).toFixed(2)} ms, second half ${percentile(hot.lat[1]!, 99).toFixed(2)} ms${hot.samples.length ? ` (e.g. ${hot.samples.join(' | ')})` : ''}`,
  );
  console.log(`  /readyz every 2 s: ${readyz.notReady} of ${readyz.asked} answers not ready${readyz.samples.length ? ` (e.g. ${readyz.samples.join(' | ')})` : ''}`);
  console.log(`  engine API asked ${engineAsked} times; EC2 calls ${model.calls()} (throttled ${model.throttledCalls()}): ${['AttachVolume', 'DetachVolume', 'CreateVolume', 'DeleteVolume', 'DescribeVolumes', 'CreateTags'].map((c) => `${c} ${model.calls(c)}`).join(', ')}`);
  console.log(
    `  after the drain: ${refsLeft} references left in state.json (dead containers' included; expected 0); ${kernel.size} volumes mounted with no container (kept by the reconciler), ` +
      `state.json and mountinfo ${disagree.length ? `DISAGREE: ${disagree.join(', ')}` : 'agree'}`,
  );
  console.log(`  idle after the drain: RSS ${mb(idle.rss)} (anonymous ${mb(idle.anon)}), heap used ${mb(idle.heapUsed)}, fds ${idle.fds}, active resources ${idle.resources}, timers ${idle.timers}`);

  const half = ranFor / 2;
  const first = samples.filter((s) => s.t <= half);
  const second = samples.filter((s) => s.t >= half);
  const figures: Array<{ what: string; of: (s: Sample) => number; unit: (x: number) => string; floor: number }> = [
    { what: 'RSS', of: (s) => s.rss, unit: mb, floor: 2e6 },
    { what: 'RSS anonymous', of: (s) => s.anon, unit: mb, floor: 2e6 },
    { what: 'V8 heap used', of: (s) => s.heapUsed, unit: mb, floor: 2e6 },
    { what: 'open fds', of: (s) => s.fds, unit: (x) => x.toFixed(1), floor: 2 },
    { what: 'active resources', of: (s) => s.resources, unit: (x) => x.toFixed(1), floor: 3 },
    { what: 'timers (Timeout)', of: (s) => s.timers, unit: (x) => x.toFixed(1), floor: 3 },
  ];
  let growing = 0;
  console.log('');
  if (first.length < 3 || second.length < 3) {
    console.log(`too few samples for slopes (${first.length} + ${second.length}): run longer or sample more often`);
    exitCode = 1;
  } else {
    for (const f of figures) {
      const a = fit(first.map((s) => s.t), first.map(f.of));
      const b = fit(second.map((s) => s.t), second.map(f.of));
      const growth = b.slope * (ranFor - half);
      const noise = Math.max(2 * b.scatter, f.floor);
      const flat = growth <= noise;
      if (!flat) growing++;
      const perHour = (x: number) => `${x >= 0 ? '+' : ''}${f.unit(x * 3_600_000)}/h`;
      const med = (xs: Sample[]) => percentile(xs.map(f.of), 50);
      console.log(
        `${f.what.padEnd(17)} median ${f.unit(med(first))} → ${f.unit(med(second))}; slope first half ${perHour(a.slope)}, second half ${perHour(b.slope)} ` +
          `(grew ${f.unit(growth)} over the second half; noise ±${f.unit(noise)}): ${!flat ? 'GROWING' : growth < -noise ? 'falling' : 'flat'}`,
      );
    }
  }
  const failures = [...ops.values()].reduce((a, o) => a + o.failed, 0) + hot.failed;
  const verdict = growing === 0 && failures === 0 && refsLeft === 0 && disagree.length === 0 && first.length >= 3 && second.length >= 3;
  console.log(`verdict: ${verdict ? 'flat' : 'NOT flat'} (${growing} figures growing, ${failures} failed requests, ${refsLeft} references left after the drain, ${disagree.length} mounts state.json and the kernel disagree on)`);
  if (!verdict) exitCode = 1;
} catch (err) {
  console.error(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  try {
    console.error(`agent log (last lines):\n${readFileSync(values['agent-log'] ?? join(dir, 'agent.log'), 'utf8').split('\n').slice(-20).join('\n')}`);
  } catch {
    // no log
  }
  exitCode = 1;
} finally {
  stopping.abort();
  await cleanup();
  clearTimeout(watchdog);
  const leftLoops = loopDevicesUnder(dir);
  const leftMounts = (await readMountinfo('/proc/self/mountinfo')).filter((e) => e.mountpoint.startsWith(dir)).length;
  console.log(`cleanup: agent ${agent?.exitCode ?? agent?.signalCode ?? 'not started'}, ${leftLoops.length} loop devices and ${leftMounts} mounts left under ${dir}, directory ${existsSync(dir) ? 'still there' : 'removed'}`);
}
process.exit(exitCode);
