import { constants } from 'node:fs';
import { lstat, mkdir, open, readFile, realpath, rmdir, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { BerthError, errorMessage, isBerthError } from '../../lib/errors.js';
import type { Runner } from '../../lib/exec.js';
import { majorMinorOf, mountAt, readMountinfo } from '../../lib/mountinfo.js';
import { TOOL_LIMITS } from '../budgets.js';
import type { HostPaths } from '../host-paths.js';
import { mountOptionArgument, type Filesystem } from '../options.js';
import { filesystemBytes } from './superblock.js';
import type { FilesystemOps } from './types.js';

/** Device paths we are willing to hand to mkfs/mount: absolute, no spaces or shell-ish characters. */
const DEVICE_PATH = /^\/[A-Za-z0-9/_.:-]+$/;

/**
 * Every program this module runs (`berth doctor` and the installer check that
 * they are installed): those every volume needs, and those of each filesystem.
 */
export const FILESYSTEM_TOOLS = {
  all: ['blkid', 'blockdev', 'mount', 'umount', 'chattr', 'sync'],
  ext4: ['mkfs.ext4', 'e2fsck', 'resize2fs'],
  xfs: ['mkfs.xfs', 'xfs_growfs'],
} as const satisfies Record<'all' | Filesystem, readonly string[]>;

/** Time limits of every tool run here, with the core's other budgets (budgets.ts). */
const LIMITS = TOOL_LIMITS;

export interface FilesystemDeps {
  runner: Runner;
  /** sysfs (device sizes) and the mount table every mount is checked against. */
  paths: Pick<HostPaths, 'sysfsRoot' | 'mountinfoPath'>;
  logger?: Logger;
  /** The grow check's read of the filesystem's own size (tests count it). Default: its superblock. */
  filesystemBytes?: typeof filesystemBytes;
}

export interface Probe {
  type?: string;
  pttype?: string;
}

export function createFilesystemOps(deps: FilesystemDeps): FilesystemOps & { probe(devicePath: string): Promise<Probe | undefined> } {
  const { runner, logger } = deps;
  const readFilesystemBytes = deps.filesystemBytes ?? filesystemBytes;
  const { mountinfoPath } = deps.paths;
  const sysDevBlock = join(deps.paths.sysfsRoot, 'dev', 'block');
  let chattrUnsupportedWarned = false;
  /**
   * Device size at the last grow check per mountpoint (one per volume until its Remove): an unchanged size
   * needs no filesystem read, whichever loop device number the volume got this time.
   */
  const checkedSizes = new Map<string, number>();

  async function deviceSizeBytes(devicePath: string, rdev: number): Promise<number> {
    const sectors = await readFile(join(sysDevBlock, majorMinorOf(rdev), 'size'), 'utf8').catch(() => undefined);
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

  /**
   * What to do about a failed check (e2fsck(8) exit bits): 4 is errors left in the filesystem; 8, an
   * operational error, is either a filesystem e2fsck cannot read (a bad superblock) or a device held by
   * someone else (mounted in another mount namespace, or opened exclusively), where the filesystem may
   * be fine and repairing it is the wrong advice.
   */
  function fsckAdvice(exitCode: number, output: string): string {
    if (!(exitCode & 4) && /Device or resource busy|is in use/i.test(output)) {
      return 'e2fsck could not open it, nothing was changed: the device is in use elsewhere (mounted in another mount namespace, or opened exclusively by another program); find what holds it before mounting';
    }
    return 'repair it by hand before mounting';
  }

  async function fsckExt4(devicePath: string): Promise<void> {
    // e2fsck -p: 0 clean, 1 errors corrected, 2 corrected and a reboot is advised (root fs only);
    // 4 and up means errors left or an operational failure: do not mount.
    const res = await runner('e2fsck', ['-p', devicePath], { timeoutMs: LIMITS.fsckMs, okExitCodes: [0, 1, 2, 4, 8, 12, 16, 32] });
    if (res.exitCode >= 4) {
      const detail = (res.stdout + '\n' + res.stderr).trim().split('\n').slice(-2).join(' | ');
      throw new BerthError('UNSAFE_DEVICE', `filesystem check of ${devicePath} failed (e2fsck exit ${res.exitCode}): ${detail}; ${fsckAdvice(res.exitCode, res.stdout + res.stderr)}`);
    }
    if (res.exitCode > 0) logger?.warn({ devicePath, exitCode: res.exitCode }, 'e2fsck corrected errors');
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

  /**
   * A directory berth made, reached without a symbolic link anywhere on its
   * path: a link (or a file) at a mountpoint would make mount(8) mount the
   * volume wherever it points. Refused and left as it is, for a person to look at.
   */
  async function assertOwnDirectory(path: string): Promise<void> {
    const st = await lstat(path);
    if (st.isSymbolicLink()) {
      throw new BerthError('CONFLICT', `${path} is a symbolic link, not a directory berth made; refusing to mount a volume through it (remove it by hand)`);
    }
    if (!st.isDirectory()) throw new BerthError('CONFLICT', `${path} is not a directory; refusing to mount a volume on it (remove it by hand)`);
    const real = await realpath(path);
    if (real !== path) {
      throw new BerthError('CONFLICT', `${path} leads to ${real} through a symbolic link; refusing to mount a volume through it (use a state directory without links)`);
    }
  }

  /**
   * The mountpoint opened without following links (O_NOFOLLOW|O_DIRECTORY)
   * and checked to be the very directory at that path (same dev/ino): mount(8)
   * is then given /proc/<pid>/fd/<n>, so the kernel mounts on this directory
   * even if the path is swapped for a link meanwhile.
   */
  async function openMountpoint(mountpoint: string): Promise<{ handle: FileHandle; target: string }> {
    await assertOwnDirectory(dirname(mountpoint));
    await assertOwnDirectory(mountpoint);
    const handle = await open(mountpoint, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ELOOP' || err.code === 'ENOTDIR') throw new BerthError('CONFLICT', `${mountpoint} changed into something other than a directory; refusing to mount on it`);
      throw err;
    });
    try {
      const [opened, atPath] = await Promise.all([handle.stat(), lstat(mountpoint)]);
      if (opened.dev !== atPath.dev || opened.ino !== atPath.ino) {
        throw new BerthError('CONFLICT', `${mountpoint} changed while berth opened it; refusing to mount on it`);
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    return { handle, target: `/proc/${process.pid}/fd/${handle.fd}` };
  }

  /** Unmounts every mount of this device that appeared since `before` (mount ids), wherever it landed. */
  async function unmountNew(majorMinor: string, before: ReadonlySet<number>): Promise<void> {
    const added = (await readMountinfo(mountinfoPath)).filter((e) => e.majorMinor === majorMinor && !before.has(e.mountId)).reverse();
    for (const entry of added) {
      await runner('umount', ['--no-canonicalize', '--', entry.mountpoint], { timeoutMs: LIMITS.mountMs }).catch((err: unknown) =>
        logger?.error({ mountpoint: entry.mountpoint, err: errorMessage(err) }, 'could not undo a mount that landed in the wrong place'),
      );
    }
  }

  return {
    probe,

    async prepare(devicePath, fs, options = {}) {
      let found: Probe | undefined;
      if (options.blank) await assertBlockDevice(devicePath);
      else found = await probe(devicePath);
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

    async mount(devicePath, mountpoint, fs, mountOptions, call = {}) {
      const options = mountOptionArgument(fs, mountOptions);
      const rdev = await assertBlockDevice(devicePath);
      const majorMinor = majorMinorOf(rdev);
      // One read serves both: what is at the mountpoint, and this device's mounts before ours (to undo only ours).
      const table = await readMountinfo(mountinfoPath);
      const present = mountAt(table, mountpoint);
      if (present) {
        if (present.majorMinor === majorMinor) return;
        throw new BerthError('CONFLICT', `${mountpoint} already has another device mounted on it`);
      }
      const before = new Set(table.filter((e) => e.majorMinor === majorMinor).map((e) => e.mountId));
      const { handle, target } = await openMountpoint(mountpoint);
      const signal = call.signal ? { signal: call.signal } : {};
      try {
        // Right after berth's own mkfs there is nothing to check: the filesystem is the one just made (types.ts MountOptions).
        // fsck is not given the deadline: a repair killed half way is worse than a late answer (undone after).
        if (fs === 'ext4' && !call.justFormatted) await fsckExt4(devicePath);
        try {
          // --no-canonicalize: mount(8) hands the /proc fd path to mount(2) as it is, never a path it resolved itself.
          await runner('mount', ['--no-canonicalize', '-t', fs, '-o', options, '--', devicePath, target], { timeoutMs: LIMITS.mountMs, ...signal });
        } catch (err) {
          await unmountNew(majorMinor, before);
          // Without the option list or the /proc path: the sentence names what the user knows.
          const detail = isBerthError(err, 'TIMEOUT')
            ? `mount did not finish within ${LIMITS.mountMs} ms`
            : errorMessage(err).replace(/^[\s\S]*? exited (\d+)(: )?/, 'mount exited $1$2').split(target).join(mountpoint);
          throw new BerthError(isBerthError(err) ? err.code : 'INTERNAL', `could not mount ${devicePath} (${fs}) at ${mountpoint}: ${detail}`, { cause: err });
        }
        const landed = await lstat(mountpoint).catch(() => undefined);
        if (!(await isMounted(mountpoint, devicePath)) || landed?.dev !== rdev) {
          await unmountNew(majorMinor, before);
          throw new BerthError('INTERNAL', `mount reported success but ${devicePath} is not mounted at ${mountpoint}; undone`);
        }
      } finally {
        await handle.close();
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

    async grow(devicePath, mountpoint, fs, options = {}) {
      const rdev = await assertBlockDevice(devicePath);
      const deviceBytes = await deviceSizeBytes(devicePath, rdev);
      if (options.justFormatted) {
        // mkfs sized the filesystem to this very device a moment ago: nothing to grow.
        checkedSizes.set(mountpoint, deviceBytes);
        return { grown: false };
      }
      if (checkedSizes.get(mountpoint) === deviceBytes) return { grown: false };
      const fsBytes = await readFilesystemBytes(devicePath, fs);
      checkedSizes.set(mountpoint, deviceBytes);
      // Below 1 MiB of slack there is nothing worth growing (alignment, xfs log).
      if (deviceBytes - fsBytes < 2 ** 20) return { grown: false };
      logger?.info({ devicePath, fsBytes, deviceBytes }, 'growing filesystem to the device size');
      if (fs === 'ext4') await runner('resize2fs', [devicePath], { timeoutMs: LIMITS.growMs });
      else await runner('xfs_growfs', [mountpoint], { timeoutMs: LIMITS.growMs });
      return { grown: true };
    },

    isMounted,

    async deviceBytes(devicePath) {
      return deviceSizeBytes(devicePath, await assertBlockDevice(devicePath));
    },

    async sync(mountpoint) {
      // -f, not --file-system: busybox's sync (a minimal image) knows only the short option.
      await runner('sync', ['-f', '--', mountpoint], { timeoutMs: LIMITS.mountMs });
    },

    async ensureMountpoint(mountpoint) {
      await mkdir(dirname(mountpoint), { recursive: true, mode: 0o700 });
      await assertOwnDirectory(dirname(mountpoint));
      // Not recursive: an existing link or file at the path is an EEXIST to look at, never something to follow.
      const created = await mkdir(mountpoint, { mode: 0o700 }).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'EEXIST') return false;
          throw err;
        },
      );
      await assertOwnDirectory(mountpoint);
      // The immutable flag outlives mounts, so it is set once, when the directory is made.
      if (!created || (await isMounted(mountpoint))) return;
      await chattr('+i', mountpoint);
    },

    async removeMountpoint(mountpoint) {
      if (await isMounted(mountpoint)) throw new BerthError('CONFLICT', `${mountpoint} is still mounted`);
      checkedSizes.delete(mountpoint);
      const st = await lstat(mountpoint).catch(() => undefined);
      if (!st) return;
      if (!st.isDirectory()) {
        logger?.warn({ mountpoint }, 'the mountpoint is not a directory berth made; left as it is');
        return;
      }
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
