import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../lib/logger.js';
import { tagKeys } from '../../../lib/node-contract.js';
import type { VolumeRecord } from '../../../volume-plugin/backends/backend.js';
import type { HostSurvey, ReconcileService, SurveyingBackend, Tags } from '../../../volume-plugin/reconcile/ports.js';
import { Reconciler } from '../../../volume-plugin/reconcile/reconciler.js';
import { AZ, ebsUnitWorld, HOST, type EbsUnitWorld } from '../../fakes/ebs.js';
import { FakeNvme } from '../../fakes/nvme.js';

/**
 * The reconciler over its two ports: first over the real service and EBS backend on the in-memory
 * EC2 (the unit layer of test/ebs-reconciler.test.ts), then over plain fakes of the ports, which is
 * all it needs. Milliseconds, no root.
 */
const TAGS = (name: string, host = HOST) => ({ 'berth:volume': name, 'berth:host': host, 'berth:managed-by': 'berth' });

let w: EbsUnitWorld;
afterEach(() => w?.cleanup());

async function hostOf(world: EbsUnitWorld) {
  const backend = world.backend();
  const service = await world.service(backend);
  return { backend, service, reconciler: new Reconciler({ manager: service, backend, concurrency: 10, intervalMs: 3_600_000, logger: silentLogger }) };
}

describe('reconciler (unit) over the service and the EBS backend', () => {
  it('boot mounts every volume tagged here and publishes readiness; steady passes read EC2 once each, the root volume looked up once', async () => {
    w = ebsUnitWorld();
    const ids = ['a', 'b', 'c'].map((n) => w.model.addVolume({ az: AZ, size: 1, tags: TAGS(n) }));
    // The instance's own root volume: attached here, an NVMe namespace, not berth's.
    const root = w.model.addVolume({ az: AZ, size: 1, tags: { Name: 'root' }, attachedTo: { instanceId: w.instanceId, device: '/dev/xvda' } });
    w.nvme.bind(root);
    const { service, reconciler } = await hostOf(w);
    await reconciler.boot();
    expect(service.list().filter((v) => v.mounted).map((v) => v.name).sort()).toEqual(['a', 'b', 'c']);
    expect(reconciler.readiness()).toBe(true);
    expect(w.model.instance(w.instanceId).tags).toMatchObject({ 'berth:ready': 'true', 'berth:ready-count': '3' });
    for (const id of ids) expect(w.model.volume(id).tags).toMatchObject({ 'berth:attached-to': w.instanceId, 'berth:state': 'mounted' });
    await reconciler.pass();

    w.model.resetCalls();
    for (let i = 0; i < 5; i++) await reconciler.pass();
    expect([w.model.calls('DescribeVolumes'), w.model.calls()]).toEqual([5, 5]);
    expect(w.model.volume(root).attachment?.instanceId).toBe(w.instanceId);
  });

  it('a stray (attached here, tagged to another host) costs one lookup by id, and is detached', async () => {
    w = ebsUnitWorld();
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('mine') });
    const stray = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('theirs', 'host-b'), attachedTo: { instanceId: w.instanceId, device: '/dev/xvdbz' } });
    w.nvme.bind(stray);
    const { backend, reconciler } = await hostOf(w);
    w.model.resetCalls();
    const survey = await backend.survey();
    expect(survey.strays.map((f) => f.volumeId)).toEqual([stray]);
    expect(w.model.calls()).toBe(2); // the volumes tagged here, then the stray's namespace by id
    await reconciler.boot();
    expect(w.model.volume(stray).attachment).toBeUndefined();
    expect(w.model.calls('DetachVolume')).toBe(1);
  });

  it('on Xen (devices do not say which volume they are) strays are found by a second DescribeVolumes', async () => {
    w = ebsUnitWorld({ xen: true });
    const stray = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('theirs', 'host-b'), attachedTo: { instanceId: w.instanceId, device: '/dev/xvdbz' } });
    const { reconciler } = await hostOf(w);
    await reconciler.boot();
    expect(w.model.volume(stray).attachment).toBeUndefined();
    expect(w.model.inputs<{ Filters?: { Name: string }[] }>('DescribeVolumes').some((i) => i.Filters?.some((f) => f.Name === 'attachment.instance-id'))).toBe(true);
  });

  it('a device holding data berth will not touch: error state on the volume, not ready, not retried by the next pass until the volume changes', async () => {
    w = ebsUnitWorld();
    const id = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('taken') });
    w.host.formatted.set(FakeNvme.pathOf(id), 'xfs');
    const { reconciler } = await hostOf(w);
    await reconciler.boot();
    expect(w.model.volume(id).tags['berth:state']).toMatch(/^error:.*holds a xfs filesystem/);
    expect(w.model.volume(id).attachment).toBeUndefined();
    expect(w.model.instance(w.instanceId).tags).toMatchObject({ 'berth:ready': 'false', 'berth:ready-count': '0' });
    expect(reconciler.readiness()).toMatch(/taken \(refused, not retried until it changes/);
    const attaches = w.model.calls('AttachVolume');
    await reconciler.pass();
    expect(w.model.calls('AttachVolume')).toBe(attaches);
  });
});

