import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { isBerthError } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { CLIENT_TOKENS_FILE } from '../../../volume-plugin/backends/ebs/ebs-backend.js';
import { DEFAULT_EC2_TIMING } from '../../../volume-plugin/backends/ebs/ec2-timing.js';
import { DEADLINES } from '../../../volume-plugin/budgets.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AZ, ebsUnitWorld, GiB, HOST, UNIT_TIMING, type EbsUnitWorld } from '../../fakes/ebs.js';
import { FakeNvme } from '../../fakes/nvme.js';

/**
 * The EBS backend's rules over the EC2 model on the EC2 port, an in-memory NVMe resolver and the
 * in-memory filesystem, under the real volume service: milliseconds, no root. The same rules run
 * against real loop devices and the SDK in test/ebs-backend.test.ts (the integration layer).
 */
const OWNED = (name: string, host = HOST) => ({ 'berth:volume': name, 'berth:host': host, 'berth:managed-by': 'berth' });
const C1 = 'c1';
const C2 = 'c2';

let w: EbsUnitWorld;
afterEach(() => w?.cleanup());

const volumeNamed = (name: string) => w.model.volumes().find((v) => v.tags['berth:volume'] === name)!;

describe('EBS backend (unit): create', () => {
  it('makes one tagged, encrypted volume per name, however often Create is called; other options are refused', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    await service.create('pg', { size: '8GiB', type: 'gp3', iops: '4000' });
    await service.create('pg', { size: '8GiB' });
    await service.create('pg', {});
    const vols = w.model.volumes();
    expect(vols).toHaveLength(1);
    expect(vols[0]).toMatchObject({ az: AZ, size: 8, type: 'gp3', iops: 4000, encrypted: true, tags: OWNED('pg') });
    await expect(service.create('pg', { size: '3GiB' })).rejects.toThrow(/already exists with other options: size \(asked 3GiB, volume has 8GiB\)/);
    expect(w.model.calls('CreateVolume')).toBe(1);
  });

  it('two Creates racing (or one retried) send one ClientToken: one volume', async () => {
    w = ebsUnitWorld();
    const options = { sizeBytes: GiB, fs: 'ext4' as const, onRemove: 'retain' as const };
    const [r1, r2] = await Promise.all([w.backend().create('race', options), w.backend().create('race', options)]);
    expect(r1.id).toBe(r2.id);
    expect(w.model.volumes()).toHaveLength(1);
  });

  it('after onRemove=delete a Create of the name makes a new volume, and a restarted agent needs no rediscovery: the token generation is kept in the state directory', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    await service.create('tmp', { onRemove: 'delete' });
    const first = volumeNamed('tmp').volumeId;
    await service.remove('tmp');
    await service.create('tmp', { onRemove: 'delete' });
    const second = volumeNamed('tmp');
    expect(second.volumeId).not.toBe(first);
    await service.remove('tmp');
    expect(existsSync(join(w.stateDir, CLIENT_TOKENS_FILE))).toBe(true);

    // The agent restarts: its first CreateVolume uses an unspent token. Kept in memory only, the
    // restarted agent sent both spent tokens first and waited unknownAfterCreateMs on each.
    w.model.resetCalls();
    const restarted = await w.service(w.backend());
    const t0 = Date.now();
    await restarted.create('tmp', { onRemove: 'delete' });
    expect(w.model.calls('CreateVolume')).toBe(1);
    expect(Date.now() - t0).toBeLessThan(UNIT_TIMING.unknownAfterCreateMs!);
    expect(w.model.volumes()).toMatchObject([{ state: 'available', tags: OWNED('tmp') }]);
    expect(w.model.volumes()[0]!.volumeId).not.toBe(second.volumeId);
  });

  it('without the kept generations (a lost state directory) EC2\'s answers still tell the spent tokens apart: a new volume, never the deleted one', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend({ stateDir: undefined }));
    await service.create('tmp', { onRemove: 'delete' });
    const first = volumeNamed('tmp').volumeId;
    await service.remove('tmp');
    const restarted = await w.service(w.backend({ stateDir: undefined }));
    await restarted.create('tmp', { onRemove: 'delete' });
    expect(w.model.volumes()).toHaveLength(1);
    expect(w.model.volumes()[0]!.volumeId).not.toBe(first);
    expect(w.model.calls('CreateVolume')).toBe(3); // the spent token, replayed; then a new one
  });

  it('after EC2 failed a volume and berth deleted it, the same Create makes a new volume once the key works', async () => {
    w = ebsUnitWorld();
    w.model.faults.unknownKmsKeys.add('alias/late');
    const service = await w.service(w.backend());
    await expect(service.create('enc', { kmsKeyId: 'alias/late' })).rejects.toThrow(/berth deleted it/);
    w.model.faults.unknownKmsKeys.delete('alias/late');
    await service.create('enc', { kmsKeyId: 'alias/late' });
    expect(w.model.volumes()).toMatchObject([{ state: 'available', encrypted: true, tags: { 'berth:volume': 'enc' } }]);
    expect(w.model.calls('CreateVolume')).toBe(2);
  });

  it("Get of a name that is not berth's costs one DescribeVolumes, not one per call; a Create of that name still creates it", async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    w.model.resetCalls();
    // dockerd asks every driver about a volume name it does not know (moby volume/service/store.go, getVolume).
    for (let i = 0; i < 5; i++) await expect(service.find('someone-elses')).rejects.toThrow(/no volume named someone-elses/);
    expect(w.model.calls('DescribeVolumes')).toBe(1);
    await service.create('someone-elses', {});
    expect(w.model.calls('CreateVolume')).toBe(1);
  });
});

