import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBerthError } from '../lib/errors.js';
import { sleep } from '../lib/sleep.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';
import { imageOf, loopManager } from './helpers/manager.js';

const ID1 = 'a'.repeat(64);
const ID2 = 'b'.repeat(64);

describe.skipIf(noLoopReason)(`volume manager over the loop backend${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;

  beforeEach(() => {
    dir = tempDir('berth-mgr');
    stateDir = join(dir.path, 'state');
  });
  afterEach(() => {
    dir.cleanup();
    detachLoopDevicesUnder(dir.path);
  });

  const isMounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);

  it('creates idempotently, refuses other options for an existing name, and adopts on a bare create', async () => {
    const { manager } = await loopManager(stateDir);
    await manager.create('pg', { size: '64MiB', fs: 'ext4' });
    await manager.create('pg', { size: '64MiB' });
    await manager.create('pg', {});
    const err = await manager.create('pg', { size: '128MiB', fs: 'ext4' }).catch((e: unknown) => e);
    expect(isBerthError(err, 'CONFLICT')).toBe(true);
    expect((err as Error).message).toMatch(/size \(asked 128MiB, volume has 64MiB\)/);
    expect((await manager.list()).map((v) => v.Name)).toEqual(['pg']);
    expect((await manager.get('pg')).Status).toMatchObject({ size: '64MiB', fs: 'ext4', mounted: false });
  });

  it.each([
    ['bad name', '-bad', {}, /invalid volume name/],
    ['size=abc', 'v', { size: 'abc' }, /invalid size "abc"/],
    ['fs=ntfs', 'v', { fs: 'ntfs' }, /fs: Invalid option: expected one of "ext4"\|"xfs"/],
    ['iops=-1', 'v', { iops: '-1' }, /iops must be a positive whole number/],
    ['unknown option', 'v', { color: 'blue' }, /unknown option\(s\) color/],
    ['EBS-only option', 'v', { type: 'gp3' }, /need the ebs backend/],
    ['too small', 'v', { size: '1MiB' }, /below the 16MiB minimum/],
  ])('refuses %s with a clear error and creates nothing', async (_what, name, opts, message) => {
    const { manager } = await loopManager(stateDir);
    const err = await manager.create(name, opts as Record<string, string>).catch((e: unknown) => e);
    expect(isBerthError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toMatch(message);
    expect(existsSync(join(stateDir, 'images')) ? readdirSync(join(stateDir, 'images')) : []).toEqual([]);
  });

  it('counts mounts per ID and unmounts only when the last one goes; unknown IDs are fine', async () => {
    const { manager } = await loopManager(stateDir);
    await manager.create('v', {});
    const mp = await manager.mount('v', ID1);
    expect(await manager.mount('v', ID2)).toBe(mp);
    expect(isMounted(mp)).toBe(true);
    writeFileSync(join(mp, 'f'), 'hello');
    await manager.unmount('v', 'c'.repeat(64)); // unknown ID: success, nothing changes
    await manager.unmount('v', ID1);
    expect(isMounted(mp)).toBe(true);
    expect(await manager.path('v')).toBe(mp);
    await manager.unmount('v', ID2);
    expect(isMounted(mp)).toBe(false);
    expect(await manager.path('v')).toBe('');
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    // data survives a remount
    const again = await manager.mount('v', ID1);
    expect(readFileSync(join(again, 'f'), 'utf8')).toBe('hello');
    await manager.unmount('v', ID1);
  });

  it('answers NOT_FOUND for unknown names on Mount, Remove, Get and Path; Unmount of one is fine', async () => {
    const { manager } = await loopManager(stateDir);
    for (const call of [() => manager.mount('nope', ID1), () => manager.remove('nope'), () => manager.get('nope'), () => manager.path('nope')]) {
      const err = await call().catch((e: unknown) => e);
      expect(isBerthError(err, 'NOT_FOUND')).toBe(true);
    }
    await manager.unmount('nope', ID1);
  });

  it('refuses Remove while mounted; retain keeps the data for a later Create, delete destroys it', async () => {
    const { manager } = await loopManager(stateDir);
    await manager.create('keep', {});
    const mp = await manager.mount('keep', ID1);
    writeFileSync(join(mp, 'f'), 'kept');
    await expect(manager.remove('keep')).rejects.toThrow(/in use by 1 container mount/);
    await manager.unmount('keep', ID1);
    await manager.remove('keep');
    expect((await manager.list()).map((v) => v.Name)).toEqual([]);
    expect(existsSync(imageOf(stateDir, 'keep'))).toBe(true);
    await manager.create('keep', {});
    expect(readFileSync(join(await manager.mount('keep', ID1), 'f'), 'utf8')).toBe('kept');
    await manager.unmount('keep', ID1);

    await manager.create('gone', { onRemove: 'delete' });
    await manager.mount('gone', ID1);
    await manager.unmount('gone', ID1);
    await manager.remove('gone');
    expect(existsSync(imageOf(stateDir, 'gone'))).toBe(false);
    expect(existsSync(join(stateDir, 'mounts', 'gone'))).toBe(false);
  });

  it('serializes a concurrent Mount and Remove of one name: the mount wins and the remove is refused', async () => {
    const { manager } = await loopManager(stateDir);
    await manager.create('race', {});
    const [mount, remove] = await Promise.allSettled([manager.mount('race', ID1), manager.remove('race')]);
    expect(mount.status).toBe('fulfilled');
    expect(remove.status).toBe('rejected');
    expect(isMounted(join(stateDir, 'mounts', 'race'))).toBe(true);
    await manager.unmount('race', ID1);
    const [remove2, mount2] = await Promise.allSettled([manager.remove('race'), manager.mount('race', ID2)]);
    expect(remove2.status).toBe('fulfilled');
    expect(mount2.status).toBe('rejected');
    expect(isMounted(join(stateDir, 'mounts', 'race'))).toBe(false);
  });

  it('answers Get and List from local state while a slow Mount holds the volume lock', async () => {
    const { manager } = await loopManager(stateDir, (b) => ({
      ...b,
      attach: async (r) => {
        await sleep(1500);
        return b.attach(r);
      },
    }));
    await manager.create('slow', {});
    const mounting = manager.mount('slow', ID1);
    await sleep(50);
    const t0 = Date.now();
    expect((await manager.get('slow')).Name).toBe('slow');
    expect(await manager.list()).toHaveLength(1);
    expect(Date.now() - t0).toBeLessThan(200);
    await mounting;
    await manager.unmount('slow', ID1);
  });

  it('never formats a volume whose image holds another filesystem; a failed Mount leaves nothing behind', async () => {
    const { manager } = await loopManager(stateDir);
    await manager.create('other', { size: '320MiB' });
    execFileSync('mkfs.xfs', ['-q', '-f', imageOf(stateDir, 'other')]);
    const before = sh('sha256sum', [imageOf(stateDir, 'other')]);
    const err = await manager.mount('other', ID1).catch((e: unknown) => e);
    expect(isBerthError(err, 'UNSAFE_DEVICE')).toBe(true);
    expect((err as Error).message).toMatch(/holds a xfs filesystem but the volume asks for ext4/);
    expect(isMounted(join(stateDir, 'mounts', 'other'))).toBe(false);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    expect(sh('sha256sum', [imageOf(stateDir, 'other')])).toBe(before);
    expect((await manager.get('other')).Status).toMatchObject({ mounted: false, lastError: expect.stringMatching(/xfs/) });
    await manager.unmount('other', ID1); // Docker never sends this, but it must be harmless
  });

  it('reports an image deleted behind its back clearly, and still lets the volume be removed', async () => {
    const { manager } = await loopManager(stateDir);
    await manager.create('lost', {});
    unlinkSync(imageOf(stateDir, 'lost'));
    await expect(manager.mount('lost', ID1)).rejects.toThrow(/image file .* is missing/);
    expect((await manager.get('lost')).Status).toMatchObject({ mounted: false, lastError: expect.stringMatching(/image file .* is missing/) });
    await manager.remove('lost');
    expect(await manager.list()).toEqual([]);
  });

  it('rebuilds from the backend and mountinfo when the state file is corrupt, keeping the bad file aside', async () => {
    const first = await loopManager(stateDir);
    await first.manager.create('a', {});
    await first.manager.create('b', {});
    const mp = await first.manager.mount('a', ID1);
    writeFileSync(join(stateDir, 'state.json'), '{"version":1,"volu');

    const { manager } = await loopManager(stateDir);
    expect((await manager.list()).map((v) => v.Name).sort()).toEqual(['a', 'b']);
    expect(await manager.path('a')).toBe(mp); // still mounted: kept, not reported unmounted
    expect(readdirSync(stateDir).some((f) => f.startsWith('state.json.corrupt-'))).toBe(true);
    // Its users are unknown: not released behind them; the container's own Unmount (an ID the new state never saw) unmounts.
    expect(await manager.service.releaseIfUnused('a', 'test cleanup')).toBe(false);
    expect(isMounted(mp)).toBe(true);
    await manager.unmount('a', ID1);
    expect(isMounted(mp)).toBe(false);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
  });

  it('rebuilds from the image sidecars and mountinfo when the state file is missing', async () => {
    const first = await loopManager(stateDir);
    await first.manager.create('x', { size: '32MiB' });
    await first.manager.create('y', { onRemove: 'delete' });
    const mp = await first.manager.mount('x', ID1);
    writeFileSync(join(mp, 'f'), 'still here');
    unlinkSync(join(stateDir, 'state.json'));

    const { manager } = await loopManager(stateDir);
    expect((await manager.list()).map((v) => v.Name).sort()).toEqual(['x', 'y']);
    expect((await manager.get('y')).Status).toMatchObject({ onRemove: 'delete', mounted: false });
    expect(await manager.path('x')).toBe(mp);
    expect(readFileSync(join(mp, 'f'), 'utf8')).toBe('still here');
    await manager.service.releaseIfUnused('x', 'test cleanup');
  });

  it('after a restart, the Unmount for a mount made before it really unmounts', async () => {
    const first = await loopManager(stateDir);
    await first.manager.create('r', {});
    const mp = await first.manager.mount('r', ID1);
    const { manager } = await loopManager(stateDir); // a new process reading the same state
    expect((await manager.get('r')).Status).toMatchObject({ mounted: true, containerMounts: 1 });
    await manager.unmount('r', ID1);
    expect(isMounted(mp)).toBe(false);
  });

  it('drops recorded mounts that mountinfo no longer shows', async () => {
    const first = await loopManager(stateDir);
    await first.manager.create('m', {});
    const mp = await first.manager.mount('m', ID1);
    execFileSync('umount', [mp]);
    const { manager } = await loopManager(stateDir);
    expect((await manager.get('m')).Status).toMatchObject({ mounted: false, containerMounts: 0 });
    expect(await manager.path('m')).toBe('');
    // and it mounts again on demand
    expect(await manager.mount('m', ID2)).toBe(mp);
    await manager.unmount('m', ID2);
  });
});