describe('reconciler (unit): drift repair and the per-name lock', () => {
  const actions = (items: { name: string; action: string }[]) => items.map((i) => `${i.name}:${i.action}`).sort();

  it('repairs drift: a volume detached behind berth is remounted, one retagged to another host released, one newly tagged mounted', async () => {
    w = ebsUnitWorld();
    const detached = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('detached') });
    const moving = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('moving') });
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('steady') });
    const { service, reconciler } = await hostOf(w);
    await reconciler.boot();
    expect(await reconciler.plan()).toEqual([]);

    await w.model.detachOutOfBand(detached);
    w.model.setTags(moving, { 'berth:host': 'host-b' });
    const fresh = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('fresh') });
    expect(actions(await reconciler.plan())).toEqual(['detached:remount', 'fresh:mount', 'moving:release']);
    await reconciler.pass();
    expect(w.model.volume(detached).attachment?.state).toBe('attached');
    expect(w.model.volume(fresh).tags).toMatchObject({ 'berth:attached-to': w.instanceId, 'berth:state': 'mounted' });
    expect(w.model.volume(moving).attachment).toBeUndefined();
    expect(service.list().filter((v) => v.mounted).map((v) => v.name).sort()).toEqual(['detached', 'fresh', 'steady']);
  });

  it("a Mount racing a stray-detach of the same name cannot lose: the detach waits for the name's lock, then leaves the mounted volume alone", async () => {
    w = ebsUnitWorld();
    const stray = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('shared', 'host-b'), attachedTo: { instanceId: w.instanceId, device: '/dev/xvdbz' } });
    w.nvme.bind(stray);
    const gate = () => {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      return { open, opened };
    };
    const [surveyed, planNow, attached, mountNow] = [gate(), gate(), gate(), gate()];
    const inner = w.backend();
    // The pass pauses after reading EC2 (it saw the stray); the Mount pauses after its attach, holding the name's lock.
    const backend: typeof inner = {
      ...inner,
      async survey() {
        const found = await inner.survey();
        surveyed.open();
        await planNow.opened;
        return found;
      },
      async attach(record, call) {
        const device = await inner.attach(record, call);
        attached.open();
        await mountNow.opened;
        return device;
      },
    };
    const service = await w.service(backend);
    const reconciler = new Reconciler({ manager: service, backend, concurrency: 10, intervalMs: 3_600_000, logger: silentLogger });
    const passing = reconciler.pass();
    await surveyed.opened;
    const mounting = service.publish('shared', 'c1');
    await attached.opened;
    planNow.open();
    await new Promise((r) => setTimeout(r, 50)); // time for an unlocked detach to start
    expect(w.model.calls('DetachVolume')).toBe(0);
    mountNow.open();
    const mp = await mounting;
    expect(actions(await passing)).toEqual(['shared:release']);
    expect(w.model.calls('DetachVolume')).toBe(0);
    expect(w.model.volume(stray).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(w.host.mounts.get(mp)).toBe(FakeNvme.pathOf(stray));
    expect(w.model.volume(stray).tags['berth:host']).toBe(HOST);
    expect(await reconciler.plan()).toEqual([]);
  });

  it('a Mount whose caller has gone stops waiting for the attachment at once and leaves what EC2 accepted to the idle detach', async () => {
    w = ebsUnitWorld({ attachLatencyMs: 5_000, detachLatencyMs: 5 });
    const id = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('slow') });
    const { service } = await hostOf(w);
    const caller = new AbortController();
    const mounting = service.publish('slow', 'c1', { signal: caller.signal }).catch((e: unknown) => e);
    for (let i = 0; i < 200 && w.model.calls('AttachVolume') === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(w.model.volume(id).attachment?.state).toBe('attaching');
    caller.abort(new Error('dockerd gave up'));
    expect(((await mounting) as Error).message).toBe('dockerd gave up');
    // No DetachVolume and AttachVolume again on the account's shared budget when the task's Mount comes back (docs/design.md §6).
    expect(w.model.calls('DetachVolume')).toBe(0);
    expect(w.model.volume(id).attachment?.instanceId).toBe(w.instanceId);
    expect(service.describe('slow')).toMatchObject({ mounted: false, consumers: 0 });
  });

  it('a Mount waiting for another running host to let go stops waiting when its caller goes, and changes nothing more', async () => {
    w = ebsUnitWorld();
    const other = w.model.addInstance({ az: AZ, tags: { 'berth:host': 'host-b' } });
    const id = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('held'), attachedTo: { instanceId: other, device: '/dev/xvdba' } });
    const backend = w.backend({ moveWaitMs: 60_000 });
    const service = await w.service(backend);
    const caller = new AbortController();
    const mounting = service.publish('held', 'c1', { signal: caller.signal }).catch((e: unknown) => e);
    for (let i = 0; i < 200 && w.model.calls('DescribeInstances') === 0; i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    caller.abort(new Error('dockerd gave up'));
    expect(((await mounting) as Error).message).toBe('dockerd gave up');
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: other, state: 'attached' });
    expect(w.model.calls('DetachVolume')).toBe(0);
  });
});

