import { mkdir, open, readdir, readFile, readlink, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import * as z from 'zod/mini';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { BerthError, errorMessage } from '../../lib/errors.js';
import type { Runner } from '../../lib/exec.js';
import { majorMinorOf, readMountinfo } from '../../lib/mountinfo.js';
import { sleep } from '../../lib/sleep.js';
import { TOOL_LIMITS } from '../budgets.js';
import { formatSize, storedOptionsSchema, type BackendOptions, type VolumeOptions } from '../options.js';
import type { AttachedDevice, Backend, RetainedVolume, VolumeRecord } from './backend.js';
import type { HostPaths } from '../host-paths.js';

/**
 * Local backend: one sparse image file per volume under <stateDir>/images,
 * attached with losetup, with a JSON sidecar holding options and creation time.
 * Usable on any Linux Docker host, and what most tests drive.
 *
 * onRemove=retain keeps the image and marks the sidecar retained: the volume
 * leaves Docker's list, and a later Create with the same name adopts it again.
 */

/** The programs this backend runs (besides the filesystem's: fs/filesystem.ts FILESYSTEM_TOOLS). */
export const LOOP_TOOLS = ['losetup'] as const;

const MIN_BYTES = { ext4: 16 * 2 ** 20, xfs: 300 * 2 ** 20 } as const;
/** No options beyond the core's. */
export const LOOP_OPTIONS: BackendOptions = { backend: 'loop', given: {}, stored: {} };

/**
 * The loop backend's options, refusing `foreign` backends' keys as "need the …
 * backend" rather than "unknown". The agent, which knows every backend, passes
 * them (agent/backend-factory.ts); the loop backend itself names no other.
 */
export function loopOptions(foreign: readonly BackendOptions[] = []): BackendOptions {
  return foreign.length === 0 ? LOOP_OPTIONS : { ...LOOP_OPTIONS, foreign };
}

const LOSETUP_MS = TOOL_LIMITS.losetupMs;
/** `<name>.json` must fit in NAME_MAX (255 bytes). */
const MAX_NAME = 255 - '.json'.length;
/** Tools berth runs on a volume's device; one found still running at start was left by an agent that died. */
const DEVICE_TOOLS = new Set(['mkfs.ext4', 'mke2fs', 'mkfs.xfs', 'e2fsck', 'fsck.ext4', 'blkid', 'resize2fs', 'xfs_growfs', 'mount', 'umount', 'losetup']);

const SidecarSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  options: storedOptionsSchema(LOOP_OPTIONS),
  createdAt: z.string(),
  retained: z.optional(z.boolean()),
});
type Sidecar = z.infer<typeof SidecarSchema>;

interface LoopDevice {
  device: string;
  backingFile: string;
}

const DELETED = / \(deleted\)$/;

export interface LoopBackendDeps {
  stateDir: string;
  /**
   * sysfs (block/: loop devices and their backing files), the mount table
   * checked before detaching a device at start, and procfs (tools an agent
   * that died left running).
   */
  paths: Pick<HostPaths, 'sysfsRoot' | 'mountinfoPath' | 'procRoot'>;
  runner: Runner;
  logger?: Logger;
  /** Other backends' options, refused as needing that backend (loopOptions). */
  foreignOptions?: readonly BackendOptions[];
}

/** Where a loop volume lives: `<stateDir>/images/<name>.img` and its sidecar `<name>.json`. */
export function loopLayout(stateDir: string) {
  const imagesDir = join(stateDir, 'images');
  return {
    imagesDir,
    imagePath: (name: string) => join(imagesDir, `${name}.img`),
    sidecarPath: (name: string) => join(imagesDir, `${name}.json`),
  };
}

