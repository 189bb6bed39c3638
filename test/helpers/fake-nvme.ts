import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
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
  /**
   * Sets up the volume's image, loop device and device node ahead of time (returns the loop
   * device), so that a later bind() only publishes it (sysfs files, a rename into /dev): a
   * benchmark's clock then does not count the harness's truncate, losetup and mknod spawns,
   * which a real host's kernel does not make.
   */
  prebind(volumeId: string, sizeBytes: number): Promise<string>;
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
  /** Loop devices set up ahead, each with a device node made in `staged` for bind() to move into /dev. */
  const prebound = new Map<string, { loop: string; node: string }>();
  const staged = join(root, 'staged');
  let next = 1;

  async function loopOf(image: string, sizeBytes: number): Promise<string> {
    await execa('truncate', ['-s', `>${sizeBytes}`, image]);
    return (await execa('losetup', ['--find', '--show', image])).stdout;
  }

  async function makeNode(path: string, dev: string): Promise<void> {
    const [major, minor] = dev.split(':');
    await execa('mknod', [path, 'b', major!, minor!]);
  }

  async function publish(key: string, serial: string, image: string, sizeBytes: number): Promise<string> {
    const ahead = prebound.get(key);
    prebound.delete(key);
    const loop = ahead?.loop ?? (await loopOf(image, sizeBytes));
    const dev = majorMinorOf((await stat(loop)).rdev);
    const ns = `nvme${next++}n1`;
    const block = join(sysfsRoot, 'block', ns);
    await mkdir(join(block, 'device'), { recursive: true });
    await writeFile(join(block, 'dev'), `${dev}\n`);
    // Real controllers pad the serial with spaces.
    await writeFile(join(block, 'device', 'serial'), `${serial}    \n`);
    await writeFile(join(block, 'device', 'model'), 'Amazon Elastic Block Store\n');
    if (ahead) await rename(ahead.node, join(devRoot, ns));
    else await makeNode(join(devRoot, ns), dev);
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
    async prebind(volumeId, sizeBytes) {
      const ahead = prebound.get(volumeId);
      if (ahead) return ahead.loop;
      const loop = await loopOf(join(images, `${volumeId}.img`), sizeBytes);
      await mkdir(staged, { recursive: true });
      const node = join(staged, volumeId);
      await makeNode(node, majorMinorOf((await stat(loop)).rdev));
      prebound.set(volumeId, { loop, node });
      return loop;
    },
    unbind: unpublish,
    bindImpostor: (serial, sizeBytes) => publish(`impostor-${next}`, serial, join(images, `impostor-${next}.img`), sizeBytes),
    loopOf: (volumeId) => bound.get(volumeId)?.loop,
    bound: () => [...bound.keys()],
    async cleanup() {
      for (const key of [...bound.keys()]) await unpublish(key);
      for (const { loop } of prebound.values()) await execa('losetup', ['--detach', loop], { reject: false });
      prebound.clear();
    },
  };
}
