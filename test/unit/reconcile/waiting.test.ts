import { afterEach, describe, expect, it } from 'vitest';
import { isBerthError, StillWaiting } from '../../../lib/errors.js';
import { silentLogger } from '../../../lib/logger.js';
import { tagKeys } from '../../../lib/node-contract.js';
import { sleep } from '../../../lib/sleep.js';
import type { VolumeRecord } from '../../../volume-plugin/backends/backend.js';
import { attachedHereOf } from '../../../volume-plugin/backends/ebs/attachment-waits.js';
import type { Ec2Port } from '../../../volume-plugin/backends/ebs/ec2-port.js';
import { DEFAULT_EC2_TIMING } from '../../../volume-plugin/backends/ebs/ec2-timing.js';
import { formatJournal } from '../../../volume-plugin/backends/ebs/zone-move.js';
import type { HostSurvey, ReconcileService, SurveyingBackend, Tags } from '../../../volume-plugin/reconcile/ports.js';
import { Reconciler } from '../../../volume-plugin/reconcile/reconciler.js';
import { StateStore } from '../../../volume-plugin/state-store.js';
import { throttled } from '../../aws/ec2-errors.js';
import { AZ, ebsUnitWorld, HOST, UNIT_TIMING, type EbsUnitWorld } from '../../fakes/ebs.js';
import { VirtualClock } from '../../fakes/virtual-clock.js';
import { step } from '../../helpers/step.js';

/**
 * A host waiting for the account's EC2 budget (issue 23; docs/design.md §6, "A host waiting for the
 * budget"): while every AttachVolume it sends is refused (the other hosts of the account have the
 * bucket), the EC2 calls it makes besides those stay flat, and once the budget is back it is ready
 * within a retry. The real reconciler, volume service and EBS backend over the EC2 model on the port,
 * the production timings on a virtual clock (test/fakes/virtual-clock.ts).
 */
const TAGS = (name: string) => ({ 'berth:volume': name, 'berth:host': HOST, 'berth:managed-by': 'berth' });

/** The model's port, with AttachVolume refused for the account's budget (RequestLimitExceeded, as EC2 answers) while `crowded`. */
function crowdedPort(port: Ec2Port) {
  const crowd = { crowded: true };
  const wrapped: Ec2Port = {
    ...port,
    attachVolume: (input, signal) => (crowd.crowded ? Promise.reject(throttled()) : port.attachVolume(input, signal)),
  };
  return { crowd, port: wrapped };
}

/**
 * The state file's real writes, counted so that the virtual clock stands still while one is in
 * flight (as test/fakes/fleet.ts does): a save must not seem to take virtual minutes.
 */
function countStateIo(clock: VirtualClock): () => void {
  let inFlight = 0;
  const proto = StateStore.prototype as unknown as Record<'load' | 'save', (...a: unknown[]) => Promise<unknown>>;
  const real = { load: proto.load, save: proto.save };
  for (const method of ['load', 'save'] as const) {
    proto[method] = async function (this: unknown, ...a: unknown[]) {
      inFlight++;
      try {
        return await real[method].apply(this, a);
      } finally {
        inFlight--;
      }
    };
  }
  clock.ioInFlight = () => inFlight;
  return () => Object.assign(proto, real);
}

let w: EbsUnitWorld | undefined;
let clock: VirtualClock | undefined;
let undoIo: (() => void) | undefined;
afterEach(() => {
  w?.cleanup();
  w = undefined;
  undoIo?.();
  undoIo = undefined;
  clock?.uninstall();
  clock = undefined;
});