describe('EBS backend (unit): mount and unmount', () => {
  it('mounts the verified device (formatted once), leaves it attached after Unmount; a later Mount makes one DescribeVolumes and no AttachVolume', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    await service.create('pg', {});
    const mp = await service.publish('pg', C1);
    const id = volumeNamed('pg').volumeId;
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(w.host.mounts.get(mp)).toBe(FakeNvme.pathOf(id));
    await service.unpublish('pg', C1);
    expect(w.model.volume(id).attachment?.state).toBe('attached');
    w.model.resetCalls();
    await service.publish('pg', C2);
    expect([w.model.calls('DescribeVolumes'), w.model.calls()]).toEqual([1, 1]);
    expect(w.fs.faults.calls('mkfs')).toBe(1);
    await service.unpublish('pg', C2);
  });

  it('detaches a volume idle for the configured period; a later Mount attaches it again', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend({ idleDetachMs: 50 }));
    await service.create('idle', {});
    await service.publish('idle', C1);
    const id = volumeNamed('idle').volumeId;
    await service.unpublish('idle', C1);
    expect(w.model.volume(id).attachment).toBeDefined();
    for (let i = 0; i < 100 && w.model.volume(id).attachment; i++) await sleep(10);
    expect(w.model.volume(id).attachment).toBeUndefined();
    await service.publish('idle', C2);
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
  });

  it('an attachment stuck in "attaching" is detached and tried again', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    await service.create('stuck', {});
    const id = volumeNamed('stuck').volumeId;
    w.model.faults.stuckAttaching.add(id);
    // The wedge is EC2's, and transient: once berth detached, the next attachment goes through.
    const unwedge = setInterval(() => w.model.calls('DetachVolume') > 0 && w.model.faults.stuckAttaching.delete(id), 2);
    await service.publish('stuck', C1).finally(() => clearInterval(unwedge));
    expect([w.model.calls('AttachVolume'), w.model.calls('DetachVolume')]).toEqual([2, 1]);
  });

  it('a device that never appears fails the Mount, and the volume is left detached', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    await service.create('ghost', {});
    const id = volumeNamed('ghost').volumeId;
    w.model.onAttached = () => undefined; // EC2 says attached; no namespace shows
    await expect(service.publish('ghost', C1)).rejects.toThrow(/no block device with serial vol[0-9a-f]{17} appeared/);
    await w.model.settled();
    expect(w.model.volume(id).attachment).toBeUndefined();
    expect(service.describe('ghost')).toMatchObject({ mounted: false, consumers: 0 });
  });

  it('a device holding another filesystem is refused, never formatted, and detached again', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    await service.create('foreign', {});
    const id = volumeNamed('foreign').volumeId;
    w.host.formatted.set(FakeNvme.pathOf(id), 'xfs');
    await expect(service.publish('foreign', C1)).rejects.toThrow(/holds a xfs filesystem/);
    expect(w.host.formatted.get(FakeNvme.pathOf(id))).toBe('xfs');
    expect(w.fs.faults.calls('mkfs')).toBe(0);
    await w.model.settled();
    expect(w.model.volume(id).attachment).toBeUndefined();
  });

  it('a device name EC2 reports in use is skipped from then on', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    await service.create('first', {});
    await service.publish('first', C1);
    const firstDevice = volumeNamed('first').attachment!.device;
    // Someone attaches a volume at the next name in berth's rotation behind its back.
    const next = `/dev/xvdb${String.fromCharCode(firstDevice.charCodeAt(firstDevice.length - 1) + 1)}`;
    const intruder = w.model.addVolume({ az: AZ, size: 1 });
    await w.port.attachVolume({ VolumeId: intruder, InstanceId: w.instanceId, Device: next }, new AbortController().signal);
    await service.create('second', {});
    await service.publish('second', C2);
    expect(volumeNamed('second').attachment).toMatchObject({ state: 'attached' });
    expect(volumeNamed('second').attachment!.device).not.toBe(next);
    expect(w.model.calls('AttachVolume')).toBe(4); // first, intruder, refused, accepted
  });

  it('two volumes with one name: an error naming both, no attach; a volume in another zone: a clear error, no attach', async () => {
    w = ebsUnitWorld();
    const a = w.model.addVolume({ az: AZ, size: 1, tags: OWNED('twin') });
    const b = w.model.addVolume({ az: AZ, size: 1, tags: OWNED('twin') });
    w.model.addVolume({ az: 'eu-west-1b', size: 1, tags: OWNED('far') });
    const service = await w.service(w.backend());
    const err = (await service.publish('twin', C1).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/2 EBS volumes are tagged berth:volume=twin/);
    expect(err.message).toContain(a);
    expect(err.message).toContain(b);
    await expect(service.publish('far', C1)).rejects.toThrow(/is in eu-west-1b, this host in eu-west-1a; EBS volumes cannot attach across zones/);
    expect(w.model.calls('AttachVolume')).toBe(0);
  });

  it('a volume attached to a stopped instance is moved here; DetachVolume names that instance', async () => {
    w = ebsUnitWorld({ requireDetachInstanceId: true });
    const old = w.model.addInstance({ az: AZ, state: 'stopped' });
    const id = w.model.addVolume({ az: AZ, size: 1, tags: OWNED('moved'), attachedTo: { instanceId: old, device: '/dev/xvdba' } });
    const service = await w.service(w.backend());
    await service.publish('moved', C1);
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(w.model.inputs('DetachVolume')).toEqual([{ VolumeId: id, InstanceId: old }]);
  });

  it('a volume on a running instance of another host is claimed by tag, never force-detached: fails clearly, then mounts once that host lets go', async () => {
    w = ebsUnitWorld();
    const other = w.model.addInstance({ az: AZ, tags: { 'berth:host': 'host-b' } });
    const id = w.model.addVolume({ az: AZ, size: 1, tags: OWNED('claimed', 'host-b'), attachedTo: { instanceId: other, device: '/dev/xvdba' } });
    const service = await w.service(w.backend({ moveWaitMs: 100 }));
    await expect(service.publish('claimed', C1)).rejects.toThrow(/attached to running instance i-[0-9a-f]+ \(host host-b\); it is now tagged to this host, but berth there did not release it within 0.1 s.*never force-detaches/);
    expect(w.model.volume(id).attachment?.instanceId).toBe(other);
    expect(w.model.volume(id).tags['berth:host']).toBe(HOST);
    expect(w.model.calls('DetachVolume')).toBe(0);

    const patient = await w.service(w.backend({ moveWaitMs: 2_000 }));
    // What berth on host-b does once the tag names this host.
    setTimeout(() => void w.port.detachVolume({ VolumeId: id }, new AbortController().signal), 50);
    await patient.publish('claimed', C2);
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(w.model.inputs('DetachVolume')).toEqual([{ VolumeId: id }]); // host-b's, none of berth's here
  });

  it('an agent killed between AttachVolume and mount: the restarted agent uses the attachment and formats nothing twice', async () => {
    w = ebsUnitWorld();
    const first = await w.service(w.backend());
    await first.create('cut', {});
    await first.publish('cut', C1);
    await first.unpublish('cut', C1);
    await first.releaseIfUnused('cut', 'test: detach');
    const id = volumeNamed('cut').volumeId;
    expect(w.model.volume(id).attachment).toBeUndefined();
    const dying = w.backend();
    await dying.attach((await dying.find('cut'))!);
    const attaches = w.model.calls('AttachVolume');
    const restarted = await w.service(w.backend());
    await restarted.publish('cut', C2);
    expect(w.model.calls('AttachVolume')).toBe(attaches);
    expect(w.fs.faults.calls('mkfs')).toBe(1);
  });
});

