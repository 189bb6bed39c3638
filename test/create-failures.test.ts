import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBerthError } from '../lib/errors.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';
import { imageOf, loopManager } from './helpers/manager.js';
import { smallStateDisk } from './helpers/state-dir.js';

const ID1 = 'a'.repeat(64);
const images = (stateDir: string) => (existsSync(join(stateDir, 'images')) ? readdirSync(join(stateDir, 'images')) : []);

/** A failed call leaves nothing a later call could adopt; the retained/adopt rules hold under failure. */
describe.skipIf(noLoopReason)(`failed calls leave nothing behind${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;
  const isMounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);

  beforeEach(() => {
    dir = tempDir('berth-fail');
    stateDir = join(dir.path, 'state');
  });
  afterEach(() => {
    dir.cleanup();
    detachLoopDevicesUnder(dir.path);
  });

  async function usable(manager: Awaited<ReturnType<typeof loopManager>>['manager'], name: string): Promise<void> {
    const mp = await manager.mount(name, ID1);
    writeFileSync(join(mp, 'f'), 'ok');
    expect(readFileSync(join(mp, 'f'), 'utf8')).toBe('ok');
    await manager.unmount(name, ID1);
    expect(isMounted(mp)).toBe(false);
  }

  it('a size the filesystem cannot hold (EFBIG) leaves no image, and the next Create makes a usable volume', async () => {
    const { manager } = await loopManager(stateDir);
    const err = await manager.create('big', { size: '17TiB' }).catch((e: unknown) => e);
    expect(isBerthError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toMatch(/size 17TiB is larger than the filesystem .* allows/);
    expect(images(stateDir)).toEqual([]);
    expect(await manager.list()).toEqual([]);
    await manager.create('big', {});
    expect((await manager.get('big')).Status).toMatchObject({ size: '64MiB' });
    await usable(manager, 'big');
  });

  it('names up to 250 characters work; longer ones are refused with nothing left', async () => {
    const { manager } = await loopManager(stateDir);
    const long = 'n'.repeat(250);
    await manager.create(long, {});
    await usable(manager, long);
    await manager.remove(long);
    const tooLong = 'm'.repeat(251);
    await expect(manager.create(tooLong, {})).rejects.toThrow(/251 characters; the loop backend allows at most 250/);
    expect(images(stateDir).filter((f) => !f.startsWith(long))).toEqual([]);
    expect((await manager.list()).map((v) => v.Name)).toEqual([]);
  });

  it('an image left by a create cut short (never written) is made anew, not adopted as is', async () => {
    mkdirSync(join(stateDir, 'images'), { recursive: true });
    writeFileSync(imageOf(stateDir, 'cut'), ''); // 0 bytes, no sidecar: what a crash after open() leaves
    const { manager } = await loopManager(stateDir);
    await manager.create('cut', { size: '32MiB' });
    expect(Number(sh('stat', ['-c', '%s', imageOf(stateDir, 'cut')]))).toBe(32 * 2 ** 20);
    await usable(manager, 'cut');
  });

  it('a refused Create (other options) leaves a retained volume retained', async () => {
    const { manager } = await loopManager(stateDir);
    await manager.create('keep', { size: '32MiB' });
    await usable(manager, 'keep');
    await manager.remove('keep');
    const err = await manager.create('keep', { size: '48MiB' }).catch((e: unknown) => e);
    expect(isBerthError(err, 'CONFLICT')).toBe(true);
    expect(await manager.list()).toEqual([]);
    const restarted = await loopManager(stateDir); // nor does it come back from the sidecar
    expect(await restarted.manager.list()).toEqual([]);
    await restarted.manager.create('keep', {});
    const mp = await restarted.manager.mount('keep', ID1);
    expect(readFileSync(join(mp, 'f'), 'utf8')).toBe('ok');
    await restarted.manager.unmount('keep', ID1);
  });

  it('an image deleted behind berth does not poison its name: Remove clears it and a new Create creates anew', async () => {
    const { manager } = await loopManager(stateDir);
    await manager.create('lost', {});
    unlinkSync(imageOf(stateDir, 'lost'));
    await manager.remove('lost'); // retain, but there is nothing to retain
    expect(images(stateDir)).toEqual([]);
    await manager.create('lost', { size: '32MiB' });
    expect((await manager.get('lost')).Status).toMatchObject({ size: '32MiB' });
    await usable(manager, 'lost');

    // retained first, then the image deleted: the next Create creates anew too
    await manager.remove('lost');
    unlinkSync(imageOf(stateDir, 'lost'));
    await manager.create('lost', { size: '48MiB' });
    expect((await manager.get('lost')).Status).toMatchObject({ size: '48MiB' });
    await usable(manager, 'lost');
  });

  describe('with the state disk full', () => {
    let disk: ReturnType<typeof smallStateDisk>;
    beforeEach(() => {
      disk = smallStateDisk(stateDir);
    });
    afterEach(() => {
      detachLoopDevicesUnder(dir.path);
      disk.unmount();
    });
    const fillDisk = () => disk.fill();

    it('Create answers ENOSPC and leaves no image, no sidecar and no List entry', async () => {
      const { manager } = await loopManager(stateDir);
      fillDisk();
      const err = await manager.create('full', { size: '16MiB' }).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/ENOSPC|no space left/);
      expect(images(stateDir)).toEqual([]);
      expect(await manager.list()).toEqual([]);
      // a restart on the full disk starts, and does not bring it back
      expect(await (await loopManager(stateDir)).manager.list()).toEqual([]);
    });

    it('Mount answers ENOSPC and leaves nothing mounted, no loop device and no reference', async () => {
      const { manager } = await loopManager(stateDir);
      await manager.create('m', { size: '16MiB' });
      await usable(manager, 'm'); // formatted while there was room
      fillDisk();
      const err = await manager.mount('m', ID1).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/ENOSPC|no space left/);
      expect(isMounted(manager.service.mountpointOf('m'))).toBe(false);
      expect(loopDevicesUnder(dir.path)).toEqual([]);
      expect((await manager.get('m')).Status).toMatchObject({ mounted: false, containerMounts: 0 });
    });
  });
});