export function createLoopBackend(deps: LoopBackendDeps): Backend {
  const { imagesDir, imagePath, sidecarPath } = loopLayout(deps.stateDir);
  const { runner, logger } = deps;
  const sysBlock = join(deps.paths.sysfsRoot, 'block');
  const procDir = deps.paths.procRoot;
  const { mountinfoPath } = deps.paths;
  /**
   * Images this agent made (open O_EXCL + truncate, never written) and has not attached since: with no block
   * allocated (st_blocks, which counts delayed allocation too) they read as zeros, so their first attach is
   * known blank and the probe for existing data can be skipped. Forgotten at restart: then blkid decides.
   */
  const neverAttached = new Set<string>();

  async function readSidecar(name: string): Promise<Sidecar | undefined> {
    if (name.length > MAX_NAME) return undefined; // its sidecar cannot exist
    let text: string;
    try {
      text = await readFile(sidecarPath(name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let parsed;
    try {
      parsed = SidecarSchema.safeParse(JSON.parse(text));
    } catch {
      throw new BerthError('INTERNAL', `metadata ${sidecarPath(name)} is not valid JSON; fix or remove it by hand (the image file is untouched)`);
    }
    if (!parsed.success || parsed.data.name !== name) {
      throw new BerthError('INTERNAL', `metadata ${sidecarPath(name)} does not describe volume ${name}; fix or remove it by hand (the image file is untouched)`);
    }
    const { options, ...rest } = parsed.data;
    return { ...rest, options: Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as unknown as VolumeOptions };
  }

  const imageStat = (name: string) => stat(imagePath(name)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });

  /** Creates the sparse image and its sidecar, or, when any step fails, neither. */
  async function createFresh(name: string, options: VolumeOptions): Promise<Sidecar> {
    await mkdir(imagesDir, { recursive: true, mode: 0o700 });
    const image = imagePath(name);
    const leftover = await imageStat(name);
    if (leftover && leftover.blocks === 0) {
      // An image without metadata that was never written to: a Create cut short. It holds nothing; start again.
      logger?.warn({ name, image }, 'image file of an unfinished create found (never written); creating it anew');
      await unlink(image);
    } else if (leftover) {
      // Written to but without metadata (metadata lost): it may hold data, so it is adopted, never truncated.
      logger?.warn({ name, image, bytes: leftover.size }, 'image file with data but without metadata found; adopting it as is');
      const side: Sidecar = { version: 1, name, options: { ...options, sizeBytes: leftover.size }, createdAt: new Date().toISOString() };
      await writeFileAtomic(sidecarPath(name), JSON.stringify(side), 0o600);
      return side;
    }
    const handle = await open(image, 'wx', 0o600);
    try {
      try {
        await handle.truncate(options.sizeBytes);
      } finally {
        await handle.close();
      }
      const side: Sidecar = { version: 1, name, options, createdAt: new Date().toISOString() };
      await writeFileAtomic(sidecarPath(name), JSON.stringify(side), 0o600);
      neverAttached.add(name);
      return side;
    } catch (err) {
      await unlink(image).catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EFBIG' || code === 'EINVAL') {
        throw new BerthError('INVALID_ARGUMENT', `volume ${name}: size ${formatSize(options.sizeBytes)} is larger than the filesystem under ${imagesDir} allows for one file`);
      }
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new BerthError('UNAVAILABLE', `volume ${name}: no space left under ${imagesDir} to record it (${code}); nothing was created`);
      }
      throw err;
    }
  }

  async function toRecord(side: Sidecar): Promise<VolumeRecord> {
    const image = imagePath(side.name);
    const present = await stat(image).then(
      () => true,
      () => false,
    );
    return {
      name: side.name,
      id: image,
      options: side.options,
      createdAt: side.createdAt,
      status: { backend: 'loop', image, size: formatSize(side.options.sizeBytes), ...(present ? {} : { problem: 'image file is missing' }) },
    };
  }

  /** Attached loop devices and the file the kernel says backs each (procfs and sysfs: no process to spawn). */
  async function loopDevices(): Promise<LoopDevice[]> {
    const found = await Promise.all((await boundLoopNames()).map((n) => loopDevice(`/dev/${n}`)));
    return found.filter((d): d is LoopDevice => d !== undefined);
  }

  /**
   * Names of the loop devices that may be attached. The kernel keeps a node for every loop device ever made
   * (hundreds on a busy host, each a sysfs read), but /proc/partitions lists only block devices with a
   * capacity (block/genhd.c show_partition): every attached loop device of a non-empty file, and berth's
   * images are never empty. Without /proc/partitions, every node.
   */
  async function boundLoopNames(): Promise<string[]> {
    const partitions = await readFile(join(procDir, 'partitions'), 'utf8').catch(() => undefined);
    if (partitions !== undefined) return [...partitions.matchAll(/\s(loop\d+)$/gm)].map((m) => m[1]!);
    return (await readdir(sysBlock)).filter((n) => /^loop\d+$/.test(n));
  }

  /** One loop device and its backing file, or undefined when it has none (not attached). */
  async function loopDevice(device: string): Promise<LoopDevice | undefined> {
    const backing = await readFile(join(sysBlock, device.slice('/dev/'.length), 'loop', 'backing_file'), 'utf8').catch(() => undefined);
    return backing === undefined ? undefined : { device, backingFile: backing.trim() };
  }

  /** Loop devices backed by this image path, including ones whose file was deleted since. */
  async function devicesFor(image: string): Promise<LoopDevice[]> {
    return (await loopDevices()).filter((d) => d.backingFile.replace(DELETED, '') === image);
  }

  /** The device is the volume's only when the kernel names this very path as its live backing file. */
  function verify(device: LoopDevice, image: string): void {
    if (device.backingFile !== image) {
      throw new BerthError('UNSAFE_DEVICE', `${device.device} is backed by ${device.backingFile || 'nothing'}, not ${image}; refusing to use it`);
    }
  }

  async function detachAll(image: string): Promise<void> {
    for (const d of await devicesFor(image)) {
      await runner('losetup', ['--detach', d.device], { timeoutMs: LOSETUP_MS, okExitCodes: [0, 1] });
      logger?.debug({ device: d.device, image }, 'loop device detached');
    }
  }

  /** Processes running one of berth's tools with one of these paths among their arguments. */
  async function toolsUsing(paths: ReadonlySet<string>): Promise<Array<{ pid: number; cmd: string }>> {
    const out: Array<{ pid: number; cmd: string }> = [];
    for (const entry of await readdir(procDir).catch(() => [] as string[])) {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || pid === process.pid) continue;
      // comm is the name of the file executed (a wrapper script's own name, not its interpreter's).
      const tool = (await readFile(join(procDir, entry, 'comm'), 'utf8').catch(() => '')).trim();
      if (!DEVICE_TOOLS.has(tool)) continue;
      const argv = (await readFile(join(procDir, entry, 'cmdline'), 'utf8').catch(() => '')).split('\0').filter(Boolean);
      if (argv.slice(1).some((a) => paths.has(a))) out.push({ pid, cmd: argv.join(' ') });
    }
    return out;
  }

  async function alive(pid: number): Promise<boolean> {
    return readlink(join(procDir, String(pid), 'exe')).then(
      () => true,
      (err: NodeJS.ErrnoException) => err.code !== 'ENOENT',
    );
  }

  return {
    scope: 'local',
    options: loopOptions(deps.foreignOptions),

    validate(name, options) {
      if (name.length > MAX_NAME) {
        throw new BerthError('INVALID_ARGUMENT', `volume name ${name.slice(0, 40)}… is ${name.length} characters; the loop backend allows at most ${MAX_NAME}`);
      }
      const min = MIN_BYTES[options.fs];
      if (options.sizeBytes < min) {
        throw new BerthError('INVALID_ARGUMENT', `volume ${name}: size ${formatSize(options.sizeBytes)} is below the ${formatSize(min)} minimum for ${options.fs}`);
      }
    },

    async create(name, options, call = {}) {
      const existing = await readSidecar(name);
      if (existing && !(await imageStat(name))) {
        if (existing.retained) {
          // Retained, but its data was deleted behind berth's back: nothing is left to adopt, the name is free.
          logger?.warn({ name, image: imagePath(name) }, 'retained volume has no image file any more; creating it anew');
          await unlink(sidecarPath(name));
        } else {
          call.accept?.(await toRecord(existing), false);
          return toRecord(existing);
        }
      } else if (existing) {
        call.accept?.(await toRecord(existing), existing.retained === true);
        if (!existing.retained) return toRecord(existing);
        const adopted: Sidecar = { ...existing, retained: false };
        await writeFileAtomic(sidecarPath(name), JSON.stringify(adopted), 0o600);
        logger?.info({ name }, 'adopted a retained volume');
        return toRecord(adopted);
      }
      return toRecord(await createFresh(name, options));
    },

    async find(name) {
      const side = await readSidecar(name);
      return side && !side.retained ? toRecord(side) : undefined;
    },

    async list() {
      const files = await readdir(imagesDir).catch(() => [] as string[]);
      const out: VolumeRecord[] = [];
      for (const f of files.filter((f) => f.endsWith('.json') && !f.startsWith('.'))) {
        const side = await readSidecar(f.slice(0, -'.json'.length)).catch(() => undefined);
        if (side && !side.retained) out.push(await toRecord(side));
      }
      return out;
    },

    async attach(record, call = {}): Promise<AttachedDevice> {
      const image = imagePath(record.name);
      const st = await stat(image).catch(() => undefined);
      if (!st) {
        throw new BerthError('NOT_FOUND', `volume ${record.name}: its image file ${image} is missing (deleted outside berth?); its data is gone. Remove the volume to clear it`);
      }
      const made = neverAttached.delete(record.name);
      const existing = (await devicesFor(image)).find((d) => !DELETED.test(d.backingFile));
      if (existing) {
        verify(existing, image);
        return { devicePath: existing.device, record };
      }
      call.signal?.throwIfAborted();
      let stdout: string;
      try {
        ({ stdout } = await runner('losetup', ['--find', '--show', '--', image], { timeoutMs: LOSETUP_MS, ...(call.signal ? { signal: call.signal } : {}) }));
      } catch (err) {
        // Stopped (deadline) or failed after the kernel may have attached the image: no device of it was live before, so any now is this call's.
        for (const d of await devicesFor(image)) {
          if (d.backingFile === image) await runner('losetup', ['--detach', d.device], { timeoutMs: LOSETUP_MS, okExitCodes: [0, 1] }).catch(() => undefined);
        }
        throw err;
      }
      const device = stdout.trim();
      if (!/^\/dev\/loop\d+$/.test(device)) throw new BerthError('INTERNAL', `losetup returned an unexpected device ${JSON.stringify(device)}`);
      const attached = await loopDevice(device);
      try {
        verify(attached ?? { device, backingFile: '' }, image);
      } catch (err) {
        await runner('losetup', ['--detach', device], { timeoutMs: LOSETUP_MS, okExitCodes: [0, 1] });
        throw err;
      }
      return { devicePath: device, record, ...(made && st.blocks === 0 ? { blank: true } : {}) };
    },

    async release(record) {
      await detachAll(imagePath(record.name));
    },

    /**
     * Grow only: the image is extended (sparse: no block is written), the sidecar records the size, and each
     * loop device of the image is told its new capacity (`losetup --set-capacity`, LOOP_SET_CAPACITY), which
     * the kernel shows at once in sysfs: the online grow check (or this resize's caller) grows the filesystem.
     */
    async resize(record, options, call = {}) {
      const { name } = record;
      const side = await readSidecar(name);
      if (!side || side.retained) throw new BerthError('NOT_FOUND', `no volume named ${name}`);
      const had = side.options as Record<string, unknown>;
      const changed = Object.entries(options).filter(([k, v]) => k !== 'sizeBytes' && v !== had[k]).map(([k]) => k);
      if (changed.length > 0) throw new BerthError('INVALID_ARGUMENT', `volume ${name}: the loop backend resizes only; it cannot change ${changed.join(', ')}`);
      const image = imagePath(name);
      const st = await imageStat(name);
      if (!st) throw new BerthError('NOT_FOUND', `volume ${name}: its image file ${image} is missing; nothing to resize`);
      if (options.sizeBytes < st.size) {
        throw new BerthError('INVALID_ARGUMENT', `volume ${name}: its image is ${formatSize(st.size)}; it can only grow, not shrink to ${formatSize(options.sizeBytes)}`);
      }
      call.signal?.throwIfAborted();
      const devices = (await devicesFor(image)).filter((d) => !DELETED.test(d.backingFile));
      devices.forEach((d) => verify(d, image));
      if (options.sizeBytes > st.size) {
        const handle = await open(image, 'r+');
        try {
          await handle.truncate(options.sizeBytes);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EFBIG' || code === 'EINVAL') {
            throw new BerthError('INVALID_ARGUMENT', `volume ${name}: size ${formatSize(options.sizeBytes)} is larger than the filesystem under ${imagesDir} allows for one file; unchanged`);
          }
          throw err;
        } finally {
          await handle.close();
        }
      }
      // The image first, then its record: a crash between leaves a larger image, which the next resize or Mount settles.
      const updated: Sidecar = { ...side, options: { ...side.options, sizeBytes: options.sizeBytes } };
      await writeFileAtomic(sidecarPath(name), JSON.stringify(updated), 0o600);
      for (const d of devices) await runner('losetup', ['--set-capacity', d.device], { timeoutMs: LOSETUP_MS });
      logger?.info({ name, from: st.size, to: options.sizeBytes, devices: devices.map((d) => d.device) }, 'loop image enlarged');
      return { record: await toRecord(updated), state: 'done', detail: `image ${image} is ${formatSize(options.sizeBytes)}` };
    },

    async verifyDevice(record, devicePath) {
      const device = await loopDevice(devicePath);
      verify(device ?? { device: devicePath, backingFile: '' }, imagePath(record.name));
    },

    async detach(record) {
      await detachAll(imagePath(record.name));
    },

    async remove(record) {
      const name = record.name;
      neverAttached.delete(name);
      await detachAll(imagePath(name));
      const side = await readSidecar(name);
      if (!side) return;
      if (record.options.onRemove === 'delete' || !(await imageStat(name))) {
        await unlink(imagePath(name)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
        await unlink(sidecarPath(name));
        logger?.info({ name }, 'volume deleted');
      } else {
        await writeFileAtomic(sidecarPath(name), JSON.stringify({ ...side, retained: true }), 0o600);
        logger?.info({ name, image: imagePath(name) }, 'volume removed from Docker; image retained');
      }
    },

    retained() {
      return listRetainedLoopVolumes(deps.stateDir, sysBlock);
    },

    async purgeRetained(name) {
      const volume = (await listRetainedLoopVolumes(deps.stateDir, sysBlock)).find((v) => v.name === name);
      if (!volume) throw new BerthError('NOT_FOUND', `no retained volume named ${name}`);
      if (volume.devices.length > 0) throw new BerthError('CONFLICT', `the image of ${name} is attached to ${volume.devices.join(', ')}: it is in use; nothing deleted`);
      await unlink(volume.image).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await unlink(volume.sidecar);
      logger?.warn({ name, image: volume.image }, 'retained volume purged: its image is deleted');
      return volume;
    },

    async recover(mounted) {
      const ours = (await loopDevices()).filter((d) => d.backingFile.startsWith(imagesDir + '/'));
      if (ours.length === 0) return;
      // A tool an agent that died started (mkfs, fsck…) would race with the next Mount: stop it first.
      const paths = new Set(ours.flatMap((d) => [d.device, d.backingFile.replace(DELETED, '')]));
      const strays = await toolsUsing(paths);
      for (const { pid, cmd } of strays) {
        logger?.warn({ pid, cmd }, 'stopping a tool an earlier agent left running on a volume device');
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      for (const { pid } of strays) for (let i = 0; i < 100 && (await alive(pid)); i++) await sleep(50);
      const mountedDevices = new Set((await readMountinfo(mountinfoPath)).map((e) => e.majorMinor));
      for (const d of ours) {
        const image = d.backingFile.replace(DELETED, '');
        if (mounted.has(image)) continue;
        const rdev = await stat(d.device).then((st) => st.rdev, () => undefined);
        if (rdev !== undefined && mountedDevices.has(majorMinorOf(rdev))) continue;
        await runner('losetup', ['--detach', d.device], { timeoutMs: LOSETUP_MS, okExitCodes: [0, 1] }).catch((err: unknown) =>
          logger?.warn({ device: d.device, err: errorMessage(err) }, 'could not detach a loop device no volume holds'),
        );
        logger?.warn({ device: d.device, image }, 'detached a loop device no mounted volume holds (left by an agent that died)');
      }
    },
  };
}