describe('reconciler (unit) over plain fakes of its ports: all it needs', () => {
  const keys = tagKeys('berth:');
  const recordOf = (name: string): VolumeRecord => ({ name, id: `vol-${name}`, options: { sizeBytes: 1, fs: 'ext4', onRemove: 'retain' }, createdAt: '1970-01-01T00:00:00.000Z', status: {} });

  /** `duringSurvey`: what happens on the host while the pass waits for EC2's answer (`local`: name → mounted). */
  function fakes(survey: HostSurvey, mounted: string[], duringSurvey?: (local: Map<string, boolean>) => void) {
    const calls: string[] = [];
    const published: { instance: Tags; volumes: { id: string; tags: Tags }[] }[] = [];
    const local = new Map(mounted.map((n) => [n, true]));
    const service: ReconcileService = {
      list: () => [...local].map(([name, m]) => ({ name, mounted: m })),
      ensureMounted: async (name) => {
        calls.push(`ensureMounted ${name}`);
        local.set(name, true);
      },
      releaseIfUnused: async (name) => {
        calls.push(`releaseIfUnused ${name}`);
        local.set(name, false);
        return true;
      },
      detachIfUnused: async (record) => {
        calls.push(`detachIfUnused ${record.name}`);
        return true;
      },
      refresh: async (records) => {
        for (const r of records ?? []) if (!local.has(r.name)) local.set(r.name, false);
      },
    };
    const backend: SurveyingBackend = {
      identity: { instanceId: 'i-me', hostId: 'h' },
      tagKeys: keys,
      survey: async () => {
        duringSurvey?.(local);
        return survey;
      },
      publishReadiness: async (instance, volumes) => void published.push({ instance, volumes }),
    };
    return { calls, published, reconciler: new Reconciler({ manager: service, backend, concurrency: 2, intervalMs: 3_600_000, logger: silentLogger }) };
  }

  it('mounts what is tagged here, remounts what lost its attachment behind berth, releases what is tagged elsewhere; publishes one verdict', async () => {
    const facts = (name: string, attachment?: { instanceId: string; state: string }, hostTag = 'h') => ({ name, volumeId: `vol-${name}`, hostTag, attachment: attachment && { device: '/dev/xvdba', ...attachment }, record: recordOf(name) });
    const { calls, published, reconciler } = fakes(
      {
        tagged: [facts('new'), facts('lost'), facts('fine', { instanceId: 'i-me', state: 'attached' })],
        duplicates: [],
        strays: [facts('gone', { instanceId: 'i-me', state: 'attached' }, 'other')],
      },
      ['lost', 'fine', 'gone'],
    );
    const plan = await reconciler.boot();
    expect(plan.map((p) => `${p.name}:${p.action}`).sort()).toEqual(['gone:release', 'lost:remount', 'new:mount']);
    expect(calls.sort()).toEqual(['ensureMounted lost', 'ensureMounted new', 'releaseIfUnused gone', 'releaseIfUnused lost']);
    expect(published.at(-1)!.instance).toEqual({ [keys.ready]: 'true', [keys.readyCount]: '3' });
    expect(reconciler.readiness()).toBe(true);
  });

  it('a volume mounted while the pass read EC2 (or still attaching in its answer) is not taken for one detached behind berth', async () => {
    const facts = (name: string, attachment?: { instanceId: string; state: string }) => ({ name, volumeId: `vol-${name}`, hostTag: 'h', attachment: attachment && { device: '/dev/xvdba', ...attachment }, record: recordOf(name) });
    const survey: HostSurvey = { tagged: [facts('fresh'), facts('lagging', { instanceId: 'i-me', state: 'attaching' }), facts('lost')], duplicates: [], strays: [] };
    // A task's Mount of 'fresh' completes while the pass waits for EC2, whose answer predates its attachment.
    const { calls, reconciler } = fakes(survey, ['lagging', 'lost'], (local) => local.set('fresh', true));
    const plan = await reconciler.pass();
    // Only 'lost' was mounted before the survey and is neither attached nor attaching here in it.
    expect(plan.map((p) => `${p.name}:${p.action}`)).toEqual(['lost:remount']);
    expect(calls).toEqual(['releaseIfUnused lost', 'ensureMounted lost']);
  });

  it('two volumes with one name: neither used, both named in readiness, the extra one tagged as a duplicate', async () => {
    const { published, reconciler } = fakes({ tagged: [], duplicates: [{ name: 'twin', volumeIds: ['vol-1', 'vol-2'], kept: undefined }], strays: [] }, []);
    await reconciler.boot();
    expect(reconciler.readiness()).toMatch(/twin \(2 EBS volumes carry this name: vol-1, vol-2; berth uses none of them/);
    expect(published.at(-1)!.volumes.map((v) => v.id)).toEqual(['vol-1', 'vol-2']);
    expect(published.at(-1)!.instance[keys.ready]).toBe('false');
  });
});
