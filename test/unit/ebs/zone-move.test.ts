import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { tagKeys } from '../../../lib/node-contract.js';
import { EC2_PORT_METHODS, type Ec2Port } from '../../../volume-plugin/backends/ebs/ec2-port.js';
import { moveMetrics } from '../../../volume-plugin/backends/ebs/move-metrics.js';
import { createZoneMover, liveVolumes, parseJournal, type MoveMetrics } from '../../../volume-plugin/backends/ebs/zone-move.js';
import { Ec2Model } from '../../aws/ec2-model.js';

/**
 * Zone moves (issue 22) over the EC2 model on the EC2 port: snapshot states, ClientTokens, tags as
 * the journal, and a crash after every EC2 call of a move, resumed by a fresh mover (another host,
 * or the agent restarted: no state but EC2's). Milliseconds, no root.
 */
const k = tagKeys();
const FROM = 'eu-west-1a';
const TO = 'eu-west-1b';
const KMS = 'arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555';
const NODE_TAGS = { [k.volume]: 'c1-db1', [k.host]: 'h1', [k.cluster]: 'c1', [k.environment]: 'prod', [k.managedBy]: 'berth', Name: 'c1-db1', team: 'payments' };

let model: Ec2Model;
afterEach(() => model?.dispose());

class Crash extends Error {}

function world() {
  model = new Ec2Model({ throttling: false, snapshotLatencyMs: 6, createLatencyMs: 3 });
  const source = model.addVolume({ az: FROM, size: 100, type: 'gp3', iops: 4000, throughput: 250, encrypted: true, kmsKeyId: KMS, tags: NODE_TAGS });
  model.writeContent(source, 'pgdata as of the stop');
  return source;
}

/** The live volumes of a name as a reader (the EBS backend's lookup) sees them, straight from EC2. */
async function live(name = 'c1-db1'): Promise<string[]> {
  const port = model.port();
  const signal = new AbortController().signal;
  const named = (await port.describeVolumes({ Filters: [{ Name: `tag:${k.volume}`, Values: [name] }] }, signal)).Volumes ?? [];
  const describe = async (id: string) => (await port.describeVolumes({ VolumeIds: [id] }, signal)).Volumes?.[0];
  return (await liveVolumes(named, k, describe)).map((v) => v.VolumeId!);
}

/**
 * The port a move runs on: it checks before every call that exactly one volume is live (the
 * invariant at every instant a reader can see), and "kills the process" after call number `crashAfter`
 * has reached EC2 and been answered: that call's effect stays, the mover never learns its answer, and
 * every later call fails.
 */
function hostPort(crashAfter = Infinity, counter = { calls: 0 }): Ec2Port {
  const inner = model.port();
  let dead = false;
  return Object.fromEntries(
    EC2_PORT_METHODS.map((method) => [
      method,
      async (input: unknown, signal: AbortSignal) => {
        if (dead) throw new Crash('the process is gone');
        expect(await live()).toHaveLength(1);
        const out = await (inner[method] as (i: unknown, s: AbortSignal) => Promise<unknown>)(input, signal);
        counter.calls += 1;
        if (counter.calls >= crashAfter) {
          dead = true;
          throw new Crash(`killed after call ${counter.calls} (${method})`);
        }
        return out;
      },
    ]),
  ) as unknown as Ec2Port;
}

const mover = (ec2: Ec2Port, metrics?: MoveMetrics) => createZoneMover({ ec2, keys: k, cluster: 'c1', environment: 'prod', zones: model.availabilityZones, pollMs: 2, settleMs: 2, metrics });

/** What must hold once a move finished, however often it was killed on the way. */
async function expectMoved(source: string) {
  await model.settled();
  const ids = await live();
  expect(ids).toHaveLength(1);
  const fresh = model.volume(ids[0]!);
  expect(fresh.volumeId).not.toBe(source);
  expect(fresh).toMatchObject({ az: TO, size: 100, type: 'gp3', iops: 4000, throughput: 250, encrypted: true, kmsKeyId: KMS, state: 'available' });
  expect(fresh.tags).toMatchObject({ [k.volume]: 'c1-db1', [k.host]: 'h1', [k.cluster]: 'c1', [k.environment]: 'prod', team: 'payments', Name: 'c1-db1' });
  expect(model.content(fresh.volumeId)).toBe('pgdata as of the stop');
  // The old volume: kept (never deleted), retired with the date, its name gone, its data untouched.
  expect(model.hasVolume(source)).toBe(true);
  const old = model.volume(source);
  expect(old.tags[k.retired]).toMatch(/^\d{4}-\d\d-\d\dT/);
  expect(old.tags[k.retainUntil]).toMatch(/^\d{4}-\d\d-\d\d$/);
  expect(old.tags[k.retiredVolume]).toBe('c1-db1');
  expect(old.tags[k.volume]).toBeUndefined();
  expect(parseJournal(old.tags[k.move])?.step).toBe('done');
  expect(model.content(source)).toBe('pgdata as of the stop');
  // Exactly one snapshot and one new volume, however many times the steps ran.
  expect(model.snapshotList()).toHaveLength(1);
  expect(model.volumes()).toHaveLength(2);
  expect(model.snapshotList()[0]).toMatchObject({ volumeId: source, state: 'completed', encrypted: true, kmsKeyId: KMS });
}