describe('a host waiting for the account\'s EC2 budget', () => {
  it('20 minutes of refused attaches: a few DescribeVolumes and two CreateTags, not one per try; the volumes say attaching, not error; ready within a retry once the budget is back', async () => {
    clock = VirtualClock.install();
    undoIo = countStateIo(clock);
    w = ebsUnitWorld({ attachLatencyMs: 2_000 });
    const names = Array.from({ length: 8 }, (_, i) => `db${i}`);
    const ids = names.map((n) => w!.model.addVolume({ az: AZ, size: 1, tags: TAGS(n) }));
    const { crowd, port } = crowdedPort(w.port);
    // Production timings (ec2-timing.ts), the host's view of its NVMe namespaces, dockerd's deadlines.
    const backend = w.backend({ ec2: w.facade({ ec2: port, timing: DEFAULT_EC2_TIMING, attachedHere: attachedHereOf(w.nvme), maxConcurrentAttachments: 50 }), idleDetachMs: 600_000, moveWaitMs: 60_000, deviceWaitMs: 10_000 });
    const service = await w.service(backend);
    const reconciler = new Reconciler({ manager: service, backend, concurrency: 50, intervalMs: 60_000, logger: silentLogger });
    // ECS: a task per volume Mounts it as the host comes up, and is restarted 10 s after a failed Mount.
    let stopped = false;
    const mounted = new Set<string>();
    const tasks = names.map(async (name, i) => {
      while (!stopped) {
        try {
          await service.publish(name, `${'t'.repeat(63)}${i}`);
          mounted.add(name);
          return;
        } catch {
          await sleep(10_000);
        }
      }
    });
    w.model.resetCalls();
    const booted = reconciler.boot().then(() => reconciler.start());

    await step('20 minutes crowded out', () => clock!.advance(20 * 60_000));
    const describes = w.model.calls('DescribeVolumes');
    const tags = w.model.calls('CreateTags');
    // Once at start (the service's list), the boot survey, the lookups by name (one call for the
    // host's 8), the device names in use, and a survey every 5 minutes while it waits; not a survey
    // per 10 s retry, a lookup per Mount, a describe per failed attach (62 in this test before).
    expect(describes).toBeLessThanOrEqual(10);
    // The instance's ready=false and the volumes' `attaching`, once: the refusal counts in the
    // message change on every try, the state does not (16 CreateTags in this test before).
    expect(tags).toBe(2);
    expect(w.model.calls('DetachVolume')).toBe(0);
    for (const id of ids) expect(w.model.volume(id).tags['berth:state']).toBe('attaching');
    expect(w.model.instance(w.instanceId).tags).toMatchObject({ 'berth:ready': 'false', 'berth:ready-count': '0' });
    // The detail is in /readyz (and the log), not in the tag.
    expect(reconciler.readiness()).toMatch(/volumes not ready: db0 \(.*EC2/);

    crowd.crowded = false;
    const back = Date.now();
    await step('the budget is back', () => clock!.runUntil(() => mounted.size === names.length && reconciler.readiness() === true, 5 * 60_000));
    // Within a retry or two of the budget coming back (the tasks' Mounts and the reconciler's retry come every 10 s, and the
    // pacer's gap is back from its 10 s at the first accepted call): 25 s here, 22 s before.
    expect(Date.now() - back).toBeLessThan(60_000);
    expect(mounted.size).toBe(names.length);
    for (const id of ids) expect(w.model.volume(id).tags).toMatchObject({ 'berth:state': 'mounted', 'berth:attached-to': w.instanceId });
    expect(w.model.instance(w.instanceId).tags).toMatchObject({ 'berth:ready': 'true', 'berth:ready-count': '8' });
    stopped = true;
    await reconciler.stop();
    await Promise.all([booted, ...tasks]);
  });
});

describe('an attach EC2 refused for its budget', () => {
  it('fails as StillWaiting having changed nothing; the next Mount of it asks EC2 nothing but its AttachVolume', async () => {
    w = ebsUnitWorld();
    const id = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('pg') });
    const { crowd, port } = crowdedPort(w.port);
    const backend = w.backend({ ec2: w.facade({ ec2: port, timing: { ...UNIT_TIMING, attachTimeoutMs: 300, readRetryFirstMs: 10, readRetryMaxMs: 50, mutationsPerSecond: 1_000, maxMutationGapMs: 20 }, attachedHere: attachedHereOf(w.nvme) }) });
    const service = await w.service(backend);
    const reconciler = new Reconciler({ manager: service, backend, concurrency: 10, intervalMs: 3_600_000, logger: silentLogger });
    w.model.resetCalls();
    await reconciler.boot();
    const failed = await service.publish('pg', 'c1').catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(StillWaiting);
    // The pacer's time ran out (TIMEOUT), or EC2's last refusal came as it did (LIMIT_EXCEEDED): the code a caller knows.
    expect(isBerthError(failed, 'TIMEOUT') || isBerthError(failed, 'LIMIT_EXCEEDED')).toBe(true);
    // Nothing was attached: no describe to see whether to detach, no DetachVolume.
    expect([w.model.calls('DetachVolume'), w.model.volume(id).attachment]).toEqual([0, undefined]);
    expect(w.model.volume(id).tags['berth:state']).toBe('attaching');
    const describes = w.model.calls('DescribeVolumes');

    crowd.crowded = false;
    const mountpoint = await service.publish('pg', 'c1');
    expect(w.host.mounts.get(mountpoint)).toBeDefined();
    // The lookup by name the refused tries made still holds, and the host sees the attachment: the Mount's one call is its AttachVolume.
    expect(w.model.calls('DescribeVolumes')).toBe(describes);
    expect(w.model.calls('AttachVolume')).toBeGreaterThan(0);
    await reconciler.pass();
    expect(reconciler.readiness()).toBe(true);
    expect(w.model.volume(id).tags['berth:state']).toBe('mounted');
  });
});

