import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readMountinfo } from '../lib/mountinfo.js';
import { sleep } from '../lib/sleep.js';
import type { EbsBackend, EbsBackendDeps, HostSurvey } from '../volume-plugin/backends/ebs/ebs-backend.js';
import { Reconciler } from '../volume-plugin/reconcile/reconciler.js';
import type { VolumeService } from '../volume-plugin/service.js';
import { AZ, ebsWorld, GiB, HOST, testLogger, type EbsWorld } from './helpers/ebs.js';
import { noLoopReason } from './helpers/env.js';
import { HOST_PATHS } from './helpers/manager.js';

const TAGS = (name: string, host = HOST) => ({ 'berth:volume': name, 'berth:host': host, 'berth:managed-by': 'berth' });

const mountedAt = async (path: string) => (await readMountinfo(HOST_PATHS.mountinfoPath)).some((m) => m.mountpoint === path);

/** Fails a test that waits too long with the step it was in. */
async function step<T>(what: string, work: Promise<T>, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)));
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(noLoopReason)(`EBS reconciler: typed facts, one list per pass, actions under the per-name lock${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let w: EbsWorld | undefined;
  let backend: EbsBackend | undefined;

  afterEach(async () => {
    backend?.close();
    backend = undefined;
    await w?.cleanup();
    w = undefined;
  });

  async function host(
    world: EbsWorld,
    wrap: (b: EbsBackend) => EbsBackend = (b) => b,
    overrides: Partial<EbsBackendDeps> = {},
  ): Promise<{ manager: VolumeService; reconciler: Reconciler; backend: EbsBackend }> {
    backend = world.backend(overrides);
    const b = wrap(backend);
    const manager = (await world.manager(b)).service;
    return { manager, backend: b, reconciler: new Reconciler({ manager, backend: b, concurrency: 10, intervalMs: 3_600_000, logger: testLogger() }) };
  }

  it('steady passes read EC2 once each: one DescribeVolumes, the root volume\'s device looked up once', async () => {
    w = await ebsWorld();
    for (const n of ['a', 'b', 'c']) w.model.addVolume({ az: AZ, size: 1, tags: TAGS(n) });
    // The instance's own root volume: attached here, shows as an NVMe namespace, not berth's.
    const root = w.model.addVolume({ az: AZ, size: 1, tags: { Name: 'root' }, attachedTo: { instanceId: w.instanceId, device: '/dev/xvda' } });
    await w.tree.bind(root, GiB);
    const { manager, reconciler } = await host(w);
    await step('boot reconcile', reconciler.boot());
    expect(manager.snapshot().filter((v) => v.mounted).map((v) => v.name).sort()).toEqual(['a', 'b', 'c']);
    await step('first steady pass', reconciler.pass());

    w.model.resetCalls();
    const passes = 5;
    for (let i = 0; i < passes; i++) await step(`steady pass ${i + 1}`, reconciler.pass());
    expect(w.model.calls('DescribeVolumes')).toBe(passes);
    expect(w.model.calls()).toBe(passes);
    expect(w.model.volume(root).attachment?.instanceId).toBe(w.instanceId);
  });

  it('a volume removed after a pass read EC2 and before it acts is not a failure: the host stays ready', async () => {
    w = await ebsWorld();
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('kept') });
    const { manager, reconciler } = await host(w);
    await step('boot reconcile', reconciler.boot());
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('gone') });
    // docker volume rm lands between the pass's survey and its action on that name.
    const ensureMounted = manager.ensureMounted.bind(manager);
    manager.ensureMounted = async (name) => {
      if (name === 'gone') await manager.remove(name);
      return ensureMounted(name);
    };
    await step('a pass that finds the volume removed when it acts', reconciler.pass());
    expect(reconciler.readiness()).toBe(true);
    expect(manager.snapshot().map((v) => v.name)).toEqual(['kept']);
  });

  it('a stray (attached here, tagged to another host) costs one lookup by id, and is detached', async () => {
    w = await ebsWorld();
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('mine') });
    const stray = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('theirs', 'host-b'), attachedTo: { instanceId: w.instanceId, device: '/dev/xvdbz' } });
    await w.tree.bind(stray, GiB);
    const { reconciler } = await host(w);
    await step('boot reconcile', reconciler.boot());
    await w.model.settled();
    expect(w.model.volume(stray).attachment).toBeUndefined();
    expect(w.model.calls('DetachVolume')).toBe(1);
    // The kernel drops the namespace on detach (the model's hook does so only for attachments it bound).
    await w.tree.unbind(stray);
    w.model.resetCalls();
    await step('steady pass', reconciler.pass());
    expect(w.model.calls()).toBe(1);
  });

  it('decisions rest on typed facts: display status with renamed or missing keys changes no plan and no tag', async () => {
    w = await ebsWorld();
    const detached = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('detached') });
    const moving = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('moving') });
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('steady') });
    /** The same survey, its display status renamed (attachedTo → attached_to …) or emptied. */
    const relabel = (how: 'renamed' | 'missing') => (b: EbsBackend): EbsBackend => ({
      ...b,
      async survey(): Promise<HostSurvey> {
        const s = await b.survey();
        for (const f of [...s.tagged, ...s.strays]) {
          f.record.status = how === 'missing' ? {} : Object.fromEntries(Object.entries(f.record.status).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v]));
        }
        return s;
      },
    });
    const world = w;
    const { manager, reconciler, backend: relabelled } = await host(world, relabel('renamed'));
    await step('boot reconcile', reconciler.boot());
    expect(manager.snapshot().filter((v) => v.mounted)).toHaveLength(3);
    const missing = new Reconciler({ manager, backend: relabel('missing')(backend!), concurrency: 10, intervalMs: 3_600_000, logger: testLogger() });
    expect(await reconciler.plan()).toEqual([]);
    expect(await missing.plan()).toEqual([]);
    for (const id of [detached, moving]) expect(world.model.volume(id).tags['berth:attached-to']).toBe(world.instanceId);

    await world.model.detachOutOfBand(detached);
    world.model.setTags(moving, { 'berth:host': 'host-b' });
    const fresh = world.model.addVolume({ az: AZ, size: 1, tags: TAGS('fresh') });
    const actions = (items: { name: string; action: string }[]) => items.map((i) => `${i.name}:${i.action}`).sort();
    const expected = ['detached:remount', 'fresh:mount', 'moving:release'];
    expect(actions(await reconciler.plan())).toEqual(expected);
    expect(actions(await missing.plan())).toEqual(expected);
    await step('repair pass', reconciler.pass());
    expect(world.model.volume(detached).attachment?.state).toBe('attached');
    expect(world.model.volume(fresh).tags).toMatchObject({ 'berth:attached-to': world.instanceId, 'berth:state': 'mounted' });
    expect(world.model.volume(moving).attachment).toBeUndefined();
    expect(await relabelled.list().then((l) => l.map((r) => r.name).sort())).toEqual(['detached', 'fresh', 'steady']);
  });

  it('a Mount racing a stray-detach of the same name cannot lose: the detach waits for the name\'s lock, then leaves the mounted volume alone', async () => {
    w = await ebsWorld();
    // Attached here, tagged to another host: the pass plans a detach; a container asks for the name meanwhile.
    const stray = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('shared', 'host-b'), attachedTo: { instanceId: w.instanceId, device: '/dev/xvdbz' } });
    await w.tree.bind(stray, GiB);
    const gate = () => {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      return { open, opened };
    };
    const surveyed = gate();
    const planNow = gate();
    const attached = gate();
    const mountNow = gate();
    // The pass pauses after reading EC2 (it saw the stray); the Mount pauses after its attach, holding the name's lock.
    const { manager, reconciler } = await host(w, (b) => ({
      ...b,
      async survey() {
        const s = await b.survey();
        surveyed.open();
        await planNow.opened;
        return s;
      },
      async attach(record, call) {
        const device = await b.attach(record, call);
        attached.open();
        await mountNow.opened;
        return device;
      },
    }));
    const passing = reconciler.pass();
    await step('the pass reading EC2', surveyed.opened);
    const mounting = manager.publish('shared', 'f'.repeat(64));
    await step('the Mount attaching', attached.opened);
    planNow.open();
    // Time for an unlocked detach to start.
    await sleep(500);
    expect(w.model.calls('DetachVolume')).toBe(0);
    mountNow.open();
    const mp = await step('the Mount', mounting);
    const plan = await step('the pass', passing);
    // The pass's view of the name waited for the Mount too: it plans to release what is now mounted, and cannot.
    expect(plan.map((p) => `${p.name}:${p.action}`)).toEqual(['shared:release']);
    expect(w.model.calls('DetachVolume')).toBe(0);
    expect(w.model.volume(stray).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(manager.snapshot().find((v) => v.name === 'shared')).toMatchObject({ mounted: true, refs: 1 });
    expect(await mountedAt(mp)).toBe(true);
    await writeFile(join(mp, 'f'), 'kept');
    expect(await readFile(join(mp, 'f'), 'utf8')).toBe('kept');
    // The Mount claimed it for this host: the next pass has nothing to do.
    expect(w.model.volume(stray).tags['berth:host']).toBe(HOST);
    expect(await reconciler.plan()).toEqual([]);
    await manager.unpublish('shared', 'f'.repeat(64));
  });

  it('a Mount whose caller has gone stops waiting for the attachment at once and leaves what EC2 accepted to the idle detach', async () => {
    w = await ebsWorld({ attachLatencyMs: 5_000, detachLatencyMs: 100 });
    // The attachment completes after 5 s; the caller goes at once: the Mount must end well before.
    const id = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('slow') });
    const { manager } = await host(w);
    const caller = new AbortController();
    const mounting = manager.publish('slow', 'f'.repeat(64), { signal: caller.signal }).catch((e: unknown) => e);
    for (let i = 0; i < 200 && w.model.calls('AttachVolume') === 0; i++) await sleep(20);
    expect(w.model.volume(id).attachment?.state).toBe('attaching');
    caller.abort(new Error('dockerd gave up'));
    const err = await step('the aborted Mount (stops waiting)', mounting, 10_000);
    expect((err as Error).message).toBe('dockerd gave up');
    // Nothing counted or mounted; the attachment EC2 accepted is not undone at once (no DetachVolume and
    // AttachVolume again on the account's shared bucket when the Mount comes back, docs/design.md §6): the idle detach ends it.
    expect(w.model.calls('DetachVolume')).toBe(0);
    expect(w.model.volume(id).attachment?.instanceId).toBe(w.instanceId);
    expect(manager.snapshot().find((v) => v.name === 'slow')).toMatchObject({ mounted: false, refs: 0 });
  });

  it('a Mount waiting for another running host to let go stops waiting when its caller goes, and changes nothing more', async () => {
    w = await ebsWorld();
    const other = w.model.addInstance({ az: AZ, tags: { 'berth:host': 'host-b' } });
    const id = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('held'), attachedTo: { instanceId: other, device: '/dev/xvdba' } });
    const { manager } = await host(w, undefined, { moveWaitMs: 60_000 });
    const caller = new AbortController();
    const mounting = manager.publish('held', 'f'.repeat(64), { signal: caller.signal }).catch((e: unknown) => e);
    for (let i = 0; i < 200 && w.model.calls('DescribeInstances') === 0; i++) await sleep(20);
    await sleep(100);
    caller.abort(new Error('dockerd gave up'));
    // The backend would wait up to moveWaitMs (60 s) for the agent there; the caller's going ends the wait.
    const err = await step('the aborted Mount (stops waiting for the other host)', mounting, 15_000);
    expect((err as Error).message).toBe('dockerd gave up');
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: other, state: 'attached' });
    expect(w.model.calls('DetachVolume')).toBe(0);
  });
});
