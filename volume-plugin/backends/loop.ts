import { mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { BerthError } from '../../lib/errors.js';
import type { Runner } from '../../lib/exec.js';
import { majorMinorOf } from '../../lib/mountinfo.js';
import { formatSize, type VolumeOptions } from '../options.js';
import type { AttachedDevice, Backend, VolumeRecord } from './backend.js';

/**
 * Local backend: one sparse image file per volume under <stateDir>/images,
 * attached with losetup, with a JSON sidecar holding options and creation time.
 * Usable on any Linux Docker host, and what most tests drive.
 *
 * onRemove=retain keeps the image and marks the sidecar retained: the volume
 * leaves Docker's list, and a later Create with the same name adopts it again.
 */

const MIN_BYTES = { ext4: 16 * 2 ** 20, xfs: 300 * 2 ** 20 } as const;
const EBS_ONLY = ['type', 'iops', 'throughput', 'encrypted', 'kmsKeyId', 'snapshotId'] as const;
const LOSETUP_MS = 30_000;

interface Sidecar {
  version: 1;
  name: string;
  options: VolumeOptions;
  createdAt: string;
  retained?: boolean;
}

interface LoopDevice {
  name: string;
  'back-file': string | null;
  'back-ino': number | string | null;
  'back-maj:min': string | null;
}

export interface LoopBackendDeps {
  stateDir: string;
  runner: Runner;
  logger?: Logger;
}

export function createLoopBackend(deps: LoopBackendDeps): Backend {
  const imagesDir = join(deps.stateDir, 'images');
  const { runner, logger } = deps;
  const imagePath = (name: string) => join(imagesDir, `${name}.img`);
  const sidecarPath = (name: string) => join(imagesDir, `${name}.json`);

  async function readSidecar(name: string): Promise<Sidecar | undefined> {
    let text: string;
    try {
      text = await readFile(sidecarPath(name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as Sidecar;
    } catch {
      throw new BerthError('INTERNAL', `metadata ${sidecarPath(name)} is not valid JSON; fix or remove it by hand (the image file is untouched)`);
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

  async function loopDevices(): Promise<LoopDevice[]> {
    const { stdout } = await runner('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN'], { timeoutMs: LOSETUP_MS });
    if (!stdout.trim()) return [];
    return (JSON.parse(stdout) as { loopdevices: LoopDevice[] }).loopdevices ?? [];
  }

  /** Loop devices backed by this image: same path, or the same inode on the same filesystem. */
  async function devicesFor(image: string): Promise<LoopDevice[]> {
    const st = await stat(image).catch(() => undefined);
    const majMin = st ? majorMinorOf(st.dev) : undefined;
    return (await loopDevices()).filter((d) => {
      const file = (d['back-file'] ?? '').replace(/ \(deleted\)$/, '');
      const sameInode = st !== undefined && Number(d['back-ino']) === st.ino && d['back-maj:min']?.trim() === majMin;
      return sameInode || file === image;
    });
  }

  /** A loop device is the volume's only when it is backed by this very image file (inode), not a deleted one. */
  async function verify(device: LoopDevice, image: string): Promise<void> {
    const st = await stat(image);
    const file = device['back-file'] ?? '';
    if (file.endsWith(' (deleted)') || Number(device['back-ino']) !== st.ino) {
      throw new BerthError('UNSAFE_DEVICE', `${device.name} is not backed by ${image} (it holds ${file || 'nothing'}); refusing to use it`);
    }
  }

  async function detachAll(image: string): Promise<void> {
    for (const d of await devicesFor(image)) {
      await runner('losetup', ['--detach', d.name], { timeoutMs: LOSETUP_MS, okExitCodes: [0, 1] });
      logger?.debug({ device: d.name, image }, 'loop device detached');
    }
  }

  return {
    kind: 'loop',
    scope: 'local',

    validate(name, options) {
      const ebsOnly = EBS_ONLY.filter((k) => options[k] !== undefined);
      if (ebsOnly.length > 0) {
        throw new BerthError('INVALID_ARGUMENT', `volume ${name}: option(s) ${ebsOnly.join(', ')} need the ebs backend; this agent runs the loop backend`);
      }
      const min = MIN_BYTES[options.fs];
      if (options.sizeBytes < min) {
        throw new BerthError('INVALID_ARGUMENT', `volume ${name}: size ${formatSize(options.sizeBytes)} is below the ${formatSize(min)} minimum for ${options.fs}`);
      }
    },

    async create(name, options) {
      const existing = await readSidecar(name);
      if (existing && !existing.retained) return toRecord(existing);
      await mkdir(imagesDir, { recursive: true, mode: 0o700 });
      if (existing?.retained) {
        const adopted: Sidecar = { ...existing, retained: false };
        await writeFileAtomic(sidecarPath(name), JSON.stringify(adopted), 0o600);
        logger?.info({ name }, 'adopted a retained volume');
        return toRecord(adopted);
      }
      // A leftover image without metadata (a create cut short) is adopted, never truncated.
      try {
        const handle = await open(imagePath(name), 'wx', 0o600);
        try {
          await handle.truncate(options.sizeBytes);
        } finally {
          await handle.close();
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        logger?.warn({ name }, 'image file without metadata found; adopting it as is');
      }
      const side: Sidecar = { version: 1, name, options, createdAt: new Date().toISOString() };
      await writeFileAtomic(sidecarPath(name), JSON.stringify(side), 0o600);
      return toRecord(side);
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

    async attach(record): Promise<AttachedDevice> {
      const image = imagePath(record.name);
      const st = await stat(image).catch(() => undefined);
      if (!st) {
        throw new BerthError('NOT_FOUND', `volume ${record.name}: its image file ${image} is missing (deleted outside berth?); its data is gone. Remove the volume to clear it`);
      }
      let device = (await devicesFor(image)).find((d) => Number(d['back-ino']) === st.ino);
      if (!device) {
        const { stdout } = await runner('losetup', ['--find', '--show', '--', image], { timeoutMs: LOSETUP_MS });
        const name = stdout.trim();
        if (!/^\/dev\/loop\d+$/.test(name)) throw new BerthError('INTERNAL', `losetup returned an unexpected device ${JSON.stringify(name)}`);
        device = (await loopDevices()).find((d) => d.name === name);
        if (!device) throw new BerthError('INTERNAL', `loop device ${name} vanished right after losetup attached it`);
      }
      await verify(device, image);
      return { devicePath: device.name, record };
    },

    async release(record) {
      await detachAll(imagePath(record.name));
    },

    async detach(record) {
      await detachAll(imagePath(record.name));
    },

    async remove(record) {
      const name = record.name;
      await detachAll(imagePath(name));
      const side = await readSidecar(name);
      if (!side) return;
      if (record.options.onRemove === 'delete') {
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
  };
}
