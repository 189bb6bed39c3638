import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBerthError } from '../lib/errors.js';
import { processRunner, type Runner } from '../lib/exec.js';
import { createFilesystemOps } from '../volume-plugin/fs/filesystem.js';
import { filesystemBytes as readFilesystemBytes } from '../volume-plugin/fs/superblock.js';
import { noLoopReason, noSysResourceReason } from './helpers/env.js';
import { detachLoopDevicesUnder, makeLoopDevice, sh, tempDir } from './helpers/loop.js';
import { HOST_PATHS, loopManager } from './helpers/manager.js';

const MiB = 2 ** 20;
const fs = createFilesystemOps({ runner: processRunner, paths: HOST_PATHS });

function sha(device: string): string {
  return sh('sha256sum', [device]).split(' ')[0]!;
}

describe.skipIf(noLoopReason)(`filesystem operations on real loop devices${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  const detachers: Array<() => void> = [];
  const loop = (size = 64 * MiB, name?: string) => {
    const l = makeLoopDevice(dir.path, size, name);
    detachers.push(l.detach);
    return l;
  };

  beforeEach(() => {
    dir = tempDir('berth-fs');
  });
  afterEach(() => {
    dir.cleanup();
    while (detachers.length) detachers.pop()!();
  });

  it.each(['ext4', 'xfs'] as const)('formats a blank device with %s, mounts it and verifies the mount', async (kind) => {
    const { device } = loop(kind === 'xfs' ? 320 * MiB : 64 * MiB);
    expect(await fs.probe(device)).toBeUndefined();
    expect(await fs.prepare(device, kind)).toEqual({ formatted: true });
    expect((await fs.probe(device))?.type).toBe(kind);
    const mp = join(dir.path, 'mnt');
    await fs.ensureMountpoint(mp);
    await fs.mount(device, mp, kind);
    expect(await fs.isMounted(mp, device)).toBe(true);
    writeFileSync(join(mp, 'f'), 'data');
    await fs.unmount(mp);
    expect(await fs.isMounted(mp)).toBe(false);
    await fs.unmount(mp); // not mounted: success
  });

  it('leaves a device that already holds the asked filesystem alone, data readable', async () => {
    const { device } = loop();
    execFileSync('mkfs.ext4', ['-q', '-F', device]);
    const mp = join(dir.path, 'mnt');
    mkdirSync(mp);
    execFileSync('mount', [device, mp]);
    writeFileSync(join(mp, 'keep'), 'precious');
    execFileSync('umount', [mp]);

    expect(await fs.prepare(device, 'ext4')).toEqual({ formatted: false });
    await fs.mount(device, mp, 'ext4');
    expect(sh('cat', [join(mp, 'keep')])).toBe('precious');
    await fs.unmount(mp);
  });

  it('refuses a device holding another filesystem, leaving every byte as it was', async () => {
    const { device } = loop(320 * MiB);
    execFileSync('mkfs.xfs', ['-q', '-f', device]);
    const before = sha(device);
    const err = await fs.prepare(device, 'ext4').catch((e: unknown) => e);
    expect(isBerthError(err, 'UNSAFE_DEVICE')).toBe(true);
    expect((err as Error).message).toMatch(/holds a xfs filesystem but the volume asks for ext4/);
    expect(sha(device)).toBe(before);
  });

  it('refuses a device holding a partition table', async () => {
    const { device } = loop();
    execFileSync('sfdisk', ['--quiet', device], { input: 'label: gpt\n,\n' });
    const before = sha(device);
    const err = await fs.prepare(device, 'ext4').catch((e: unknown) => e);
    expect(isBerthError(err, 'UNSAFE_DEVICE')).toBe(true);
    expect((err as Error).message).toMatch(/gpt partition table/);
    expect(sha(device)).toBe(before);
  });

  it('refuses paths that are not block devices before running anything', async () => {
    const file = join(dir.path, 'plain');
    writeFileSync(file, '');
    await expect(fs.prepare(file, 'ext4')).rejects.toThrow(/not a block device/);
    await expect(fs.prepare('/dev/loop0; rm -rf /', 'ext4')).rejects.toThrow(/not a plain absolute path/);
  });

  it('will not mount an ext4 filesystem that fsck cannot repair', async () => {
    const { device } = loop();
    await fs.prepare(device, 'ext4');
    // Destroy the primary superblock and every backup: e2fsck -p must give up.
    execFileSync('dd', ['if=/dev/zero', `of=${device}`, 'bs=1024', 'seek=1', 'count=1', 'conv=notrunc', 'status=none']);
    for (const block of [8193, 24577, 40961, 57345]) {
      execFileSync('dd', ['if=/dev/zero', `of=${device}`, 'bs=1024', `seek=${block}`, 'count=1', 'conv=notrunc', 'status=none']);
    }
    const mp = join(dir.path, 'mnt');
    await fs.ensureMountpoint(mp);
    await expect(fs.mount(device, mp, 'ext4')).rejects.toThrow(/repair it by hand before mounting/);
    expect(await fs.isMounted(mp)).toBe(false);
  });

  it('a sound filesystem another program holds exclusively is not mounted, and the error says the device is in use, not that it needs repair', async () => {
    const { device } = loop();
    await fs.prepare(device, 'ext4');
    // What a mount in another mount namespace does to e2fsck: the device is busy (O_EXCL), e2fsck exits 8.
    const holder = spawn('python3', ['-c', `import os, sys\nfd = os.open(${JSON.stringify(device)}, os.O_RDONLY | os.O_EXCL)\nprint('held', flush=True)\nsys.stdin.read()`], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`the holder exited with ${code}`)));
      });
      const mp = join(dir.path, 'mnt');
      await fs.ensureMountpoint(mp);
      const err = await fs.mount(device, mp, 'ext4').catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/e2fsck exit 8\b.*could not open it, nothing was changed: the device is in use elsewhere/);
      expect((err as Error).message).not.toMatch(/repair/);
      expect(await fs.isMounted(mp)).toBe(false);
    } finally {
      holder.kill();
    }
  });

  it('the first Mount of an image berth just made runs no blkid, and after its own mkfs no fsck and no size read; every later Mount checks again', async () => {
    const stateDir = join(dir.path, 'state');
    const calls: string[] = [];
    const runner: Runner = (file, args, options) => (calls.push(file), processRunner(file, args, options));
    const filesystemBytes: typeof readFilesystemBytes = (...a) => (calls.push('size read'), readFilesystemBytes(...a));
    detachers.push(() => detachLoopDevicesUnder(dir.path));
    const { manager: m } = await loopManager(stateDir, undefined, { runner, filesystemBytes });
    await m.create('v', {});
    const mp = await m.mount('v', 'a');
    expect(calls).toContain('mkfs.ext4');
    expect(calls).not.toContain('blkid');
    expect(calls).not.toContain('e2fsck');
    expect(calls).not.toContain('size read');
    writeFileSync(join(mp, 'f'), 'data');
    await m.unmount('v', 'a');
    calls.length = 0;
    // Not formatted by this Mount: blkid and e2fsck run, nothing is formatted.
    await m.mount('v', 'b');
    expect(calls).toEqual(expect.arrayContaining(['blkid', 'e2fsck', 'mount']));
    expect(calls).not.toContain('mkfs.ext4');
    await m.unmount('v', 'b');
    // Another agent on the same state (a restart) has not seen this filesystem's size: it reads it.
    calls.length = 0;
    const { manager: restarted } = await loopManager(stateDir, undefined, { runner, filesystemBytes });
    await restarted.mount('v', 'c');
    expect(calls).toEqual(expect.arrayContaining(['e2fsck', 'size read', 'mount']));
    await restarted.unmount('v', 'c');
  });

  it('a new image written behind berth before its first Mount is probed, never formatted over', async () => {
    const stateDir = join(dir.path, 'state');
    detachers.push(() => detachLoopDevicesUnder(dir.path));
    const { manager: m } = await loopManager(stateDir);
    await m.create('v', {});
    const image = join(stateDir, 'images', 'v.img');
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    const uuid = sh('blkid', ['-p', '-o', 'value', '-s', 'UUID', image]);
    await m.mount('v', 'a');
    await m.unmount('v', 'a');
    expect(sh('blkid', ['-p', '-o', 'value', '-s', 'UUID', image])).toBe(uuid);
  });

  async function growsOnline(kind: 'ext4' | 'xfs') {
    const start = kind === 'xfs' ? 320 * MiB : 64 * MiB;
    const { device, image } = loop(start);
    await fs.prepare(device, kind);
    const mp = join(dir.path, 'mnt');
    await fs.ensureMountpoint(mp);
    await fs.mount(device, mp, kind);
    expect(await fs.grow(device, mp, kind)).toEqual({ grown: false });
    const sizeBefore = Number(sh('df', ['--output=size', '-B1', mp]).split('\n')[1]);
    execFileSync('truncate', ['-s', String(start * 2), image]);
    execFileSync('losetup', ['--set-capacity', device]);
    expect(await fs.grow(device, mp, kind)).toEqual({ grown: true });
    const sizeAfter = Number(sh('df', ['--output=size', '-B1', mp]).split('\n')[1]);
    expect(sizeAfter).toBeGreaterThan(sizeBefore * 1.8);
    await fs.unmount(mp);
  }

  it('grows a mounted xfs filesystem online when the device grew', () => growsOnline('xfs'));
  it.skipIf(noSysResourceReason)(`grows a mounted ext4 filesystem online when the device grew${noSysResourceReason ? ` (skipped: ${noSysResourceReason})` : ''}`, () =>
    growsOnline('ext4'),
  );

  it('makes an unmounted mountpoint immutable, so nothing lands on the root disk', async () => {
    const mp = join(dir.path, 'mnt');
    await fs.ensureMountpoint(mp);
    expect(() => writeFileSync(join(mp, 'oops'), 'x')).toThrow(/EPERM|EACCES/);
    const { device } = loop();
    await fs.prepare(device, 'ext4');
    await fs.mount(device, mp, 'ext4');
    writeFileSync(join(mp, 'fine'), 'x'); // the mounted filesystem is writable
    await fs.unmount(mp);
    await fs.removeMountpoint(mp);
    expect(() => sh('ls', [mp])).toThrow();
  });

  it('refuses to mount over a mountpoint that has another device on it', async () => {
    const a = loop(64 * MiB, 'a');
    const b = loop(64 * MiB, 'b');
    await fs.prepare(a.device, 'ext4');
    await fs.prepare(b.device, 'ext4');
    const mp = join(dir.path, 'mnt');
    await fs.ensureMountpoint(mp);
    await fs.mount(a.device, mp, 'ext4');
    await fs.mount(a.device, mp, 'ext4'); // same device: idempotent
    await expect(fs.mount(b.device, mp, 'ext4')).rejects.toThrow(/another device/);
    expect(await fs.isMounted(mp, a.device)).toBe(true);
    await fs.unmount(mp);
  });
});