/** A volume removed from Docker with onRemove=retain whose image is kept (for `berth retained`). */
export interface RetainedLoopVolume extends RetainedVolume {
  sidecar: string;
}

/**
 * Read-only: the retained volumes under a state directory, from their
 * sidecars, with the loop devices the kernel says still use their images.
 */
export async function listRetainedLoopVolumes(stateDir: string, sysBlockDir: string): Promise<RetainedLoopVolume[]> {
  const { imagesDir, imagePath, sidecarPath } = loopLayout(stateDir);
  const files = await readdir(imagesDir).catch(() => [] as string[]);
  const loops = (await readdir(sysBlockDir).catch(() => [] as string[])).filter((n) => /^loop\d+$/.test(n));
  const backing = await Promise.all(
    loops.map(async (n) => ({ device: `/dev/${n}`, file: (await readFile(join(sysBlockDir, n, 'loop', 'backing_file'), 'utf8').catch(() => '')).trim().replace(DELETED, '') })),
  );
  const out: RetainedLoopVolume[] = [];
  for (const f of files.filter((f) => f.endsWith('.json') && !f.startsWith('.')).sort()) {
    const name = f.slice(0, -'.json'.length);
    const side = await readFile(sidecarPath(name), 'utf8').then((t) => JSON.parse(t) as Partial<Sidecar>, () => undefined);
    if (side?.retained !== true) continue;
    const image = imagePath(name);
    const st = await stat(image).catch(() => undefined);
    out.push({
      name,
      image,
      sidecar: sidecarPath(name),
      sizeBytes: side.options?.sizeBytes ?? st?.size ?? 0,
      allocatedBytes: st ? st.blocks * 512 : undefined,
      createdAt: side.createdAt ?? '',
      devices: backing.filter((b) => b.file === image).map((b) => b.device),
    });
  }
  return out;
}
