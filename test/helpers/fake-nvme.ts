import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { majorMinorOf } from '../../lib/mountinfo.js';
import { nvmeSerialOf } from '../../volume-plugin/devices/nvme.js';

/**
 * A sysfs + /dev tree in which "attached EBS volumes" are real loop devices:
 * bind(volumeId) gives the volume a sparse image (kept across detach, like EBS
 * keeps data), attaches it with losetup, and publishes it as nvme<N>n1 with
 * the volume's serial and a device node carrying the loop's device number.
 * Device resolution, mkfs, fsck and mount then run for real.
 */
export interface FakeNvmeTree {
  sysfsRoot: string;
  devRoot: string;
  /** Publishes the volume as an NVMe namespace; returns its /dev path. */
  bind(volumeId: string, sizeBytes: number): Promise<string>;
  /** Removes the namespace and detaches its loop device; the image (the data) stays. */
  unbind(volumeId: string): Promise<void>;
  /** Publishes a block device that claims this serial but is another disk (for the "wrong serial" cases). */
  bindImpostor(serial: string, sizeBytes: number): Promise<string>;
  /** The loop device currently behind a volume. */
  loopOf(volumeId: string): string | undefined;
  bound(): string[];
  /** Detaches every loop device it attached; the caller owns root. */
  cleanup(): Promise<void>;
}

export async function createFakeNvmeTree(root: string): Promise<FakeNvmeTree> {
  const sysfsRoot = join(root, 'sys');
  const devRoot = join(root, 'dev');
  const images = join(root, 'images');
  await Promise.all([mkdir(join(sysfsRoot, 'block'), { recursive: true }), mkdir(devRoot, { recursive: true }), mkdir(images, { recursive: true })]);
  const bound = new Map<string, { ns: string; loop: string }>();
  let next = 1;

  async function publish(key: string, serial: string, image: string, sizeBytes: number): Promise<string> {
    await execa('truncate', ['-s', `>${sizeBytes}`, image]);
    const { stdout: loop } = await execa('losetup', ['--find', '--show', image]);
    const dev = majorMinorOf((await stat(loop)).rdev);
    const ns = `nvme${next++}n1`;
    const block = join(sysfsRoot, 'block', ns);
    await mkdir(join(block, 'device'), { recursive: true });
    await writeFile(join(block, 'dev'), `${dev}\n`);
    // Real controllers pad the serial with spaces.
    await writeFile(join(block, 'device', 'serial'), `${serial}    \n`);
    await writeFile(join(block, 'device', 'model'), 'Amazon Elastic Block Store\n');
    const [major, minor] = dev.split(':');
    await execa('mknod', [join(devRoot, ns), 'b', major!, minor!]);
    bound.set(key, { ns, loop });
    return join(devRoot, ns);
  }

  async function unpublish(key: string): Promise<void> {
    const entry = bound.get(key);
    if (!entry) return;
    bound.delete(key);
    await rm(join(sysfsRoot, 'block', entry.ns), { recursive: true, force: true });
    await rm(join(devRoot, entry.ns), { force: true });
    await execa('losetup', ['--detach', entry.loop], { reject: false });
  }

  return {
    sysfsRoot,
    devRoot,
    bind: (volumeId, sizeBytes) => publish(volumeId, nvmeSerialOf(volumeId), join(images, `${volumeId}.img`), sizeBytes),
    unbind: unpublish,
    bindImpostor: (serial, sizeBytes) => publish(`impostor-${next}`, serial, join(images, `impostor-${next}.img`), sizeBytes),
    loopOf: (volumeId) => bound.get(volumeId)?.loop,
    bound: () => [...bound.keys()],
    async cleanup() {
      for (const key of [...bound.keys()]) await unpublish(key);
    },
  };
}