describe('zone move (unit, EC2 model)', () => {
  it('snapshots, restores in the target zone with the same size, type, IOPS, throughput, encryption, KMS key and tags, and retires the old volume', async () => {
    const source = world();
    const lines: string[] = [];
    const result = await createZoneMover({ ec2: hostPort(), keys: k, zones: model.availabilityZones, pollMs: 2, settleMs: 2, progress: (l) => lines.push(l) }).move({ name: 'c1-db1', zone: TO });
    expect(result).toMatchObject({ name: 'c1-db1', from: { volumeId: source, zone: FROM }, to: { zone: TO }, already: false });
    await expectMoved(source);
    expect(lines.join('\n')).toMatch(/step snapshot[\s\S]*step restore[\s\S]*step cutover[\s\S]*step done/);
    // Run again: already there, nothing changed.
    const again = await mover(hostPort()).move({ name: 'c1-db1', zone: TO });
    expect(again).toMatchObject({ already: true, to: { volumeId: result.to.volumeId } });
    await expectMoved(source);
  });

  it('killed after any EC2 call, a fresh mover (another host, a restarted agent) resumes it: one live volume at every instant, data intact, old retired, never deleted', async () => {
    world();
    const clean = { calls: 0 };
    await mover(hostPort(Infinity, clean)).move({ name: 'c1-db1', zone: TO });
    model.dispose();
    expect(clean.calls).toBeGreaterThan(10);
    for (let crashAfter = 1; crashAfter <= clean.calls; crashAfter++) {
      const source = world();
      const first = mover(hostPort(crashAfter)).move({ name: 'c1-db1', zone: TO });
      await first.then(
        () => undefined,
        (err: unknown) => expect(err, `crash point ${crashAfter}`).toBeInstanceOf(Crash),
      );
      expect(await live(), `crash point ${crashAfter}`).toHaveLength(1);
      await mover(hostPort()).move({ name: 'c1-db1', zone: TO });
      await expectMoved(source);
      model.dispose();
    }
  });

  it('killed before the cut-over, the move can be rolled back: the source stays the node, the new volume is retired, nothing deleted', async () => {
    world();
    const clean = { calls: 0 };
    const probe = mover(hostPort(Infinity, clean));
    await probe.move({ name: 'c1-db1', zone: TO });
    model.dispose();
    let rolledBack = 0;
    for (let crashAfter = 1; crashAfter <= clean.calls; crashAfter++) {
      const source = world();
      await mover(hostPort(crashAfter)).move({ name: 'c1-db1', zone: TO }).catch(() => undefined);
      const status = await mover(hostPort()).status('c1-db1');
      if (!status || ['cutover', 'retire', 'done'].includes(status.journal.step)) {
        if (status) await expect(mover(hostPort()).abort('c1-db1')).rejects.toThrow(/past its cut-over/);
        model.dispose();
        continue;
      }
      await mover(hostPort()).abort('c1-db1');
      await model.settled();
      rolledBack += 1;
      expect(await live()).toEqual([source]);
      expect(model.volume(source).tags[k.move]).toBeUndefined();
      expect(model.volume(source).tags).toMatchObject(NODE_TAGS);
      for (const v of model.volumes().filter((x) => x.volumeId !== source)) expect(v.tags[k.retired]).toBeDefined();
      // A new move afterwards works.
      await mover(hostPort()).move({ name: 'c1-db1', zone: TO });
      expect(model.content((await live())[0]!)).toBe('pgdata as of the stop');
      model.dispose();
    }
    expect(rolledBack).toBeGreaterThan(3);
  });

  it('refuses an attached volume, an unknown zone and a second move elsewhere, with nothing changed', async () => {
    model = new Ec2Model({ throttling: false });
    const inst = model.addInstance({ az: FROM });
    const attached = model.addVolume({ az: FROM, size: 10, tags: NODE_TAGS, attachedTo: { instanceId: inst, device: '/dev/xvdba' } });
    await expect(mover(model.port()).move({ name: 'c1-db1', zone: TO })).rejects.toThrow(/attached to i-.*cleanly detached volume/);
    expect(model.volume(attached).tags[k.move]).toBeUndefined();
    expect(model.calls('CreateSnapshot')).toBe(0);
    await expect(mover(model.port()).move({ name: 'c1-db1', zone: 'eu-west-1z' })).rejects.toThrow(/zone eu-west-1z is not one of/);
    await expect(mover(model.port()).move({ name: 'nope', zone: TO })).rejects.toThrow(/no EBS volume is tagged/);
  });

  it('a second move to another zone is refused while one is under way; a failed snapshot stops the move before anything else, and it can be aborted', async () => {
    const source = world();
    model.faults.failingSnapshots.add(source);
    const registry = new Registry();
    const m = moveMetrics(registry);
    await expect(mover(model.port(), m).move({ name: 'c1-db1', zone: TO })).rejects.toThrow(/snapshot snap-\w+ failed at EC2/);
    expect(await live()).toEqual([source]);
    expect(parseJournal(model.volume(source).tags[k.move])?.step).toBe('snapshot');
    await expect(mover(model.port()).move({ name: 'c1-db1', zone: 'eu-west-1c' })).rejects.toThrow(/already moving to zone eu-west-1b \(step snapshot\)/);
    const text = await registry.metrics();
    expect(text).toMatch(/berth_volume_move_failures_total\{step="snapshot"\} 1/);
    expect(text).toMatch(/berth_volume_moves_in_progress 0/);
    await mover(model.port()).abort('c1-db1');
    expect(model.volume(source).tags).toEqual(NODE_TAGS);
    expect(model.volumes()).toHaveLength(1);
  });

  it('from a zone that is gone: the latest completed snapshot and its age are shown, and a restore happens only from the snapshot the operator was shown', async () => {
    let t = Date.parse('2026-12-06T12:00:00Z');
    model = new Ec2Model({ throttling: false, now: () => t, createLatencyMs: 2 });
    const source = model.addVolume({ az: FROM, size: 20, type: 'gp3', tags: NODE_TAGS });
    model.addSnapshot({ size: 20, volumeId: source, startTime: new Date(t - 5 * 3_600_000), content: 'five hours ago' });
    const latest = model.addSnapshot({ size: 20, volumeId: source, startTime: new Date(t - 3 * 3_600_000), content: 'three hours ago' });
    const ec2 = createZoneMover({ ec2: model.port(), keys: k, pollMs: 2, settleMs: 2, now: () => t });
    const plan = await ec2.planFromSnapshot('c1-db1');
    expect(plan).toMatchObject({ volumeId: source, zone: FROM, snapshotId: latest, ageMs: 3 * 3_600_000 });
    expect(model.calls('CreateTags') + model.calls('CreateVolume') + model.calls('CreateSnapshot')).toBe(0);
    // A newer snapshot appeared since the operator looked: refused.
    t += 60_000;
    const newer = model.addSnapshot({ size: 20, volumeId: source, startTime: new Date(t), content: 'now' });
    await expect(ec2.move({ name: 'c1-db1', zone: TO, fromSnapshot: latest })).rejects.toThrow(new RegExp(`now ${newer}, not ${latest}`));
    expect(model.volume(source).tags[k.move]).toBeUndefined();
    const result = await ec2.move({ name: 'c1-db1', zone: TO, fromSnapshot: newer });
    expect(result.snapshotId).toBe(newer);
    expect(model.calls('CreateSnapshot')).toBe(0);
    await model.settled();
    expect(model.content(result.to.volumeId)).toBe('now');
    expect(await live()).toEqual([result.to.volumeId]);
    expect(model.volume(source).tags[k.retired]).toBeDefined();
  });

  it('exports move progress in the registry: in progress, the step, failures', async () => {
    world();
    const registry = new Registry();
    const m = moveMetrics(registry);
    const seen: string[] = [];
    const spy: MoveMetrics = {
      begin() {
        const r = m.begin();
        return { ...r, step: (s) => (r.step(s), seen.push(s)) };
      },
    };
    await mover(hostPort(), spy).move({ name: 'c1-db1', zone: TO });
    expect(seen).toEqual(expect.arrayContaining(['snapshot', 'wait-snapshot', 'restore', 'wait-volume', 'cutover', 'retire', 'done']));
    const text = await registry.metrics();
    expect(text).toMatch(/berth_volume_moves_in_progress 0/);
    expect(text).toMatch(/berth_volume_move_step\{step="done"\} 0/);
  });
});
