import { mkdirSync, rmSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { AttachVolumeCommand, DeleteVolumeCommand, DescribeVolumesCommand, EC2Client, type Volume } from '@aws-sdk/client-ec2';
import { EC2_CLIENT_SETTINGS } from '../../agent/backend-factory.js';
import { CONFIG_DEFAULTS } from '../../agent/config.js';
import { BerthError, errorMessage, isBerthError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/logger.js';
import { MANAGED_BY, tagKeys } from '../../lib/node-contract.js';
import { sleep } from '../../lib/sleep.js';
import { createEbsBackend, type EbsBackend } from '../../volume-plugin/backends/ebs/ebs-backend.js';
import { DEVICE_NAMES, Ec2Facade } from '../../volume-plugin/backends/ebs/ec2-facade.js';
import { attachedHereOf } from '../../volume-plugin/backends/ebs/attachment-waits.js';
import type { Ec2Timing } from '../../volume-plugin/backends/ebs/ec2-timing.js';
import { SdkEc2 } from '../../volume-plugin/backends/ebs/sdk-ec2.js';
import { Reconciler } from '../../volume-plugin/reconcile/reconciler.js';
import type { DeviceResolver, ResolvedDevice } from '../../volume-plugin/devices/nvme.js';
import { DockerVolumeDriver } from '../../volume-plugin/docker-driver.js';
import type { Filesystem } from '../../volume-plugin/options.js';
import { VolumeService } from '../../volume-plugin/service.js';
import { StateStore } from '../../volume-plugin/state-store.js';
import { DEFAULT_BUCKETS, Ec2Model, type BucketLimit, type BucketName, type CallerCounts } from '../aws/ec2-model.js';
import { TokenBucket } from '../aws/token-bucket.js';
import { FakeFilesystem } from './filesystem.js';
import { FakeHost } from './host.js';
import type { VirtualClock } from './virtual-clock.js';
import { lognormal, rng } from '../helpers/rng.js';
import { MemoryScheduleStore } from './schedule-store.js';

/**
 * A fleet of hosts sharing one AWS account (issue 23): N hosts, each running berth's real EBS
 * backend, facade, reconciler and volume service (its state file on tmpfs) with in-memory block
 * devices and filesystems, against one Ec2Model enforcing the account's token buckets, with
 * attach/detach latencies drawn from distributions, DescribeVolumes lagging the attachment, and
 * instance termination detaching the volumes. Containers (ECS tasks) Mount their volumes as
 * the host comes up, with dockerd's Mount deadline; a failed Mount is retried as ECS restarts
 * the task. berth's agents share the account's EC2 schedule (fleet-schedule.ts) through one
 * in-memory store (schedule-store.ts) unless `schedule: false`. The same scenarios run the
 * seed's approach (`agent: 'seed'`) for comparison.
 *
 * Time: a VirtualClock (virtual-clock.ts), or the real clock (`clock` undefined).
 */

export type Scenario = 'replace' | 'rolling' | 'brownout' | 'shared';

export interface FleetOptions {
  hosts: number;
  volumesPerHost: number;
  agent: 'berth' | 'seed';
  scenario: Scenario;
  /** Virtual clock, or undefined for real time. */
  clock?: VirtualClock;
  /** Seed of the latency draws (the same draws for berth and the seed). */
  seed?: number;
  /** Buckets, scaled for a real-time run. Default AWS's (ec2-model.ts DEFAULT_BUCKETS). */
  buckets?: Partial<Record<BucketName, BucketLimit>>;
  /** Latencies scaled by this (1 = EC2's). */
  latencyScale?: number;
  /** Brownout: when it starts after the replacement began, how long, and what EC2 answers. */
  brownout?: { atMs: number; forMs: number; kind: 'throttle' | '5xx' };
  /** Rolling: hosts replaced per batch (the next batch starts when this one is ready). Default 10 % of hosts. */
  batch?: number;
  /** Shared: the other tool's steady use of the account, per second. */
  otherTool?: { mutatingPerSecond: number; describesPerSecond: number };
  /** Give up (hosts stuck) after this long. Default 3 × the floor + 10 min. */
  limitMs?: number;
  /** After all ready, watch this long with nothing changing (DescribeVolumes per host per minute). */
  steadyMs?: number;
  /** The agents' EC2 timing, where it differs from the production defaults (to try other pacing). */
  timing?: Partial<Ec2Timing>;
  /** false: the agents do not watch their NVMe namespaces (as on Xen) and poll EC2 for attachments. */
  hostView?: boolean;
  /**
   * berth's agents take their turns from the account's shared EC2 schedule (fleet-schedule.ts), kept
   * in one in-memory store for the fleet (schedule-store.ts, S3's latencies). Default true: infra
   * sets a store for every host. false: each agent paces itself alone (pacer.ts).
   */
  schedule?: boolean;
  /** The schedule's store is unavailable from atMs (after the start) for forMs. */
  scheduleOutage?: { atMs: number; forMs: number };
  /** Where the hosts' state files go (tmpfs). */
  stateRoot?: string;
  /** Called every 30 s of real time with how far the run is (a long bench says it is alive). */
  progress?: (line: string) => void;
}

export interface HostResult {
  hostId: string;
  /** From the replacement's start to every task's Mount done and the agent ready; undefined when stuck. */
  readyMs: number | undefined;
  /** From its agent's start on the new instance (after the boot, which no agent controls) to ready. */
  ownMs: number | undefined;
}

export interface FleetResult {
  options: Omit<FleetOptions, 'clock'>;
  /** From the start to the last host ready; undefined when some host never was. */
  allReadyMs: number | undefined;
  hosts: HostResult[];
  floor: Floor;
  stuck: number;
  mountsFailed: number;
  /** Mounts that failed because EC2 throttled (LIMIT_EXCEEDED), the ones a retry would have won. */
  mountsFailedThrottled: number;
  /** The agents' calls per action. */
  calls: Map<string, CallerCounts>;
  /** The other tool's calls (scenario 'shared'). */
  otherCalls: Map<string, CallerCounts>;
  /** DescribeVolumes per host per minute once every host was ready and nothing changed (steadyMs). */
  steadyDescribesPerHostMinute: number | undefined;
  /** The shared schedule's store: reads, writes, writes that lost the race, calls that failed (outage). */
  schedule?: { reads: number; writes: number; lostRaces: number; failed: number };
  /** Brownout: when it ended, and the floor of the attachments left then. */
  brownoutEndMs?: number;
  realSeconds: number;
  /** The CPU time the run took (user + system, this process): what the machine's load does not change. */
  cpuSeconds: number;
}

export interface Floor {
  /** The time the account's buckets allow for this scenario's work (from the start, or from the brownout's end). */
  ms: number;
  /** How it was reached. */
  how: string;
}

/** EBS attachment latency: 1–4 s usually (ec2-facade.ts), a long tail; lognormal around 2 s. */
export const ATTACH_LATENCY = { medianMs: 2_000, sigma: 0.45, minMs: 800, maxMs: 30_000 };
/** Detach on termination: a few seconds. */
export const DETACH_LATENCY = { medianMs: 3_000, sigma: 0.5, minMs: 1_000, maxMs: 60_000 };
/** DescribeVolumes reports a completed attachment this much later than the instance sees its NVMe namespace. */
export const DESCRIBE_LAG_MS = 1_000;
/** From an instance launching to its agent starting (boot, systemd). */
export const BOOT_MS = { minMs: 20_000, maxMs: 40_000 };
/**
 * Resource token buckets of the page (AWS, "Request throttling for the Amazon EC2 API", resource
 * rate limiting): instances launched and terminated. The replacement's ASG is bound by them.
 */
export const RESOURCE_BUCKETS = { runInstances: { capacity: 1000, refillPerSecond: 2 }, terminateInstances: { capacity: 1000, refillPerSecond: 20 } };
/** ECS restarts a task whose volume Mount failed after this long. */
const TASK_RETRY_MS = 10_000;
/** The seed's approach: every AWS CLI call retried this many times, this far apart, then the host gives up. */
export const SEED = { retries: 10, retryMs: 2_000, pollMs: 2_000, cliMaxAttempts: 3 };

const REGION = 'eu-west-1';
const AZ = 'eu-west-1a';
const PREFIX = 'berth:';
const keys = tagKeys(PREFIX);


/**
 * The NVMe namespaces of one host: a volume's appears when EC2 completes its attachment to this
 * host's instance (the model's onAttached), with the data the volume holds, and goes on detach.
 */
export class FleetDevices implements DeviceResolver {
  private readonly byVolume = new Map<string, string>();
  private next = 1;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly host: FakeHost,
    private readonly data: Map<string, Filesystem>,
  ) {}

  attached(volumeId: string): void {
    const path = `/dev/nvme${this.next++}n1`;
    this.byVolume.set(volumeId, path);
    this.host.present.add(path);
    const fs = this.data.get(volumeId);
    if (fs) this.host.formatted.set(path, fs);
    for (const l of this.listeners) l();
  }

  detached(volumeId: string): void {
    const path = this.byVolume.get(volumeId);
    if (!path) return;
    this.byVolume.delete(volumeId);
    this.host.present.delete(path);
    const fs = this.host.formatted.get(path);
    if (fs) this.data.set(volumeId, fs);
    this.host.formatted.delete(path);
  }

  async find(volumeId: string): Promise<ResolvedDevice | undefined> {
    const path = this.byVolume.get(volumeId);
    return path ? { path, how: 'nvme-serial' } : undefined;
  }

  async waitFor(volumeId: string, _requested: string | undefined, timeoutMs: number, options: { pollMs?: number; signal?: AbortSignal } = {}): Promise<ResolvedDevice> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = await this.find(volumeId);
      if (found) return found;
      if (Date.now() >= deadline) throw new BerthError('TIMEOUT', `no NVMe device with serial ${volumeId.replace('-', '')} within ${timeoutMs / 1000} s`);
      await sleep(Math.min(options.pollMs ?? 100, Math.max(1, deadline - Date.now())), options.signal);
    }
  }

  async attachedVolumeIds(): Promise<ReadonlySet<string>> {
    return new Set(this.byVolume.keys());
  }

  /** Called whenever a namespace appears (for an agent that watches instead of polling). */
  onAttached(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

interface SimHost {
  hostId: string;
  instanceId: string;
  volumeIds: string[];
  names: string[];
  devices: FleetDevices;
  fakeHost: FakeHost;
  readyAt?: number;
  /** When the agent started on the current instance. */
  agentAt?: number;
  stop?: () => void;
}

const sdkClient = (settings: { retryMode: 'adaptive' | 'standard'; maxAttempts: number }) =>
  new EC2Client({ ...settings, region: REGION, credentials: { accessKeyId: 'AKIDFLEET', secretAccessKey: 'fleet' } });

/** Sends one call of each kind through an SDK client in real time, so the SDK's lazy imports are done before a virtual clock runs. */
export async function warmUpSdk(): Promise<void> {
  const model = new Ec2Model({ region: REGION });
  const client = sdkClient({ retryMode: 'adaptive', maxAttempts: 2 });
  model.installBehindSdkRetries(client);
  await client.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:x', Values: ['y'] }] }));
  await client.send(new AttachVolumeCommand({ VolumeId: 'vol-00000000000000000', InstanceId: 'i-00000000000000000', Device: '/dev/xvdba' })).catch(() => undefined);
  model.dispose();
}

/**
 * The state file's loads and saves in flight (real I/O on tmpfs), for VirtualClock.ioInFlight.
 * On a virtual clock their completions are handed back in the order they started, one at a
 * time with every promise settled in between (a real setImmediate), so which host's save
 * finished first on the real disk never changes what the simulated hosts do next.
 */
let ioInFlight = 0;
let ordered = false;
let nextTicket = 0;
let turn = 0;
const finished = new Map<number, () => void>();
const realSetImmediate = setImmediate;
const realSetInterval = setInterval;
const realClearInterval = clearInterval;
let handing = false;
function handBack(): void {
  if (handing || !finished.has(turn)) return;
  handing = true;
  realSetImmediate(() => {
    handing = false;
    const release = finished.get(turn)!;
    finished.delete(turn);
    turn += 1;
    release();
    handBack();
  });
}
/** Counts `work` in ioInFlight and, on a virtual clock, hands its outcome back in turn. */
async function countedIo<T>(work: () => Promise<T>): Promise<T> {
  ioInFlight += 1;
  const ticket = nextTicket++;
  try {
    return await work();
  } finally {
    if (ordered) {
      await new Promise<void>((resolve) => {
        finished.set(ticket, resolve);
        handBack();
      });
    } else turn += 1;
    ioInFlight -= 1;
  }
}
for (const method of ['load', 'save'] as const) {
  const real = StateStore.prototype[method] as (this: StateStore, ...a: unknown[]) => Promise<unknown>;
  (StateStore.prototype as unknown as Record<string, unknown>)[method] = function (this: StateStore, ...a: unknown[]) {
    return countedIo(() => real.apply(this, a));
  };
}
// The volume service's start creates its state directory (volume-plugin/service.ts): the same.
{
  const fsPromises = createRequire(import.meta.url)('node:fs/promises') as { mkdir: (...a: unknown[]) => Promise<unknown> };
  const real = fsPromises.mkdir;
  fsPromises.mkdir = (...a: unknown[]) => countedIo(() => real(...a));
  syncBuiltinESMExports();
}

/** The real clock, taken before any VirtualClock is installed. */
const realNow = performance.now.bind(performance);

/**
 * Runs one scenario. With a virtual clock the run is repeatable: the latency draws, the model's
 * resource ids and every Math.random the agents draw (their jitter, the SDK's) come from
 * generators seeded by `seed`, so the same options give the same figures.
 */
export async function runFleet(opts: FleetOptions): Promise<FleetResult> {
  const mathRandom = Math.random;
  if (opts.clock) Math.random = rng((opts.seed ?? 23) ^ 0x6a09e667).next;
  try {
    return await simulate(opts);
  } finally {
    Math.random = mathRandom;
  }
}

async function simulate(opts: FleetOptions): Promise<FleetResult> {
  const realStart = realNow();
  const cpuStart = process.cpuUsage();
  if (opts.clock) opts.clock.ioInFlight = () => ioInFlight;
  ordered = opts.clock !== undefined;
  const random = rng(opts.seed ?? 23).next;
  const scale = opts.latencyScale ?? 1;
  const buckets = { ...DEFAULT_BUCKETS, ...opts.buckets };
  const model = new Ec2Model({
    region: REGION,
    buckets,
    attachLatency: lognormal(random, ATTACH_LATENCY, scale),
    detachLatency: lognormal(random, DETACH_LATENCY, scale),
    describeLagMs: DESCRIBE_LAG_MS * scale,
    random: rng((opts.seed ?? 23) ^ 0xbb67ae85).next,
    // Volumes stay 'available' when their instance terminates (DeleteOnTermination false).
  });
  model.keepInputs = false;
  const scheduleStore = opts.agent === 'berth' && opts.schedule !== false ? new MemoryScheduleStore({ random: rng((opts.seed ?? 23) ^ 0x3c6ef372).next, latencyScale: scale }) : undefined;
  const stateRoot = opts.stateRoot ?? join('/dev/shm', `berth-fleet-${process.pid}-${Date.now()}`);
  mkdirSync(stateRoot, { recursive: true });
  const data = new Map<string, Filesystem>();
  const byInstance = new Map<string, SimHost>();
  model.onAttached = (volumeId, _device, instanceId) => byInstance.get(instanceId)?.devices.attached(volumeId);
  model.onDetached = (volumeId, _device, instanceId) => byInstance.get(instanceId)?.devices.detached(volumeId);

  // The fleet before: every host's volumes attached to its old instance and holding ext4.
  const hosts: SimHost[] = [];
  for (let h = 0; h < opts.hosts; h++) {
    const hostId = `host-${String(h).padStart(4, '0')}`;
    const old = model.addInstance({ az: AZ, tags: { [keys.host]: hostId } });
    const fakeHost = new FakeHost();
    const host: SimHost = { hostId, instanceId: old, volumeIds: [], names: [], devices: new FleetDevices(fakeHost, data), fakeHost };
    for (let v = 0; v < opts.volumesPerHost; v++) {
      const name = `${hostId}-db${v}`;
      const volumeId = model.addVolume({
        az: AZ,
        size: 1,
        tags: { [keys.volume]: name, [keys.host]: hostId, [keys.managedBy]: MANAGED_BY },
        attachedTo: { instanceId: old, device: DEVICE_NAMES[v]! },
      });
      data.set(volumeId, 'ext4');
      host.volumeIds.push(volumeId);
      host.names.push(name);
    }
    hosts.push(host);
  }
  await model.settled();
  model.resetCalls();

  const now = () => Date.now();
  const t0 = now();
  let readyHosts = 0;
  const ready = (host: SimHost) => {
    if (host.readyAt === undefined) readyHosts += 1;
    host.readyAt = now();
  };
  let mountsFailed = 0;
  let mountsFailedThrottled = 0;
  const stops: (() => void)[] = [];
  const run = <T>(work: Promise<T>) => void work.catch(() => undefined);
  const launchBucket = new TokenBucket(RESOURCE_BUCKETS.runInstances.capacity, RESOURCE_BUCKETS.runInstances.refillPerSecond, now);
  const terminateBucket = new TokenBucket(RESOURCE_BUCKETS.terminateInstances.capacity, RESOURCE_BUCKETS.terminateInstances.refillPerSecond, now);
  const take = async (bucket: TokenBucket) => {
    while (!bucket.take()) await sleep(100);
  };

  /** Replaces one host: its instance terminates (EC2 detaches its volumes), a new one launches and boots the agent. */
  async function replace(host: SimHost): Promise<void> {
    await take(terminateBucket);
    void model.setInstanceState(host.instanceId, 'terminated');
    await take(launchBucket);
    host.instanceId = model.addInstance({ az: AZ, tags: { [keys.host]: host.hostId } });
    byInstance.set(host.instanceId, host);
    host.fakeHost.mounts.clear();
    await sleep(BOOT_MS.minMs * scale + random() * (BOOT_MS.maxMs - BOOT_MS.minMs) * scale);
    host.agentAt = now();
    if (opts.agent === 'berth') await startBerth(host);
    else await startSeed(host);
  }

  async function startBerth(host: SimHost): Promise<void> {
    // The client as the agent's backend factory builds it (its retry settings).
    const client = sdkClient(EC2_CLIENT_SETTINGS);
    model.installBehindSdkRetries(client, 'agent');
    const ec2 = new Ec2Facade({
      ec2: new SdkEc2(client),
      instanceId: host.instanceId,
      maxConcurrentAttachments: CONFIG_DEFAULTS.BERTH_ATTACH_CONCURRENCY,
      ...(opts.timing ? { timing: opts.timing } : {}),
      ...(opts.hostView === false ? {} : { attachedHere: attachedHereOf(host.devices) }),
      ...(scheduleStore ? { scheduleStore } : {}),
    });
    const backend: EbsBackend = createEbsBackend({
      ec2,
      devices: host.devices,
      identity: { instanceId: host.instanceId, az: AZ, region: REGION, hostId: host.hostId },
      defaults: { sizeBytes: 2 ** 30, fs: 'ext4' },
      tagPrefix: PREFIX,
      idleDetachMs: CONFIG_DEFAULTS.BERTH_IDLE_DETACH_SECONDS * 1000,
      moveWaitMs: CONFIG_DEFAULTS.BERTH_MOVE_WAIT_SECONDS * 1000,
      deviceWaitMs: CONFIG_DEFAULTS.BERTH_DEVICE_WAIT_SECONDS * 1000,
      logger: silentLogger,
    });
    const stateDir = join(stateRoot, `${host.hostId}-${host.instanceId}`);
    const fs = new FakeFilesystem(host.fakeHost);
    const driver = new DockerVolumeDriver(
      new VolumeService({ backend, fs, paths: { stateDir, mountsDir: '/var/lib/docker/plugins/berth/mounts' }, defaults: { sizeBytes: 2 ** 30, fs: 'ext4' }, logger: silentLogger }),
    );
    await driver.service.start();
    const reconciler = new Reconciler({
      manager: driver.service,
      backend,
      concurrency: CONFIG_DEFAULTS.BERTH_ATTACH_CONCURRENCY,
      intervalMs: CONFIG_DEFAULTS.BERTH_RECONCILE_INTERVAL_SECONDS * 1000,
      logger: silentLogger,
    });
    let stopped = false;
    host.stop = () => {
      stopped = true;
      reconciler.stop();
      backend.close();
    };
    stops.push(host.stop);
    // ECS starts the host's tasks as soon as the instance joins: each Mounts its volume, with dockerd's deadline.
    let mounted = 0;
    const task = async (name: string, i: number) => {
      for (;;) {
        try {
          await driver.mount(name, `${'t'.repeat(60)}${String(i).padStart(4, '0')}`);
          mounted += 1;
          return;
        } catch (err) {
          mountsFailed += 1;
          if (isBerthError(err) && err.code === 'LIMIT_EXCEEDED') mountsFailedThrottled += 1;
          if (stopped) return;
          await sleep(TASK_RETRY_MS);
        }
      }
    };
    const tasks = Promise.all(host.names.map(task));
    await reconciler.boot().catch(() => undefined);
    if (!stopped) reconciler.start();
    await tasks;
    // Ready: every task's volume mounted and /readyz answering ready (the next pass makes it so).
    while (!stopped && (mounted < host.names.length || reconciler.readiness() !== true)) await sleep(1_000);
    ready(host);
  }

  /** The seed's approach: list by tag, then one volume at a time, every call with fixed retries. */
  async function startSeed(host: SimHost): Promise<void> {
    const client = sdkClient({ retryMode: 'standard', maxAttempts: SEED.cliMaxAttempts });
    model.installBehindSdkRetries(client, 'agent');
    const fs = new FakeFilesystem(host.fakeHost);
    const fixed = async <T>(work: () => Promise<T>): Promise<T> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await work();
        } catch (err) {
          if (attempt >= SEED.retries) throw err;
          await sleep(SEED.retryMs);
        }
      }
    };
    const describe = async (volumeId: string): Promise<Volume | undefined> =>
      (await fixed(() => client.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] })))).Volumes?.[0];
    const listed = await fixed(() => client.send(new DescribeVolumesCommand({ Filters: [{ Name: `tag:${keys.host}`, Values: [host.hostId] }, { Name: `tag:${keys.managedBy}`, Values: [MANAGED_BY] }] })));
    const volumes = (listed.Volumes ?? []).map((v) => v.VolumeId!).sort();
    for (const [i, volumeId] of volumes.entries()) {
      // Held by the terminated instance until EC2 has detached it.
      while ((await describe(volumeId))?.State !== 'available') await sleep(SEED.pollMs);
      await fixed(() => client.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: host.instanceId, Device: DEVICE_NAMES[i]! })));
      for (;;) {
        const a = (await describe(volumeId))?.Attachments?.[0];
        if (a?.InstanceId === host.instanceId && a.State === 'attached') break;
        await sleep(SEED.pollMs);
      }
      const device = await host.devices.waitFor(volumeId, undefined, 30_000);
      await fs.prepare(device.path, 'ext4');
      const mountpoint = `/mnt/${volumeId}`;
      await fs.ensureMountpoint(mountpoint);
      await fs.mount(device.path, mountpoint, 'ext4');
    }
    ready(host);
  }

  // The other tool in the account: steady mutating calls (DeleteVolume of a volume it no longer has,
  // which takes a token before EC2 answers NotFound) and filtered describes.
  if (opts.scenario === 'shared') {
    const other = opts.otherTool ?? { mutatingPerSecond: 1, describesPerSecond: 10 };
    const client = new EC2Client({ region: REGION, credentials: { accessKeyId: 'AKIDOTHER', secretAccessKey: 'other' }, maxAttempts: 1 });
    model.installBehindSdkRetries(client, 'other');
    let stop = false;
    stops.push(() => (stop = true));
    const every = async (perSecond: number, call: () => Promise<unknown>) => {
      while (!stop && perSecond > 0) {
        run(call());
        await sleep(1000 / perSecond);
      }
    };
    run(every(other.mutatingPerSecond, () => client.send(new DeleteVolumeCommand({ VolumeId: 'vol-0fffffffffffffff0' }))));
    run(every(other.describesPerSecond, () => client.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:team', Values: ['other'] }] }))));
  }

  if (scheduleStore && opts.scheduleOutage) {
    const outage = opts.scheduleOutage;
    run(
      (async () => {
        await sleep(outage.atMs);
        scheduleStore.unavailable = true;
        await sleep(outage.forMs);
        scheduleStore.unavailable = false;
      })(),
    );
  }

  const floor = floorOf(opts, buckets);
  let brownoutEndMs: number | undefined;
  let attachesAtBrownoutEnd = 0;
  if (opts.scenario === 'brownout') {
    const b = opts.brownout ?? { atMs: 60_000, forMs: 300_000, kind: 'throttle' };
    run(
      (async () => {
        await sleep(b.atMs);
        if (b.kind === 'throttle') model.faults.throttleAll = true;
        else model.faults.serverFaultAll = true;
        await sleep(b.forMs);
        model.faults.throttleAll = false;
        model.faults.serverFaultAll = false;
        brownoutEndMs = now() - t0;
        attachesAtBrownoutEnd = model.callsBy('agent').get('AttachVolume')?.answered ?? 0;
      })(),
    );
  }

  if (opts.scenario === 'rolling') {
    const batch = opts.batch ?? Math.max(1, Math.round(opts.hosts / 10));
    run(
      (async () => {
        for (let i = 0; i < hosts.length; i += batch) {
          const group = hosts.slice(i, i + batch);
          await Promise.all(group.map((h) => replace(h)));
          while (group.some((h) => h.readyAt === undefined)) await sleep(1_000);
        }
      })(),
    );
  } else {
    for (const h of hosts) run(replace(h));
  }

  const progress = opts.progress;
  const progressTimer = progress
    ? realSetInterval(() => {
        const calls = [...model.callsBy('agent').values()].reduce((a, c) => a + c.calls, 0);
        progress(`  … ${((now() - t0) / 1000).toFixed(0)} s ${opts.clock ? 'simulated' : 'in'}, ${readyHosts} of ${hosts.length} hosts ready, ${calls} calls, ${((realNow() - realStart) / 1000).toFixed(0)} s real`);
      }, 30_000).unref()
    : undefined;
  const limitMs = opts.limitMs ?? 3 * floor.ms + 600_000;
  // Checked after every timer the clock runs: a count, not a scan of the hosts.
  const allReady = () => readyHosts === hosts.length;
  if (opts.clock) await opts.clock.runUntil(allReady, limitMs);
  else {
    const end = now() + limitMs;
    while (!allReady() && now() < end) await sleep(200);
  }
  const doneAt = now();

  let steadyDescribesPerHostMinute: number | undefined;
  if (opts.steadyMs && allReady()) {
    const before = model.callsBy('agent').get('DescribeVolumes')?.calls ?? 0;
    if (opts.clock) await opts.clock.advance(opts.steadyMs);
    else await sleep(opts.steadyMs);
    const after = model.callsBy('agent').get('DescribeVolumes')?.calls ?? 0;
    steadyDescribesPerHostMinute = (after - before) / hosts.length / (opts.steadyMs / 60_000);
  }

  if (progressTimer) realClearInterval(progressTimer);
  for (const stop of stops) stop();
  model.dispose();
  rmSync(stateRoot, { recursive: true, force: true });

  let resultFloor = floor;
  if (opts.scenario === 'brownout' && brownoutEndMs !== undefined) {
    const left = opts.hosts * opts.volumesPerHost - attachesAtBrownoutEnd;
    const m = buckets.volumeMutating;
    const ms = brownoutEndMs + (Math.max(0, left - m.capacity) / m.refillPerSecond) * 1000 + ATTACH_LATENCY.medianMs * scale;
    resultFloor = { ms, how: `brownout ended at ${(brownoutEndMs / 1000).toFixed(0)} s with ${left} attachments left: ${left} − ${m.capacity} burst at ${m.refillPerSecond}/s + a median attach` };
  }

  const hostResults = hosts.map((h) => ({
    hostId: h.hostId,
    readyMs: h.readyAt === undefined ? undefined : h.readyAt - t0,
    ownMs: h.readyAt === undefined || h.agentAt === undefined ? undefined : h.readyAt - h.agentAt,
  }));
  const stuck = hostResults.filter((h) => h.readyMs === undefined).length;
  const { clock: _clock, ...options } = opts;
  return {
    options,
    allReadyMs: stuck === 0 ? doneAt - t0 : undefined,
    hosts: hostResults,
    floor: resultFloor,
    stuck,
    mountsFailed,
    mountsFailedThrottled,
    calls: model.callsBy('agent'),
    otherCalls: model.callsBy('other'),
    steadyDescribesPerHostMinute,
    ...(brownoutEndMs !== undefined ? { brownoutEndMs } : {}),
    ...(scheduleStore ? { schedule: { ...scheduleStore.counts } } : {}),
    realSeconds: (realNow() - realStart) / 1000,
    cpuSeconds: cpuSecondsSince(cpuStart),
  };
}

/**
 * The least time the account's buckets allow for the scenario: every volume needs one
 * AttachVolume (the mutating bucket: its burst, then its refill, less what another tool takes),
 * and the last one its attach latency; the first cannot start before the old instance's
 * termination detached it and the new instance booted. Describes and tags have room to spare
 * at these sizes (a DescribeVolumes and a CreateTags per host), which the bench prints.
 */
export function floorOf(opts: Pick<FleetOptions, 'hosts' | 'volumesPerHost' | 'scenario' | 'batch' | 'otherTool' | 'latencyScale'>, buckets: Record<BucketName, BucketLimit>): Floor {
  const scale = opts.latencyScale ?? 1;
  const m = buckets.volumeMutating;
  const other = opts.scenario === 'shared' ? (opts.otherTool ?? { mutatingPerSecond: 1, describesPerSecond: 10 }).mutatingPerSecond : 0;
  const rate = m.refillPerSecond - other;
  const start = Math.max(DETACH_LATENCY.medianMs, BOOT_MS.minMs) * scale;
  const attach = ATTACH_LATENCY.medianMs * scale;
  const phase = (attaches: number, tokens: number) => (Math.max(0, attaches - tokens) / rate) * 1000;
  if (opts.scenario === 'rolling') {
    const batch = opts.batch ?? Math.max(1, Math.round(opts.hosts / 10));
    let ms = 0;
    let tokens = m.capacity;
    const lastBoot = BOOT_MS.maxMs * scale;
    for (let done = 0; done < opts.hosts; done += batch) {
      const n = Math.min(batch, opts.hosts - done) * opts.volumesPerHost;
      const spend = phase(n, tokens);
      const took = Math.max(lastBoot, start + spend) + attach;
      tokens = Math.min(m.capacity, Math.max(0, tokens - n) + (took / 1000) * rate);
      ms += took;
    }
    return { ms, how: `${Math.ceil(opts.hosts / batch)} batches of ${batch} hosts, each: its last host's boot ${(lastBoot / 1000).toFixed(0)} s (or the attachments at ${rate}/s past the tokens left, if longer) + a median attach` };
  }
  const n = opts.hosts * opts.volumesPerHost;
  const lastBoot = BOOT_MS.maxMs * scale;
  const spend = phase(n, m.capacity);
  return {
    ms: Math.max(lastBoot, start + spend) + attach,
    how:
      start + spend >= lastBoot
        ? `boot ${(start / 1000).toFixed(0)} s + (${n} attachments − ${m.capacity} burst) at ${rate}/s${other ? ` (${m.refillPerSecond}/s less the other tool's ${other}/s)` : ''} + a median attach ${(attach / 1000).toFixed(1)} s`
        : `the last host's boot ${(lastBoot / 1000).toFixed(0)} s + a median attach ${(attach / 1000).toFixed(1)} s (the buckets do not bind: ${n} attachments)`,
  };
}

const cpuSecondsSince = (start: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
};

/** Why a call failed, for the bench's notes. */
export const describeError = (err: unknown) => (isBerthError(err) ? `${err.code}: ${err.message}` : errorMessage(err));
