import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBerthError } from '../lib/errors.js';
import { createDeviceResolver, type DeviceResolver } from '../volume-plugin/devices/nvme.js';
import { noLoopReason } from './helpers/env.js';
import { createFakeNvmeTree, type FakeNvmeTree } from './helpers/fake-nvme.js';
import { tempDir } from './helpers/loop.js';

const VOL = 'vol-0123456789abcdef0';
const OTHER = 'vol-0fedcba9876543210';

describe.skipIf(noLoopReason)('NVMe device resolution over real loop devices', () => {
  let dir: ReturnType<typeof tempDir>;
  let tree: FakeNvmeTree;
  let resolver: DeviceResolver;

  beforeEach(async () => {
    dir = tempDir('berth-nvme');
    tree = await createFakeNvmeTree(dir.path);
    resolver = createDeviceResolver({ sysfsRoot: tree.sysfsRoot, devRoot: tree.devRoot });
  });
  afterEach(async () => {
    await tree.cleanup();
    dir.cleanup();
  });

  it('finds the namespace whose controller serial is the volume id, among others', async () => {
    await tree.bind(OTHER, 2 ** 20);
    const path = await tree.bind(VOL, 2 ** 20);
    await expect(resolver.find(VOL, '/dev/xvdba')).resolves.toEqual({ path, how: 'nvme-serial' });
  });

  it('reports nothing while the volume has no device, and never takes the requested name on a Nitro host', async () => {
    await tree.bind(OTHER, 2 ** 20);
    // udev on Nitro hosts makes /dev/xvd* links; they are not block devices the kernel lists and must not be used.
    await execa('ln', ['-s', join(tree.devRoot, 'nvme1n1'), join(tree.devRoot, 'xvdba')]);
    await expect(resolver.find(VOL, '/dev/xvdba')).resolves.toBeUndefined();
  });

  it('refuses to guess when two devices claim the same serial', async () => {
    await tree.bind(VOL, 2 ** 20);
    await tree.bindImpostor('vol0123456789abcdef0', 2 ** 20);
    await expect(resolver.find(VOL)).rejects.toThrow(/all report serial vol0123456789abcdef0/);
  });

  it('refuses a stale device node whose number is not the kernel\'s', async () => {
    const path = await tree.bind(VOL, 2 ** 20);
    await rm(path);
    await execa('mknod', [path, 'b', '7', '250']);
    const err = await resolver.find(VOL).catch((e: unknown) => e);
    expect(isBerthError(err, 'UNSAFE_DEVICE')).toBe(true);
    expect((err as Error).message).toMatch(/stale device node/);
  });

  it('on Xen, uses the requested name (sdX shows as xvdX) once the kernel lists it', async () => {
    const path = await tree.bind(OTHER, 2 ** 20);
    // Re-publish that disk as a Xen blkfront device: no NVMe serial, the requested name.
    const block = join(tree.sysfsRoot, 'block');
    await mkdir(join(block, 'xvdf'), { recursive: true });
    await execa('cp', [join(block, 'nvme1n1', 'dev'), join(block, 'xvdf', 'dev')]);
    await execa('cp', ['-a', path, join(tree.devRoot, 'xvdf')]);
    await expect(resolver.find(VOL, '/dev/sdf')).resolves.toEqual({ path: join(tree.devRoot, 'xvdf'), how: 'xen-name' });
  });

  it('waits for a device that appears late, and gives a clear error for one that never does', async () => {
    setTimeout(() => void tree.bind(VOL, 2 ** 20), 300);
    const found = await resolver.waitFor(VOL, '/dev/xvdbb', 5_000, { pollMs: 50 });
    expect(found.path).toMatch(/nvme\d+n1$/);
    await expect(resolver.waitFor(OTHER, '/dev/xvdbc', 300, { pollMs: 50 })).rejects.toThrow(/no block device with serial vol0fedcba9876543210 appeared within 0 s/);
  });

  it('ignores a sysfs entry without a device node', async () => {
    await mkdir(join(tree.sysfsRoot, 'block', 'nvme9n1', 'device'), { recursive: true });
    await writeFile(join(tree.sysfsRoot, 'block', 'nvme9n1', 'device', 'serial'), 'vol0123456789abcdef0\n');
    await writeFile(join(tree.sysfsRoot, 'block', 'nvme9n1', 'dev'), '259:9\n');
    await expect(resolver.find(VOL)).rejects.toThrow(/not a block device the kernel lists/);
  });

  it('lists the EBS volumes this host shows by serial (instance store and others left out); on Xen it cannot, and says so', async () => {
    await tree.bind(VOL, 2 ** 20);
    await tree.bind(OTHER, 2 ** 20);
    await tree.bindImpostor('AWS1234567890ABCDEF', 2 ** 20);
    expect([...((await resolver.attachedVolumeIds()) ?? [])].sort()).toEqual([VOL, OTHER].sort());
    await mkdir(join(tree.sysfsRoot, 'block', 'xvdf'), { recursive: true });
    expect(await resolver.attachedVolumeIds()).toBeUndefined();
  });
});