describe('EBS backend (unit): remove', () => {
  it("on a host that does not own the volume: forgotten here only, the owner's tags and attachment kept; onRemove=delete refused with nothing changed", async () => {
    w = ebsUnitWorld();
    const other = w.model.addInstance({ az: AZ, tags: { 'berth:host': 'host-b' } });
    const ownerTags = { ...OWNED('theirs', 'host-b'), 'berth:attached-to': other, 'berth:state': 'mounted' };
    const id = w.model.addVolume({ az: AZ, size: 1, tags: ownerTags, attachedTo: { instanceId: other, device: '/dev/xvdba' } });
    const service = await w.service(w.backend());
    await service.create('theirs', {});
    w.model.resetCalls();
    await service.remove('theirs');
    expect(w.model.volume(id).tags).toEqual(ownerTags);
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: other, state: 'attached' });
    for (const c of ['CreateTags', 'DeleteTags', 'DetachVolume', 'DeleteVolume']) expect(w.model.calls(c)).toBe(0);

    const idle = w.model.addVolume({ az: AZ, size: 1, tags: { ...OWNED('theirs-too', 'host-b'), 'berth:options': JSON.stringify({ sizeBytes: GiB, fs: 'ext4', onRemove: 'delete' }) } });
    await service.create('theirs-too', {});
    await expect(service.remove('theirs-too')).rejects.toThrow(/belongs to host host-b \(berth:host\), not this host \(host-a\); berth deletes a volume only on its own host/);
    expect(w.model.volume(idle).tags['berth:host']).toBe('host-b');
  });

  it('retain (the default): detached and untagged from this host, data kept; a later Create adopts it', async () => {
    w = ebsUnitWorld();
    const service = await w.service(w.backend());
    await service.create('kept', {});
    await service.publish('kept', C1);
    await service.unpublish('kept', C1);
    const id = volumeNamed('kept').volumeId;
    await service.remove('kept');
    expect(w.model.volume(id).attachment).toBeUndefined();
    expect(w.model.volume(id).tags['berth:host']).toBeUndefined();
    await service.create('kept', {});
    expect(w.model.volume(id).tags['berth:host']).toBe(HOST);
    expect(w.model.calls('CreateVolume')).toBe(1);
  });
});

