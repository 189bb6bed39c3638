import { afterEach, describe, expect, it } from 'vitest';
import { EC2_PORT_METHODS, type Ec2Port } from '../../../volume-plugin/backends/ebs/ec2-port.js';
import { DEVICE_NAMES, DeviceNames } from '../../../volume-plugin/backends/ebs/device-names.js';
import { Pacer } from '../../../volume-plugin/backends/ebs/pacer.js';
import { MicroBatch } from '../../../volume-plugin/backends/ebs/micro-batch.js';
import { AZ, ebsUnitWorld, GiB, type EbsUnitWorld } from '../../fakes/ebs.js';
import { MemoryScheduleStore } from '../../fakes/schedule-store.js';

/**
 * What berth adds above the EC2 port (pacing, batching, device names, attachment waits), run over
 * the EC2 model on the port: the model's token buckets are EC2's rules, so pacing is checked
 * against them, scaled down in time (same burst-then-refill shape) to run in milliseconds.
 */
let w: EbsUnitWorld;
afterEach(() => w?.cleanup());

/** The port, recording the signal each call carried. */
function recording(port: Ec2Port): { port: Ec2Port; signals: { method: string; signal: AbortSignal }[] } {
  const signals: { method: string; signal: AbortSignal }[] = [];
  const out = Object.fromEntries(
    EC2_PORT_METHODS.map((method) => [
      method,
      (input: unknown, signal: AbortSignal) => {
        signals.push({ method, signal });
        return (port[method] as (i: unknown, s: AbortSignal) => Promise<unknown>)(input, signal);
      },
    ]),
  ) as unknown as Ec2Port;
  return { port: out, signals };
}

describe('EC2 facade over the port: mutations paced at EC2\'s bucket', () => {
  it('30 attaches at once: the burst goes at once, the rest at the paced rate, none throttled', async () => {
    // EC2's mutating bucket (50, 5/s) scaled: 10, refilling 50/s; berth's pacer one token under it, as in production.
    w = ebsUnitWorld({ buckets: { volumeMutating: { capacity: 10, refillPerSecond: 50 } } });
    const ids = Array.from({ length: 30 }, () => w.model.addVolume({ az: AZ, size: 1 }));
    const ec2 = w.facade({ maxConcurrentAttachments: 30, timing: { ...w.facade().timing, mutationBurst: 9, mutationsPerSecond: 50 } });
    const t0 = Date.now();
    await Promise.all(ids.map((id) => ec2.attach(id)));
    for (const id of ids) expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(w.model.calls('AttachVolume')).toBe(30);
    expect(w.model.throttledCalls()).toBe(0);
    // 21 past the burst at 50/s: at least 0.4 s.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
  });

  it('without the pacer the same attaches are throttled by the model (the check above can fail)', async () => {
    w = ebsUnitWorld({ buckets: { volumeMutating: { capacity: 10, refillPerSecond: 50 } } });
    const ids = Array.from({ length: 30 }, () => w.model.addVolume({ az: AZ, size: 1 }));
    const results = await Promise.allSettled(ids.map((id, i) => w.port.attachVolume({ VolumeId: id, InstanceId: w.instanceId, Device: DEVICE_NAMES[i]! }, new AbortController().signal)));
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r.reason as Error).name)).toContain('RequestLimitExceeded');
  });

  it('a caller that goes while its attach waits for a slot leaves at once with its own error and never calls AttachVolume', async () => {
    w = ebsUnitWorld({ attachLatencyMs: 200 });
    const [ahead, queued] = [w.model.addVolume({ az: AZ, size: 1 }), w.model.addVolume({ az: AZ, size: 1 })];
    const ec2 = w.facade({ maxConcurrentAttachments: 1 });
    const first = ec2.attach(ahead);
    const gone = new AbortController();
    const t0 = Date.now();
    const waiting = ec2.attach(queued, undefined, gone.signal);
    setTimeout(() => gone.abort(new Error('Mount queued: the caller has gone')), 50);
    await expect(waiting).rejects.toThrow('the caller has gone');
    expect(Date.now() - t0).toBeLessThan(150); // not after the 200 ms attach ahead of it
    await first;
    expect(w.model.volume(queued).attachment).toBeUndefined();
    expect(w.model.calls('AttachVolume')).toBe(1);
  });
});

describe('EC2 facade over the port: every call carries the caller\'s signal', () => {
  it('CreateVolume, CreateTags, AttachVolume, DetachVolume, DeleteVolume, DeleteTags carry the signal of the call they serve', async () => {
    w = ebsUnitWorld();
    const rec = recording(w.port);
    const backend = w.backend({ ec2: w.facade({ ec2: rec.port }) });
    const caller = new AbortController().signal;
    const options = { sizeBytes: GiB, fs: 'ext4' as const, onRemove: 'delete' as const };
    const record = await backend.create('v', options, { signal: caller });
    await backend.attach(record, { signal: caller });
    await backend.remove({ ...record, options }, { signal: caller });
    const mutations = rec.signals.filter((s) => s.method !== 'describeVolumes' && s.method !== 'describeInstances');
    expect(mutations.map((s) => s.method)).toEqual(['createVolume', 'attachVolume', 'detachVolume', 'deleteVolume']);
    for (const s of mutations) expect(s.signal).toBe(caller);
    // Lookups of one caller (not batched with others) carry its signal too.
    const retained = await backend.create('r', { ...options, onRemove: 'retain' }, { signal: caller });
    rec.signals.length = 0;
    await backend.remove(retained, { signal: caller });
    expect(rec.signals.filter((s) => s.method === 'deleteTags').map((s) => s.signal)).toEqual([caller]);
  });

  it('a lookup batched for several callers is not cut by one of them going: the others get their answer', async () => {
    let fetches = 0;
    const batch = new MicroBatch<string>(20, async (keys) => {
      fetches++;
      await new Promise((r) => setTimeout(r, 30));
      return new Map(keys.map((k) => [k, [`answer ${k}`]]));
    });
    const gone = new AbortController();
    const left = batch.get('a', gone.signal);
    const stays = batch.get('b');
    gone.abort(new Error('caller gone'));
    await expect(left).rejects.toThrow('caller gone');
    expect(await stays).toEqual(['answer b']);
    expect(fetches).toBe(1);
  });
});