describe('what a waiting attach keeps of its lookup', () => {
  it('each survey refreshes it: a zone move journalled meanwhile stops the next try before any AttachVolume', async () => {
    w = ebsUnitWorld();
    const id = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('pg') });
    const { crowd, port } = crowdedPort(w.port);
    const backend = w.backend({ ec2: w.facade({ ec2: port, timing: { ...UNIT_TIMING, attachTimeoutMs: 300, mutationsPerSecond: 1_000, maxMutationGapMs: 20 }, attachedHere: attachedHereOf(w.nvme) }) });
    const service = await w.service(backend);
    expect(await service.publish('pg', 'c1').catch((e: unknown) => e)).toBeInstanceOf(StillWaiting);
    // An operator starts moving the node's volume to another zone; the host reads EC2 again (its survey).
    w.model.setTags(id, { 'berth:move': formatJournal({ step: 'snapshot', to: 'eu-west-1b', id: '20261207T013000Z' }) });
    await backend.survey();
    crowd.crowded = false;
    const attaches = w.model.calls('AttachVolume');
    await expect(service.publish('pg', 'c1')).rejects.toThrow(/moving to zone eu-west-1b, step snapshot/);
    expect(w.model.calls('AttachVolume')).toBe(attaches);
    expect(w.model.volume(id).attachment).toBeUndefined();
  });
});

describe('the reconciler while volumes wait for the budget (over fakes of its ports)', () => {
  it('retries them from the last survey, without reading EC2 or rewriting tags for new counts; a Mount that mounts the last of them makes the host ready at once', async () => {
    const keys = tagKeys('berth:');
    const recordOf = (name: string): VolumeRecord => ({ name, id: `vol-${name}`, options: { sizeBytes: 1, fs: 'ext4', onRemove: 'retain' }, createdAt: '1970-01-01T00:00:00.000Z', status: {} });
    const survey: HostSurvey = { tagged: ['a', 'b'].map((name) => ({ name, volumeId: `vol-${name}`, hostTag: 'h', attachment: undefined, record: recordOf(name) })), duplicates: [], strays: [] };
    const local = new Map([['a', false], ['b', false]]);
    let tries = 0;
    let surveys = 0;
    let listener: { workEnded(name: string): void } | undefined;
    const published: { instance: Tags; volumes: { id: string; tags: Tags }[] }[] = [];
    const service: ReconcileService = {
      list: () => [...local].map(([name, mounted]) => ({ name, mounted })),
      ensureMounted: async (name) => {
        throw new StillWaiting('TIMEOUT', `attaching vol-${name}: still waiting for the account's EC2 budget (EC2 refused ${++tries} tries)`);
      },
      releaseIfUnused: async () => true,
      detachIfUnused: async () => true,
      refresh: async () => undefined,
      subscribe: (l) => {
        listener = l;
        return () => (listener = undefined);
      },
    };
    const backend: SurveyingBackend = {
      identity: { instanceId: 'i-me', hostId: 'h' },
      tagKeys: keys,
      survey: async () => (surveys++, survey),
      publishReadiness: async (instance, volumes) => void published.push({ instance, volumes }),
    };
    const reconciler = new Reconciler({ manager: service, backend, concurrency: 2, intervalMs: 60_000, logger: silentLogger });
    await reconciler.boot();
    reconciler.start();
    expect(published).toEqual([
      { instance: { [keys.ready]: 'false', [keys.readyCount]: '0' }, volumes: ['a', 'b'].map((n) => ({ id: `vol-${n}`, tags: { [keys.attachedTo]: '', [keys.state]: 'attaching' } })) },
    ]);
    await reconciler.pass();
    await reconciler.pass();
    // Both tried again each pass, from the boot's survey; the new counts are in /readyz, not in new tags.
    expect([tries, surveys, published.length]).toEqual([6, 1, 1]);
    expect(reconciler.readiness()).toMatch(/a \(attaching vol-a: still waiting for the account's EC2 budget \(EC2 refused 5 tries\)\)/);

    // The tasks' Mounts get them (the next retry is 10 s away).
    local.set('a', true);
    listener!.workEnded('a');
    local.set('b', true);
    const mountedAt = Date.now();
    listener!.workEnded('b');
    while (reconciler.readiness() !== true && Date.now() - mountedAt < 5_000) await sleep(5);
    expect(Date.now() - mountedAt).toBeLessThan(1_000);
    expect(surveys).toBe(1);
    expect(published.at(-1)!.instance).toEqual({ [keys.ready]: 'true', [keys.readyCount]: '2' });
    await reconciler.stop();
    expect(listener).toBeUndefined();
  });
});
