import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBerthError } from '../lib/errors.js';
import { processRunner, type Runner } from '../lib/exec.js';
import { createLoopBackend } from '../volume-plugin/backends/loop.js';
import { resolveOptions } from '../volume-plugin/options.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, tempDir } from './helpers/loop.js';
import { HOST_PATHS, loopManager } from './helpers/manager.js';

const opts = resolveOptions({}, { sizeBytes: 32 * 2 ** 20, fs: 'ext4' });

describe.skipIf(noLoopReason)(`loop backend${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('berth-loop');
  });
  afterEach(() => {
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  it('creates a sparse image, reuses its loop device while attached and detaches it on release', async () => {
    const backend = createLoopBackend({ stateDir: dir.path, paths: HOST_PATHS, runner: processRunner });
    const rec = await backend.create('v', opts);
    expect(execFileSync('du', ['-k', rec.id], { encoding: 'utf8' }).split('\t')[0]).toBe('0');
    const a = await backend.attach(rec);
    const b = await backend.attach(rec);
    expect(b.devicePath).toBe(a.devicePath);
    expect(loopDevicesUnder(dir.path)).toEqual([a.devicePath]);
    await backend.release(rec);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    await backend.detach(rec); // not attached: success
  });

  it("a Mount past its deadline stops losetup and detaches the device it attached: nothing mounted, no loop device, no reference", async () => {
    // losetup that attaches the image and then hangs (a slow or stuck tool): the deadline must kill it and undo the attach.
    const hung: number[] = [];
    const runner: Runner = (file, args, options) =>
      file === 'losetup' && args.includes('--find')
        ? processRunner('sh', ['-c', 'losetup "$@" && echo $$ > "$0.pid" && exec sleep 30', join(dir.path, 'hung'), ...args], options).finally(() => {
            hung.push(Number(readFileSync(join(dir.path, 'hung.pid'), 'utf8')));
          })
        : processRunner(file, args, options);
    const stateDir = join(dir.path, 'state');
    const { manager: m } = await loopManager(stateDir, undefined, { runner, sizeBytes: 32 * 2 ** 20, deadlines: { mount: 1_500 } });
    await m.create('slow', {});
    const t0 = Date.now();
    const err = await m.mount('slow', 'a'.repeat(64)).catch((e: unknown) => e);
    expect(isBerthError(err, 'TIMEOUT')).toBe(true);
    expect(Date.now() - t0).toBeLessThan(8_000); // not the 30 s the tool would have taken
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    expect(existsSync(`/proc/${hung[0]}`)).toBe(false); // the tool was killed
    expect((await m.get('slow')).Status).toMatchObject({ mounted: false, containerMounts: 0 });
  });

  it('never hands out the loop device of an image that was replaced behind its back', async () => {
    const backend = createLoopBackend({ stateDir: dir.path, paths: HOST_PATHS, runner: processRunner });
    const rec = await backend.create('v', opts);
    const old = await backend.attach(rec);
    // someone swaps the image file: the old device now backs a deleted inode
    writeFileSync(join(dir.path, 'new.img'), '');
    execFileSync('truncate', ['-s', '32M', join(dir.path, 'new.img')]);
    renameSync(join(dir.path, 'new.img'), rec.id);
    const fresh = await backend.attach(rec);
    expect(fresh.devicePath).not.toBe(old.devicePath);
    execFileSync('losetup', ['--detach', old.devicePath]);
  });

  it('refuses, and lets go of, a loop device whose backing file the kernel does not confirm', async () => {
    const fakeSys = join(dir.path, 'sys', 'block');
    mkdirSync(join(fakeSys, 'loop7', 'loop'), { recursive: true });
    const backend = createLoopBackend({ stateDir: join(dir.path, 'state'), paths: { ...HOST_PATHS, sysfsRoot: join(dir.path, 'sys') }, runner: processRunner });
    const rec = await backend.create('v', opts);
    writeFileSync(join(fakeSys, 'loop7', 'loop', 'backing_file'), `${rec.id}.other\n`);
    // a real attach happens, but the (fake) kernel view disagrees: refused
    const err = await backend.attach(rec).catch((e: unknown) => e);
    expect(isBerthError(err, 'UNSAFE_DEVICE')).toBe(true);
    expect((err as Error).message).toMatch(/refusing to use it/);
    expect(loopDevicesUnder(join(dir.path, 'state'))).toEqual([]);
  });
});
