import { mkdir, readFile, rmdir, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { BerthError, errorMessage } from '../../lib/errors.js';
import type { Runner } from '../../lib/exec.js';
import { majorMinorOf, mountAt, readMountinfo } from '../../lib/mountinfo.js';
import type { Filesystem } from '../options.js';
import type { FilesystemOps } from './types.js';

/** Device paths we are willing to hand to mkfs/mount: absolute, no spaces or shell-ish characters. */
const DEVICE_PATH = /^\/[A-Za-z0-9/_.:-]+$/;

/** Time limits, generous for slow EBS first-touch reads; every call has one. */
const LIMITS = { probeMs: 30_000, mkfsMs: 300_000, fsckMs: 600_000, mountMs: 60_000, growMs: 600_000, chattrMs: 10_000 };

export interface FilesystemDeps {
  runner: Runner;
  mountinfoPath?: string;
  logger?: Logger;
}

export interface Probe {
  type?: string;
  pttype?: string;
}

export function createFilesystemOps(deps: FilesystemDeps): FilesystemOps & { probe(devicePath: string): Promise<Probe | undefined> } {
  const { runner, mountinfoPath, logger } = deps;
  let chattrUnsupportedWarned = false;
  /** Device size at the last grow check per mountpoint: an unchanged device needs no filesystem read. */
  const checkedSizes = new Map<string, { rdev: number; deviceBytes: number }>();

  async function deviceSizeBytes(devicePath: string, rdev: number): Promise<number> {
    const sectors = await readFile(`/sys/dev/block/${majorMinorOf(rdev)}/size`, 'utf8').catch(() => undefined);
    if (sectors !== undefined) return Number(sectors.trim()) * 512;
    const { stdout } = await runner('blockdev', ['--getsize64', devicePath], { timeoutMs: LIMITS.probeMs });
    return Number(stdout.trim());
  }

  async function assertBlockDevice(devicePath: string): Promise<number> {
    if (!DEVICE_PATH.test(devicePath)) {
      throw new BerthError('UNSAFE_DEVICE', `refusing device path ${JSON.stringify(devicePath)}: not a plain absolute path`);
    }
    const st = await stat(devicePath).catch((err: unknown) => {
      throw new BerthError('UNSAFE_DEVICE', `device ${devicePath} is not present: ${errorMessage(err)}`);
    });
    if (!st.isBlockDevice()) throw new BerthError('UNSAFE_DEVICE', `${devicePath} is not a block device`);
    return st.rdev;
  }

  /** What blkid finds on the device; undefined when it finds nothing (exit 2). */
  async function probe(devicePath: string): Promise<Probe | undefined> {
    await assertBlockDevice(devicePath);
    const res = await runner('blkid', ['-p', '-s', 'TYPE', '-s', 'PTTYPE', '-o', 'export', '--', devicePath], {
      timeoutMs: LIMITS.probeMs,
      okExitCodes: [0, 2],
    });
    if (res.exitCode === 2) return undefined;
    const fields = Object.fromEntries(
      res.stdout
        .split('\n')
        .map((l) => l.split('='))
        .filter((kv) => kv.length === 2)
        .map(([k, v]) => [k!, v!]),
    );
    const found: Probe = {};
    if (fields.TYPE) found.type = fields.TYPE;
    if (fields.PTTYPE) found.pttype = fields.PTTYPE;
    // blkid exit 0 with neither field is something it recognised but we do not: never blank.
    if (!found.type && !found.pttype) found.type = 'unknown';
    return found;
  }

  async function isMounted(mountpoint: string, devicePath?: string): Promise<boolean> {
    const entry = mountAt(await readMountinfo(mountinfoPath), mountpoint);
    if (!entry) return false;
    if (devicePath === undefined) return true;
    const { rdev } = await stat(devicePath);
    return entry.majorMinor === majorMinorOf(rdev);
  }

  async function fsckExt4(devicePath: string): Promise<void> {
    // e2fsck -p: 0 clean, 1 errors corrected, 2 corrected and a reboot is advised (root fs only);
    // 4 and up means errors left or an operational failure: do not mount.
    const res = await runner('e2fsck', ['-p', devicePath], { timeoutMs: LIMITS.fsckMs, okExitCodes: [0, 1, 2, 4, 8, 12, 16, 32] });
    if (res.exitCode >= 4) {
      const detail = (res.stdout + '\n' + res.stderr).trim().split('\n').slice(-2).join(' | ');
      throw new BerthError('UNSAFE_DEVICE', `filesystem check of ${devicePath} failed (e2fsck exit ${res.exitCode}): ${detail}; repair it by hand before mounting`);
    }
    if (res.exitCode > 0) logger?.warn({ devicePath, exitCode: res.exitCode }, 'e2fsck corrected errors');
  }

  async function fsSizeBytes(devicePath: string, mountpoint: string, fs: Filesystem): Promise<number> {
    if (fs === 'ext4') {
      const { stdout } = await runner('dumpe2fs', ['-h', devicePath], { timeoutMs: LIMITS.probeMs });
      const count = /^Block count:\s+(\d+)/m.exec(stdout)?.[1];
      const size = /^Block size:\s+(\d+)/m.exec(stdout)?.[1];
      if (!count || !size) throw new BerthError('INTERNAL', `could not read the size of the ext4 filesystem on ${devicePath}`);
      return Number(count) * Number(size);
    }
    const { stdout } = await runner('xfs_info', [mountpoint], { timeoutMs: LIMITS.probeMs });
    const m = /^data\s+=\s+bsize=(\d+)\s+blocks=(\d+)/m.exec(stdout);
    if (!m) throw new BerthError('INTERNAL', `could not read the size of the xfs filesystem at ${mountpoint}`);
    return Number(m[1]) * Number(m[2]);
  }

  async function chattr(flag: '+i' | '-i', dir: string): Promise<void> {
    try {
      await runner('chattr', [flag, '--', dir], { timeoutMs: LIMITS.chattrMs });
    } catch (err) {
      if (!/not supported|Inappropriate ioctl/i.test(errorMessage(err))) throw err;
      if (!chattrUnsupportedWarned) {
        chattrUnsupportedWarned = true;
        logger?.warn({ dir }, 'this filesystem does not support the immutable flag; unmounted mountpoints are not write-protected');
      }
    }
  }

  return {
    probe,

    async prepare(devicePath, fs, options = {}) {
      const found = await probe(devicePath);
      const interrupted = options.interrupted === true && found?.type === fs && !found.pttype;
      if (found === undefined || interrupted) {
        logger?.info({ devicePath, fs, interrupted }, interrupted ? 'an earlier format of this device was interrupted; formatting again' : 'device is blank, formatting');
        await options.beforeFormat?.();
        const args = fs === 'ext4' ? ['-F', '-q', '-m', '0', '--', devicePath] : ['-f', '-q', '--', devicePath];
        await runner(`mkfs.${fs}`, args, { timeoutMs: LIMITS.mkfsMs, ...(options.signal ? { signal: options.signal } : {}) });
        return { formatted: true };
      }
      if (found.pttype) {
        throw new BerthError('UNSAFE_DEVICE', `${devicePath} holds a ${found.pttype} partition table; refusing to format or mount it (its data is left untouched)`);
      }
      if (found.type !== fs) {
        throw new BerthError('UNSAFE_DEVICE', `${devicePath} holds a ${found.type} filesystem but the volume asks for ${fs}; refusing to format or mount it (its data is left untouched)`);
      }
      return { formatted: false };
    },

    async mount(devicePath, mountpoint, fs, mountOptions) {
      await assertBlockDevice(devicePath);
      if (await isMounted(mountpoint)) {
        if (await isMounted(mountpoint, devicePath)) return;
        throw new BerthError('CONFLICT', `${mountpoint} already has another device mounted on it`);
      }
      if (fs === 'ext4') await fsckExt4(devicePath);
      const options = [fs === 'xfs' ? 'nouuid' : '', mountOptions ?? ''].filter(Boolean).join(',');
      await runner('mount', ['-t', fs, ...(options ? ['-o', options] : []), '--', devicePath, mountpoint], { timeoutMs: LIMITS.mountMs });
      if (!(await isMounted(mountpoint, devicePath))) {
        throw new BerthError('INTERNAL', `mount reported success but ${devicePath} is not mounted at ${mountpoint}`);
      }
    },

    async unmount(mountpoint) {
      if (!(await isMounted(mountpoint))) return;
      try {
        await runner('umount', ['--', mountpoint], { timeoutMs: LIMITS.mountMs });
      } catch (err) {
        if (/busy/i.test(errorMessage(err))) {
          throw new BerthError('CONFLICT', `${mountpoint} is busy (a process still uses it); not unmounted`, { cause: err });
        }
        throw err;
      }
      if (await isMounted(mountpoint)) throw new BerthError('INTERNAL', `umount reported success but ${mountpoint} is still mounted`);
    },

    async grow(devicePath, mountpoint, fs) {
      const rdev = await assertBlockDevice(devicePath);
      const deviceBytes = await deviceSizeBytes(devicePath, rdev);
      const seen = checkedSizes.get(mountpoint);
      if (seen && seen.rdev === rdev && seen.deviceBytes === deviceBytes) return { grown: false };
      const fsBytes = await fsSizeBytes(devicePath, mountpoint, fs);
      checkedSizes.set(mountpoint, { rdev, deviceBytes });
      // Below 1 MiB of slack there is nothing worth growing (alignment, xfs log).
      if (deviceBytes - fsBytes < 2 ** 20) return { grown: false };
      logger?.info({ devicePath, fsBytes, deviceBytes }, 'growing filesystem to the device size');
      if (fs === 'ext4') await runner('resize2fs', [devicePath], { timeoutMs: LIMITS.growMs });
      else await runner('xfs_growfs', [mountpoint], { timeoutMs: LIMITS.growMs });
      return { grown: true };
    },

    isMounted,

    async ensureMountpoint(mountpoint) {
      // The immutable flag outlives mounts, so it is set once, when the directory is made.
      const created = await mkdir(mountpoint, { recursive: true, mode: 0o700 });
      if (created === undefined || (await isMounted(mountpoint))) return;
      await chattr('+i', mountpoint);
    },

    async removeMountpoint(mountpoint) {
      if (await isMounted(mountpoint)) throw new BerthError('CONFLICT', `${mountpoint} is still mounted`);
      try {
        await chattr('-i', mountpoint);
      } catch (err) {
        if (/No such file/i.test(errorMessage(err))) return;
        throw err;
      }
      await rmdir(mountpoint).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    },
  };
}