describe('device names and the pacer on their own', () => {
  it('rotation skips names in use and names reserved by attaches in flight, and a name given back is not reused at once', async () => {
    const names = new DeviceNames('i-1', async () => [DEVICE_NAMES[0]!]);
    await names.seed();
    const a = names.take();
    const b = names.take();
    expect([a, b]).toEqual([DEVICE_NAMES[1], DEVICE_NAMES[2]]);
    names.release(a);
    expect(names.take()).toBe(DEVICE_NAMES[3]);
    names.markInUse(DEVICE_NAMES[4]!);
    expect(names.take()).toBe(DEVICE_NAMES[5]);
  });

  it('a failed seed is tried again by the next attach', async () => {
    let calls = 0;
    const names = new DeviceNames('i-1', async () => {
      if (++calls === 1) throw new Error('EC2 unavailable');
      return [];
    });
    await expect(names.seed()).rejects.toThrow('EC2 unavailable');
    await names.seed();
    expect(calls).toBe(2);
  });

  it('the pacer lets the burst through at once, then the rate; a caller that goes leaves the queue without a token', async () => {
    const pacer = new Pacer({ burst: 3, perSecond: 100, backoff: 4, recovery: 0.8, maxGapMs: 1_000 });
    const t0 = Date.now();
    const send = () => pacer.take().then(() => pacer.succeeded());
    await Promise.all([send(), send(), send()]);
    expect(Date.now() - t0).toBeLessThan(20);
    const gone = new AbortController();
    gone.abort(new Error('gone'));
    await expect(pacer.take(gone.signal)).rejects.toThrow('gone');
    await send();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(8);
  });
});

describe("EC2 facade over the port: the account's shared schedule (fleet-schedule.ts)", () => {
  it('two hosts sharing one schedule take their turns from it: one reservation each, every attach through, none refused', async () => {
    w = ebsUnitWorld();
    const store = new MemoryScheduleStore({ latencyScale: 0 });
    const other = w.model.addInstance({ az: AZ });
    const mine = Array.from({ length: 4 }, () => w.model.addVolume({ az: AZ, size: 1 }));
    const theirs = Array.from({ length: 4 }, () => w.model.addVolume({ az: AZ, size: 1 }));
    const a = w.facade({ scheduleStore: store });
    const b = w.facade({ scheduleStore: store, instanceId: other });
    await Promise.all([...mine.map((id) => a.attach(id)), ...theirs.map((id) => b.attach(id))]);
    expect(w.model.calls('AttachVolume')).toBe(8);
    expect(w.model.throttledCalls()).toBe(0);
    expect(store.counts.writes - store.counts.lostRaces).toBe(2);
    expect(JSON.parse(store.current!.body)).toMatchObject({ v: 1, buckets: { mutating: { next: 8 } } });
  });

  it("an attach EC2 refuses cuts the account's rate in the schedule, and goes through with a new turn once EC2 accepts again", async () => {
    w = ebsUnitWorld();
    const store = new MemoryScheduleStore({ latencyScale: 0 });
    const [first, id] = [w.model.addVolume({ az: AZ, size: 1 }), w.model.addVolume({ az: AZ, size: 1 })];
    const ec2 = w.facade({ scheduleStore: store });
    await ec2.attach(first);
    const refusedBefore = w.model.throttledCalls();
    w.model.faults.throttleAll = true;
    setTimeout(() => (w.model.faults.throttleAll = false), 100);
    await ec2.attach(id);
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(w.model.throttledCalls()).toBeGreaterThan(refusedBefore);
    const doc = JSON.parse(store.current!.body) as { buckets: { mutating: { rate: number; cutAt: number } } };
    expect(doc.buckets.mutating.rate).toBeLessThan(5);
    expect(doc.buckets.mutating.cutAt).toBeGreaterThan(0);
    // Reads are congested for this agent now (its own refusal): they would take tickets too.
    expect(await ec2.schedule!.congested('mutating')).toBe(true);
  });

  it('with the store unreachable the facade paces itself as without one, and the attaches go through', async () => {
    w = ebsUnitWorld();
    const store = new MemoryScheduleStore({ latencyScale: 0 });
    store.unavailable = true;
    const ids = Array.from({ length: 3 }, () => w.model.addVolume({ az: AZ, size: 1 }));
    const ec2 = w.facade({ scheduleStore: store });
    await Promise.all(ids.map((id) => ec2.attach(id)));
    expect(w.model.calls('AttachVolume')).toBe(3);
    expect(ec2.schedule!.shared).toBe(false);
  });
});
