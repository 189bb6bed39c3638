import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { processRunner, type Runner } from '../lib/exec.js';
import { loopManager } from './helpers/manager.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';

const MiB = 2 ** 20;

/**
 * What sits at <state dir>/mounts/<name> is only ever a directory berth made:
 * a link, a file or someone else's mount there never makes the volume land
 * anywhere else, and a refused Mount leaves nothing mounted and no loop device.
 */
describe.skipIf(noLoopReason)(`mountpoints that are not what berth made${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;
  let target: string;

  beforeEach(() => {
    dir = tempDir('berth-mp');
    stateDir = join(dir.path, 'state');
    target = join(dir.path, 'precious');
    mkdirSync(target);
    writeFileSync(join(target, 'keep'), 'the data under the link');
  });
  afterEach(() => {
    dir.cleanup();
    detachLoopDevicesUnder(dir.path);
  });

  async function manager(runner: Runner = processRunner) {
    const { manager: m } = await loopManager(stateDir, undefined, { runner, sizeBytes: 32 * MiB });
    return m;
  }
  /** Mount targets under this test's directory, as the kernel reports them. */
  const mountsUnderTest = () =>
    sh('findmnt', ['-rn', '-o', 'TARGET'])
      .split('\n')
      .filter((t) => t.startsWith(dir.path + '/'));
  const expectNothingLeft = () => {
    expect(mountsUnderTest()).toEqual([]);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    expect(readdirSync(target)).toEqual(['keep']);
  };

  it('refuses a symbolic link at the mountpoint: the volume is not mounted over its target, and the link stays', async () => {
    const m = await manager();
    await m.create('v', {});
    const mp = m.service.mountpointOf('v');
    mkdirSync(join(stateDir, 'mounts'), { recursive: true });
    symlinkSync(target, mp);
    await expect(m.mount('v', 'c1')).rejects.toThrow(`${mp} is a symbolic link, not a directory berth made`);
    expectNothingLeft();
    expect(readlinkSync(mp)).toBe(target);
    expect((await m.get('v')).Status).toMatchObject({ mounted: false, containerMounts: 0 });
    // Remove still works, and leaves the link for a person to look at.
    await m.remove('v');
    expect(readlinkSync(mp)).toBe(target);
  });

  it('refuses a file at the mountpoint and a link in the mounts directory itself', async () => {
    const m = await manager();
    await m.create('f', {});
    mkdirSync(join(stateDir, 'mounts'), { recursive: true });
    writeFileSync(m.service.mountpointOf('f'), 'not a directory');
    await expect(m.mount('f', 'c1')).rejects.toThrow(/is not a directory; refusing to mount/);
    expectNothingLeft();

    renameSync(join(stateDir, 'mounts'), join(dir.path, 'old-mounts'));
    symlinkSync(target, join(stateDir, 'mounts'));
    await m.create('g', {});
    await expect(m.mount('g', 'c1')).rejects.toThrow(`${join(stateDir, 'mounts')} is a symbolic link`);
    expectNothingLeft();
  });

  it('when the mountpoint is swapped for a link while mount(8) starts, mounts on the directory it checked, then undoes it: nothing mounted anywhere', async () => {
    let swapped = false;
    const swapping: Runner = async (file, args, options) => {
      if (file === 'mount' && !swapped) {
        swapped = true;
        const mp = join(stateDir, 'mounts', 'r');
        execFileSync('chattr', ['-i', mp]);
        renameSync(mp, `${mp}.moved`);
        symlinkSync(target, mp);
      }
      return processRunner(file, args, options);
    };
    const m = await manager(swapping);
    await m.create('r', {});
    await expect(m.mount('r', 'c1')).rejects.toThrow(/is not mounted at .*; undone/);
    expect(swapped).toBe(true);
    expectNothingLeft();
  });

  it('refuses a foreign mount at the mountpoint and leaves it mounted', async () => {
    const m = await manager();
    await m.create('t', {});
    const mp = m.service.mountpointOf('t');
    mkdirSync(mp, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mp]);
    await expect(m.mount('t', 'c1')).rejects.toThrow(/already has another device mounted/);
    expect(mountsUnderTest()).toEqual([mp]);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
  });

  it('mounts every volume nosuid,nodev, and refuses at Mount a stored option that is not allowed', async () => {
    const m = await manager();
    await m.create('s', { mountOptions: 'noatime' });
    const mp = await m.mount('s', 'c1');
    expect(sh('findmnt', ['-rn', '-o', 'OPTIONS', mp]).split(',')).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'noatime']));
    await m.unmount('s', 'c1');

    // A volume whose stored options predate the allow-list (or were edited by hand).
    await m.create('old', {});
    const sidecar = join(stateDir, 'images', 'old.json');
    const side = JSON.parse(readFileSync(sidecar, 'utf8')) as { options: Record<string, unknown> };
    side.options.mountOptions = 'suid,dev';
    writeFileSync(sidecar, JSON.stringify(side));
    const restarted = await manager();
    await expect(restarted.mount('old', 'c1')).rejects.toThrow(/the volume's mountOptions: "suid" is not allowed \(berth mounts every volume nosuid\)/);
    expect(mountsUnderTest()).toEqual([]);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
  });
});
