import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AttachVolumeCommand, DetachVolumeCommand, ModifyVolumeCommand } from '@aws-sdk/client-ec2';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../lib/logger.js';
import { isBerthError } from '../lib/errors.js';
import { sleep } from '../lib/sleep.js';
import { noLoopReason } from './helpers/env.js';
import { AZ, ebsWorld, GiB, HOST, type EbsWorld } from './helpers/ebs.js';

const ID = (n: number) => String(n).repeat(64).slice(0, 64);

async function blkidType(device: string): Promise<string> {
  const r = await execa('blkid', ['-p', '-s', 'TYPE', '-o', 'value', device], { reject: false });
  return r.stdout.trim();
}

describe.skipIf(noLoopReason)(`EBS backend over the EC2 model and real devices${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let w: EbsWorld;
  afterEach(async () => {
    await w?.cleanup();
  });

  describe('create, mount, unmount, remove', () => {
    beforeEach(async () => {
      w = await ebsWorld();
    });

    it('creates one tagged, encrypted volume per name, however often Create is called', async () => {
      const manager = await w.manager(w.backend());
      await manager.create('pg', { size: '8GiB', type: 'gp3', iops: '4000' });
      await manager.create('pg', { size: '8GiB' });
      await manager.create('pg', {});
      const vols = w.model.volumes();
      expect(vols).toHaveLength(1);
      expect(vols[0]).toMatchObject({ az: AZ, size: 8, type: 'gp3', iops: 4000, encrypted: true });
      expect(vols[0]!.tags).toMatchObject({ 'berth:volume': 'pg', 'berth:host': HOST, 'berth:managed-by': 'berth' });
      expect(JSON.parse(vols[0]!.tags['berth:options']!)).toMatchObject({ sizeBytes: 8 * GiB, type: 'gp3', iops: 4000, fs: 'ext4' });
      await expect(manager.create('pg', { size: '3GiB' })).rejects.toThrow(/already exists with other options: size \(asked 3GiB, volume has 8GiB\)/);
    });

    it('a retried CreateVolume (same ClientToken) never makes a second volume', async () => {
      const b1 = w.backend();
      const b2 = w.backend();
      const options = { sizeBytes: GiB, fs: 'ext4' as const, onRemove: 'retain' as const };
      // Two agents racing (or one retrying after a lost answer) send the same token.
      const [r1, r2] = await Promise.all([b1.create('race', options), b2.create('race', options)]);
      expect(r1.id).toBe(r2.id);
      expect(w.model.volumes().length).toBe(1);
    });

    it('mounts a verified, freshly formatted device and keeps data across unmount and mount', async () => {
      const manager = await w.manager(w.backend());
      await manager.create('pg', { size: '1GiB' });
      const mp = await manager.mount('pg', ID(1));
      const id = w.model.volumes()[0]!.volumeId;
      expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
      await writeFile(join(mp, 'f'), 'hello');
      const info = await manager.get('pg');
      expect(info.Status).toMatchObject({ volumeId: id, az: AZ, attachedTo: w.instanceId, mounted: true });
      expect(String(info.Status!.device)).toMatch(/\/dev\/nvme\d+n1$/);
      await manager.unmount('pg', ID(1));
      // Left attached for a quick restart.
      expect(w.model.volume(id).attachment?.state).toBe('attached');
      const attaches = w.model.calls('AttachVolume');
      const again = await manager.mount('pg', ID(2));
      expect(await readFile(join(again, 'f'), 'utf8')).toBe('hello');
      expect(w.model.calls('AttachVolume')).toBe(attaches);
      await manager.unmount('pg', ID(2));
    });

    it('grows the filesystem at Mount when the volume was made larger (ModifyVolume), data kept', async () => {
      const manager = await w.manager(w.backend());
      await manager.create('grown', { size: '1GiB', fs: 'xfs' });
      const mp = await manager.mount('grown', ID(1));
      await writeFile(join(mp, 'f'), 'before');
      const sizeOf = async () => Number((await execa('findmnt', ['-bno', 'SIZE', mp])).stdout.trim());
      const before = await sizeOf();
      await manager.unmount('grown', ID(1));
      // EBS grows the volume in place; the kernel sees the NVMe namespace change size.
      const id = w.model.volumes()[0]!.volumeId;
      await w.client.send(new ModifyVolumeCommand({ VolumeId: id, Size: 2 }));
      const loop = w.tree.loopOf(id)!;
      await execa('truncate', ['-s', String(2 * GiB), (await execa('losetup', ['-nO', 'BACK-FILE', loop])).stdout.trim()]);
      await execa('losetup', ['-c', loop]);
      const again = await manager.mount('grown', ID(2));
      expect(await readFile(join(again, 'f'), 'utf8')).toBe('before');
      const after = await sizeOf();
      expect(before).toBeLessThan(1.1 * GiB);
      expect(after).toBeGreaterThan(1.9 * GiB);
      await manager.unmount('grown', ID(2));
    });

    it('Get, List and Path make no EC2 call; Mount of a volume still attached makes at most one', async () => {
      const manager = await w.manager(w.backend());
      await manager.create('quiet', {});
      await manager.mount('quiet', ID(1));
      await manager.unmount('quiet', ID(1));
      w.model.resetCalls();
      await manager.get('quiet');
      await manager.list();
      await manager.path('quiet');
      expect(w.model.calls()).toBe(0);
      await manager.mount('quiet', ID(2));
      // One DescribeVolumes: by name, which also proves no second volume took the name.
      expect(w.model.calls()).toBe(1);
      await manager.unmount('quiet', ID(2));
    });

    it('detaches a volume after it has been idle for the configured period', async () => {
      const manager = await w.manager(w.backend({ idleDetachMs: 300 }));
      await manager.create('idle', {});
      await manager.mount('idle', ID(1));
      const id = w.model.volumes()[0]!.volumeId;
      await manager.unmount('idle', ID(1));
      expect(w.model.volume(id).attachment).toBeDefined();
      await sleep(300);
      // Detached once idle for 300 ms; the detach itself (the loop device's teardown) takes a moment on a busy machine.
      for (let i = 0; i < 100 && w.model.volume(id).attachment; i++) await sleep(50);
      expect(w.model.volume(id).attachment).toBeUndefined();
      // A later Mount attaches it again.
      await manager.mount('idle', ID(2));
      expect(w.model.volume(id).attachment?.state).toBe('attached');
      await manager.unmount('idle', ID(2));
    });

    it('Unmount detaches at once when the host tag already names another host', async () => {
      const manager = await w.manager(w.backend());
      await manager.create('handed', {});
      await manager.mount('handed', ID(1));
      const id = w.model.volumes()[0]!.volumeId;
      w.model.setTags(id, { 'berth:host': 'host-b' });
      await manager.unmount('handed', ID(1));
      expect(w.model.volume(id).attachment).toBeUndefined();
    });

    it('remove retains by default (detached, untagged from the host, adopted by a later create) and deletes when asked', async () => {
      const manager = await w.manager(w.backend());
      await manager.create('keep', {});
      const mp = await manager.mount('keep', ID(1));
      await writeFile(join(mp, 'f'), 'kept');
      await manager.unmount('keep', ID(1));
      await manager.remove('keep');
      const keptId = w.model.volumes()[0]!.volumeId;
      const kept = () => w.model.volume(keptId);
      expect(kept().attachment).toBeUndefined();
      expect(kept().tags).not.toHaveProperty('berth:host');
      expect(kept().tags['berth:volume']).toBe('keep');
      expect((await manager.list()).map((v) => v.Name)).toEqual([]);
      await manager.create('keep', {});
      expect(kept().tags['berth:host']).toBe(HOST);
      expect(await readFile(join(await manager.mount('keep', ID(2)), 'f'), 'utf8')).toBe('kept');
      await manager.unmount('keep', ID(2));

      await manager.create('gone', { onRemove: 'delete' });
      await manager.mount('gone', ID(3));
      await manager.unmount('gone', ID(3));
      await manager.remove('gone');
      expect(w.model.volumes().map((v) => v.tags['berth:volume'])).toEqual(['keep']);
    });
  });

  describe('bad option values are refused before anything is created', () => {
    beforeEach(async () => {
      w = await ebsWorld();
    });

    it.each([
      [{ size: '20000GiB', type: 'gp2' }, /size 20000GiB is outside 1–16384 GiB for gp2/],
      [{ iops: '3000', type: 'gp2' }, /iops cannot be set for gp2/],
      [{ type: 'io2', size: '10GiB' }, /io2 needs -o iops=<100–256000>/],
      [{ throughput: '500', type: 'io1', iops: '500', size: '10GiB' }, /throughput cannot be set for io1/],
      [{ iops: '99000' }, /iops 99000 is outside 3000–80000 for gp3/],
      [{ size: '1500MiB' }, /not a whole number of GiB/],
      [{ size: '10GiB', type: 'st1' }, /outside 125–16384 GiB for st1/],
      [{ size: '2GiB', iops: '4000' }, /iops 4000 is more than 500 per GiB for gp3 \(2GiB allows 1000\)/],
      [{ size: '100GiB', iops: '3000', throughput: '1000' }, /throughput 1000 MiB\/s is more than 0\.25 MiB\/s per provisioned IOPS \(3000 IOPS allow 750\)/],
    ])('%j', async (opts, message) => {
      const manager = await w.manager(w.backend());
      await expect(manager.create('bad', opts)).rejects.toThrow(message);
      expect(w.model.volumes().length).toBe(0);
      expect(w.model.calls('CreateVolume')).toBe(0);
    });

    it('an unknown KMS key (EC2 fails the volume after answering): a clear error, the broken volume deleted', async () => {
      w.model.faults.unknownKmsKeys.add('alias/nope');
      const manager = await w.manager(w.backend());
      await expect(manager.create('enc', { kmsKeyId: 'alias/nope' })).rejects.toThrow(/creating volume enc: EC2 failed the new volume vol-[0-9a-f]{17} \(state "error"; usually a KMS key berth cannot use.*berth deleted it/);
      expect(w.model.calls('CreateVolume')).toBe(1);
      expect(w.model.volumes().length).toBe(0);
      expect(await manager.list()).toEqual([]);
    });
  });

  describe('faults', () => {
    it('throttling on every call: the SDK retries, berth gets there, nothing is left half done', async () => {
      w = await ebsWorld();
      const manager = await w.manager(w.backend());
      w.model.faults.throttleAll = true;
      setTimeout(() => (w.model.faults.throttleAll = false), 1_500);
      await manager.create('t', {});
      const mp = await manager.mount('t', ID(1));
      await writeFile(join(mp, 'f'), 'ok');
      expect(w.model.calls()).toBeGreaterThan(w.model.volumes().length * 3);
      await manager.unmount('t', ID(1));
    });

    it('throttling that does not end: a clear error and no volume recorded', async () => {
      w = await ebsWorld({ maxAttempts: 3 });
      const manager = await w.manager(w.backend());
      w.model.faults.throttleAll = true;
      const err = await manager.create('t', {}).catch((e: unknown) => e);
      expect(isBerthError(err, 'LIMIT_EXCEEDED')).toBe(true);
      expect((err as Error).message).toMatch(/RequestLimitExceeded.*still refused it when its time ran out/);
      w.model.faults.throttleAll = false;
      expect(await manager.list()).toEqual([]);
    });

    it('an attachment stuck in "attaching" is detached and tried again', async () => {
      w = await ebsWorld();
      const manager = await w.manager(w.backend());
      await manager.create('stuck', {});
      const id = w.model.volumes()[0]!.volumeId;
      w.model.faults.stuckAttaching.add(id);
      // The wedge is EC2's, and transient: once berth detached, the next attachment goes through.
      const unwedge = setInterval(() => w.model.calls('DetachVolume') > 0 && w.model.faults.stuckAttaching.delete(id), 10);
      const mp = await manager.mount('stuck', ID(1)).finally(() => clearInterval(unwedge));
      expect(w.model.calls('AttachVolume')).toBe(2);
      expect(w.model.calls('DetachVolume')).toBe(1);
      await writeFile(join(mp, 'f'), 'ok');
      await manager.unmount('stuck', ID(1));
    });

    it('a device that appears late is waited for; one that never appears fails the Mount cleanly', async () => {
      w = await ebsWorld({ bindDelayMs: 500 });
      const manager = await w.manager(w.backend({ deviceWaitMs: 3_000 }));
      await manager.create('late', {});
      const mp = await manager.mount('late', ID(1));
      await writeFile(join(mp, 'f'), 'ok');
      await manager.unmount('late', ID(1));

      w.model.onAttached = () => undefined; // the device never shows up
      const never = await manager.create('never', {}).then(() => manager.mount('never', ID(2)).catch((e: unknown) => e));
      expect((never as Error).message).toMatch(/no block device with serial vol[0-9a-f]{17} appeared within 3 s/);
      const info = await manager.get('never');
      expect(info.Status).toMatchObject({ mounted: false });
      expect(info.Mountpoint).toBe('');
    });

    it('a device whose serial names another volume is never formatted or mounted', async () => {
      w = await ebsWorld();
      const manager = await w.manager(w.backend({ deviceWaitMs: 1_000 }));
      await manager.create('mine', {});
      const other = w.model.addVolume({ az: AZ, size: 1 });
      // The disk that shows up carries the other volume's serial (and that volume's data).
      w.model.onAttached = async () => {
        const dev = await w.tree.bind(other, GiB);
        await execa('mkfs.xfs', ['-q', '-f', dev]);
      };
      await expect(manager.mount('mine', ID(1))).rejects.toThrow(/no block device with serial vol/);
      const otherDev = join(w.tree.devRoot, 'nvme1n1');
      expect(await blkidType(otherDev)).toBe('xfs');
    });

    it('a device name EC2 reports in use is skipped from then on', async () => {
      w = await ebsWorld();
      const backend = w.backend();
      const manager = await w.manager(backend);
      await manager.create('first', {});
      await manager.mount('first', ID(1));
      const firstDevice = w.model.volumes()[0]!.attachment!.device;
      // Someone attaches a volume at the next name in berth's rotation behind its back.
      const next = `/dev/xvdb${String.fromCharCode(firstDevice.charCodeAt(firstDevice.length - 1) + 1)}`;
      const intruder = w.model.addVolume({ az: AZ, size: 1 });
      await w.client.send(new AttachVolumeCommand({ VolumeId: intruder, InstanceId: w.instanceId, Device: next }));
      await manager.create('second', {});
      await manager.mount('second', ID(2));
      const second = w.model.volumes().find((v) => v.tags['berth:volume'] === 'second')!;
      expect(second.attachment).toMatchObject({ state: 'attached' });
      expect(second.attachment!.device).not.toBe(next);
      expect(w.model.calls('AttachVolume')).toBe(4); // first, intruder, refused, accepted
      await manager.unmount('first', ID(1));
      await manager.unmount('second', ID(2));
    });

    it('two volumes with one name: an error naming both, never a guess', async () => {
      w = await ebsWorld();
      const tags = { 'berth:volume': 'twin', 'berth:host': HOST, 'berth:managed-by': 'berth' };
      const a = w.model.addVolume({ az: AZ, size: 1, tags });
      const b = w.model.addVolume({ az: AZ, size: 1, tags });
      const manager = await w.manager(w.backend());
      const err = (await manager.mount('twin', ID(1)).catch((e: unknown) => e)) as Error;
      expect(err.message).toMatch(/2 EBS volumes are tagged berth:volume=twin/);
      expect(err.message).toContain(a);
      expect(err.message).toContain(b);
      expect(w.model.calls('AttachVolume')).toBe(0);
    });

    it('a volume in another zone: a clear error, no attach attempted', async () => {
      w = await ebsWorld();
      w.model.addVolume({ az: 'eu-west-1b', size: 1, tags: { 'berth:volume': 'far', 'berth:host': HOST, 'berth:managed-by': 'berth' } });
      const manager = await w.manager(w.backend());
      await expect(manager.mount('far', ID(1))).rejects.toThrow(/is in eu-west-1b, this host in eu-west-1a; EBS volumes cannot attach across zones/);
      expect(w.model.calls('AttachVolume')).toBe(0);
    });

    it('a volume attached to a stopped or terminated instance is moved here', async () => {
      w = await ebsWorld();
      const old = w.model.addInstance({ az: AZ, state: 'stopped' });
      const id = w.model.addVolume({ az: AZ, size: 1, tags: { 'berth:volume': 'moved', 'berth:host': HOST, 'berth:managed-by': 'berth' }, attachedTo: { instanceId: old, device: '/dev/xvdba' } });
      const manager = await w.manager(w.backend());
      await manager.mount('moved', ID(1));
      expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
      await manager.unmount('moved', ID(1));
    });

    it('a volume attached to a running instance of another host is claimed, never force-detached: waits for that host to let go, else fails clearly', async () => {
      w = await ebsWorld();
      const other = w.model.addInstance({ az: AZ, tags: { 'berth:host': 'host-b' } });
      const id = w.model.addVolume({ az: AZ, size: 1, tags: { 'berth:volume': 'claimed', 'berth:host': 'host-b', 'berth:managed-by': 'berth' }, attachedTo: { instanceId: other, device: '/dev/xvdba' } });
      const manager = await w.manager(w.backend({ moveWaitMs: 1_000 }));
      await expect(manager.mount('claimed', ID(1))).rejects.toThrow(/attached to running instance i-[0-9a-f]+ \(host host-b\); it is now tagged to this host, but berth there did not release it within 1 s.*never force-detaches/);
      expect(w.model.volume(id).attachment?.instanceId).toBe(other);
      expect(w.model.volume(id).tags['berth:host']).toBe(HOST);
      expect(w.model.calls('DetachVolume')).toBe(0);

      // The agent on host-b sees the tag and releases it: the next Mount here gets it.
      const patient = await w.manager(w.backend({ moveWaitMs: 5_000 }));
      setTimeout(() => {
        // What berth on host-b does once the tag names this host.
        void w.client.send(new DetachVolumeCommand({ VolumeId: id }));
      }, 300);
      await patient.mount('claimed', ID(2));
      expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
      await patient.unmount('claimed', ID(2));
    });

    it('agent killed between AttachVolume and mount: the restarted agent uses the attachment, formats nothing twice', async () => {
      w = await ebsWorld();
      const first = await w.manager(w.backend());
      await first.create('cut', {});
      const id = w.model.volumes()[0]!.volumeId;
      const mp = await first.mount('cut', ID(1));
      await writeFile(join(mp, 'f'), 'before');
      await first.unmount('cut', ID(1));
      // The next attach gets as far as EC2, then the agent dies: attached, nothing mounted.
      const dying = w.backend();
      await dying.attach((await dying.find('cut'))!);
      expect(w.model.volume(id).attachment?.state).toBe('attached');
      const attaches = w.model.calls('AttachVolume');
      const restarted = await w.manager(w.backend());
      const again = await restarted.mount('cut', ID(2));
      expect(await readFile(join(again, 'f'), 'utf8')).toBe('before');
      expect(w.model.calls('AttachVolume')).toBe(attaches);
      await restarted.unmount('cut', ID(2));
    });

    it('DescribeVolumes failing while dockerd calls Get at its start: answers from local state, nothing purged', async () => {
      w = await ebsWorld();
      const first = await w.manager(w.backend());
      await first.create('a', {});
      await first.create('b', {});
      w.model.faults.failDescribeVolumes = 1_000;
      const restarted = await w.manager(w.backend());
      const got = await Promise.all(['a', 'b'].map((n) => restarted.get(n)));
      expect(got.map((v) => v.Name)).toEqual(['a', 'b']);
      expect((await restarted.list()).map((v) => v.Name).sort()).toEqual(['a', 'b']);
      w.model.faults.failDescribeVolumes = 0;
    });
  });
});

/** A logger whose lines the test can read. */
function capturedLogger(): { logger: ReturnType<typeof createLogger>; lines: () => string[] } {
  const out: string[] = [];
  return { logger: createLogger('debug', { write: (line: string) => void out.push(line) }), lines: () => out.map((l) => String((JSON.parse(l) as { msg?: string }).msg ?? '')) };
}

const OWNED = (name: string, host: string) => ({ 'berth:volume': name, 'berth:host': host, 'berth:managed-by': 'berth' });

describe.skipIf(noLoopReason)(`EBS backend keeps its promises (issue 12)${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let w: EbsWorld;
  afterEach(async () => {
    await w?.cleanup();
  });

  it('docker volume rm on a host that does not own the volume: forgotten here only, the owner keeps its tags; onRemove=delete is refused', async () => {
    w = await ebsWorld();
    const other = w.model.addInstance({ az: AZ, tags: { 'berth:host': 'host-b' } });
    const ownerTags = { ...OWNED('theirs', 'host-b'), 'berth:attached-to': other, 'berth:state': 'mounted' };
    const id = w.model.addVolume({ az: AZ, size: 1, tags: ownerTags, attachedTo: { instanceId: other, device: '/dev/xvdba' } });
    const log = capturedLogger();
    const manager = await w.manager(w.backend({ logger: log.logger }));
    // `docker volume create theirs` here put the name into this host's view.
    await manager.create('theirs', {});
    w.model.resetCalls();
    await manager.remove('theirs');
    expect(w.model.volume(id).tags).toEqual(ownerTags);
    expect(w.model.volume(id).attachment).toMatchObject({ instanceId: other, state: 'attached' });
    for (const c of ['CreateTags', 'DeleteTags', 'DetachVolume', 'DeleteVolume']) expect(w.model.calls(c)).toBe(0);
    expect((await manager.list()).map((v) => v.Name)).toEqual([]);
    expect(log.lines().some((l) => /detached and untagged/.test(l))).toBe(false);
    expect(log.lines()).toContain('volume forgotten on this host only: it belongs to host host-b, whose tags and data are left as they are');

    // Idle on its owner (not attached): deleting it from here would destroy host-b's data.
    const idle = w.model.addVolume({ az: AZ, size: 1, tags: { ...OWNED('theirs-too', 'host-b'), 'berth:options': JSON.stringify({ sizeBytes: GiB, fs: 'ext4', onRemove: 'delete' }) } });
    await manager.create('theirs-too', {});
    await expect(manager.remove('theirs-too')).rejects.toThrow(/belongs to host host-b \(berth:host\), not this host \(host-a\); berth deletes a volume only on its own host: remove it there. Nothing was changed/);
    expect(w.model.hasVolume(idle)).toBe(true);
    expect(w.model.volume(idle).tags['berth:host']).toBe('host-b');
  });

  it('a Mount that fails after AttachVolume leaves the volume detached: device never appears, device holds a foreign filesystem', async () => {
    w = await ebsWorld();
    const manager = await w.manager(w.backend({ deviceWaitMs: 500 }));
    const bindHere = w.model.onAttached!;
    await manager.create('ghost', {});
    const ghost = w.model.volumes()[0]!.volumeId;
    w.model.onAttached = (volumeId, device, instanceId) => (volumeId === ghost ? undefined : bindHere(volumeId, device, instanceId));
    await expect(manager.mount('ghost', ID(1))).rejects.toThrow(/no block device with serial vol[0-9a-f]{17} appeared/);
    expect(w.model.volume(ghost).attachment).toBeUndefined();

    await manager.create('foreign', {});
    const foreign = w.model.volumes().find((v) => v.tags['berth:volume'] === 'foreign')!.volumeId;
    w.model.onAttached = async (volumeId, device, instanceId) => {
      if (volumeId !== foreign) return bindHere(volumeId, device, instanceId);
      await execa('mkfs.xfs', ['-q', '-f', await w.tree.bind(volumeId, GiB)]);
    };
    await expect(manager.mount('foreign', ID(2))).rejects.toThrow(/holds a xfs filesystem but the volume asks for ext4; refusing/);
    expect(w.model.volume(foreign).attachment).toBeUndefined();
    expect((await manager.get('foreign')).Status).toMatchObject({ mounted: false, lastError: expect.stringMatching(/holds a xfs filesystem/) });
  });

  it('a Create naming the values the volume has (type=gp3, encrypted=true, default IOPS and throughput) is no conflict; other values are', async () => {
    w = await ebsWorld();
    const manager = await w.manager(w.backend());
    await manager.create('plain', {});
    await manager.create('plain', { type: 'gp3', encrypted: 'true', iops: '3000', throughput: '125', size: '1GiB', fs: 'ext4', onRemove: 'retain' });
    await expect(manager.create('plain', { type: 'gp2' })).rejects.toThrow(/type \(asked gp2, volume has gp3\)/);
    await expect(manager.create('plain', { encrypted: 'false' })).rejects.toThrow(/encrypted \(asked false, volume has true\)/);
    await manager.create('keyed', { kmsKeyId: 'alias/data' });
    await manager.create('keyed', { kmsKeyId: 'alias/data', encrypted: 'true', type: 'gp3' });
    // Made outside berth (infra/): its values are what EC2 says.
    w.model.addVolume({ az: AZ, size: 4, type: 'io2', iops: 400, encrypted: true, tags: OWNED('infra', HOST) });
    await manager.create('infra', { type: 'io2', iops: '400', size: '4GiB', encrypted: 'true' });
    await expect(manager.create('infra', { iops: '500' })).rejects.toThrow(/iops \(asked 500, volume has 400\)/);
    expect(w.model.calls('CreateVolume')).toBe(2);
  });

  it('ClientToken: after onRemove=delete a Create of that name makes a new volume, in this process and after a restart, with the same or other options', async () => {
    w = await ebsWorld();
    const manager = await w.manager(w.backend());
    await manager.create('tmp', { onRemove: 'delete' });
    const first = w.model.volumes()[0]!.volumeId;
    await manager.remove('tmp');
    await manager.create('tmp', { onRemove: 'delete' });
    const second = w.model.volumes()[0]!;
    expect(second.volumeId).not.toBe(first);
    expect(second.state).toBe('available');
    await writeFile(join(await manager.mount('tmp', ID(1)), 'f'), 'new');
    await manager.unmount('tmp', ID(1));
    await manager.remove('tmp');

    // A restarted agent does not remember the deletions: EC2's answers tell it the tokens are spent.
    const restarted = await w.manager(w.backend());
    await restarted.create('tmp', { onRemove: 'delete' });
    expect(w.model.volumes().map((v) => v.volumeId)).not.toContain(second.volumeId);
    expect(w.model.volumes()).toHaveLength(1);
    await restarted.remove('tmp');
    // Other options with a spent token: IdempotentParameterMismatch, then a new token.
    await w.manager(w.backend()).then((m) => m.create('tmp', { size: '2GiB' }));
    expect(w.model.volumes()).toMatchObject([{ size: 2, state: 'available' }]);
  });

  it('ClientToken: after EC2 failed a volume and berth deleted it, the same Create makes a new volume once the key works', async () => {
    w = await ebsWorld();
    w.model.faults.unknownKmsKeys.add('alias/late');
    const manager = await w.manager(w.backend());
    await expect(manager.create('enc', { kmsKeyId: 'alias/late' })).rejects.toThrow(/berth deleted it/);
    w.model.faults.unknownKmsKeys.delete('alias/late');
    await manager.create('enc', { kmsKeyId: 'alias/late' });
    expect(w.model.volumes()).toMatchObject([{ state: 'available', encrypted: true, tags: { 'berth:volume': 'enc' } }]);
    expect(w.model.calls('CreateVolume')).toBe(2);
  });

  it('DetachVolume names the instance (an endpoint that requires InstanceId works): moving off a stopped instance, removing', async () => {
    w = await ebsWorld({ requireDetachInstanceId: true });
    const old = w.model.addInstance({ az: AZ, state: 'stopped' });
    const moved = w.model.addVolume({ az: AZ, size: 1, tags: OWNED('moved', HOST), attachedTo: { instanceId: old, device: '/dev/xvdba' } });
    const manager = await w.manager(w.backend());
    await manager.mount('moved', ID(1));
    await manager.unmount('moved', ID(1));
    await manager.remove('moved');
    expect(w.model.volume(moved).attachment).toBeUndefined();
    expect(w.model.inputs('DetachVolume')).toEqual([
      { VolumeId: moved, InstanceId: old },
      { VolumeId: moved, InstanceId: w.instanceId },
    ]);
  });

  it('Get of a name that is not berth\'s costs one DescribeVolumes, not one per call; a Create of that name still creates it', async () => {
    w = await ebsWorld();
    const manager = await w.manager(w.backend());
    w.model.resetCalls();
    // dockerd asks every driver about a volume name it does not know (moby volume/service/store.go, getVolume).
    for (let i = 0; i < 5; i++) await expect(manager.get('someone-elses')).rejects.toThrow(/no volume named someone-elses/);
    expect(w.model.calls('DescribeVolumes')).toBe(1);
    await manager.create('someone-elses', {});
    expect((await manager.get('someone-elses')).Name).toBe('someone-elses');
    expect(w.model.calls('CreateVolume')).toBe(1);
  });
});