describe('EBS backend (unit): one time budget per layer (issue 23)', () => {
  it("the attach budget is under the Mount's deadline it serves (dockerd's, docs/design.md §3)", () => {
    expect(DEFAULT_EC2_TIMING.attachTimeoutMs).toBeLessThan(DEADLINES.mount);
    expect(DEFAULT_EC2_TIMING.stuckAttachingMs).toBeLessThan(DEFAULT_EC2_TIMING.attachTimeoutMs);
  });

  it("a Mount's deadline cuts the attach wait (not the EBS layer's longer budget); what EC2 accepted stays attached for the idle period, then is detached", async () => {
    w = ebsUnitWorld({ attachLatencyMs: 400, detachLatencyMs: 5 });
    const service = await w.service(w.backend({ idleDetachMs: 300 }), { deadlines: { mount: 300 } });
    await service.create('slow', {});
    const id = volumeNamed('slow').volumeId;
    const t0 = Date.now();
    const err = await service.publish('slow', C1).catch((e: unknown) => e);
    const took = Date.now() - t0;
    expect(isBerthError(err, 'TIMEOUT')).toBe(true);
    expect((err as Error).message).toMatch(/Mount slow did not finish within .* \(the caller's deadline\)/);
    expect(took).toBeLessThan(UNIT_TIMING.attachTimeoutMs!);
    // Not detached at once: a Mount retried soon finds it attached, and the account's budget is not spent twice (docs/design.md §6).
    expect([w.model.calls('AttachVolume'), w.model.calls('DetachVolume')]).toEqual([1, 0]);
    expect(w.model.volume(id).attachment?.instanceId).toBe(w.instanceId);
    expect(service.describe('slow')).toMatchObject({ mounted: false, consumers: 0 });
    // Nothing used it: the idle detach ends it.
    for (let i = 0; i < 300 && w.model.volume(id).attachment; i++) await new Promise((r) => setTimeout(r, 10));
    expect(w.model.volume(id).attachment).toBeUndefined();
    expect(w.model.calls('DetachVolume')).toBe(1);
  });

  it('a Create whose caller has gone stops waiting for the new volume with the caller\'s reason', async () => {
    w = ebsUnitWorld({ createLatencyMs: 10_000 });
    const backend = w.backend();
    const caller = new AbortController();
    setTimeout(() => caller.abort(new Error('dockerd gave up')), 50);
    const t0 = Date.now();
    await expect(backend.create('late', { sizeBytes: GiB, fs: 'ext4', onRemove: 'retain' }, { signal: caller.signal })).rejects.toThrow('dockerd gave up');
    expect(Date.now() - t0).toBeLessThan(UNIT_TIMING.createTimeoutMs!);
  });

  it('a Create whose caller goes while its CreateVolume call is in flight gets the caller\'s reason, not the SDK\'s AbortError', async () => {
    w = ebsUnitWorld({ apiLatencyMs: 300 });
    const backend = w.backend();
    const caller = new AbortController();
    const world = w;
    const watch = setInterval(() => world.model.calls('CreateVolume') > 0 && caller.abort(new Error('dockerd gave up')), 5);
    onTestFinished(() => clearInterval(watch));
    await expect(backend.create('late', { sizeBytes: GiB, fs: 'ext4', onRemove: 'retain' }, { signal: caller.signal })).rejects.toThrow('dockerd gave up');
  });
});
