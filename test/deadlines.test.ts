import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import { isBerthError } from '../lib/errors.js';
import { processRunner } from '../lib/exec.js';
import { sleep } from '../lib/sleep.js';
import type { Backend } from '../volume-plugin/backends/backend.js';
import { createLoopBackend } from '../volume-plugin/backends/loop.js';
import { createFilesystemOps } from '../volume-plugin/fs/filesystem.js';
import { DockerVolumeDriver } from '../volume-plugin/docker-driver.js';
import { DEADLINES, VolumeService } from '../volume-plugin/service.js';
import { hostPathsFor } from './helpers/manager.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';

const ID1 = 'a'.repeat(64);
const ID2 = 'b'.repeat(64);

/** Every call has dockerd's deadline; what finishes after it is undone, and no reference is counted for a caller that has gone. */
describe.skipIf(noLoopReason)(`deadlines through the core${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;
  const isMounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);
  const saved = () => JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { volumes: Record<string, { mounts: Record<string, number> }> };

  beforeEach(() => {
    dir = tempDir('berth-deadline');
    stateDir = join(dir.path, 'state');
  });
  afterEach(() => {
    dir.cleanup();
    detachLoopDevicesUnder(dir.path);
  });

  async function manager(slow: { attachMs?: number; createMs?: number }, deadlines: Partial<typeof DEADLINES>) {
    const loop = createLoopBackend({ stateDir, paths: hostPathsFor(stateDir), runner: processRunner });
    const backend: Backend = {
      ...loop,
      async create(name, options, call) {
        const r = await loop.create(name, options, call);
        await sleep(slow.createMs ?? 0);
        return r;
      },
      async attach(record, call) {
        const r = await loop.attach(record, call);
        await sleep(slow.attachMs ?? 0);
        return r;
      },
    };
    const m = new DockerVolumeDriver(new VolumeService({ backend, fs: createFilesystemOps({ runner: processRunner, paths: hostPathsFor(stateDir) }), paths: hostPathsFor(stateDir), defaults: { sizeBytes: 32 * 2 ** 20, fs: 'ext4' }, logger: silentLogger, deadlines }));
    await m.service.start();
    return m;
  }

  it("dockerd's deadlines: Create and Mount 2 min, the rest 1 min", () => {
    expect(DEADLINES).toEqual({ create: 120_000, mount: 120_000, other: 60_000 });
  });

  it('a Mount that finishes after its deadline is rolled back: nothing mounted, no loop device, no reference', async () => {
    const m = await manager({ attachMs: 1_500 }, { mount: 1_000 });
    await m.create('late', {});
    const err = await m.mount('late', ID1).catch((e: unknown) => e);
    expect(isBerthError(err, 'TIMEOUT')).toBe(true);
    expect((err as Error).message).toMatch(/Mount late did not finish within 1 s/);
    expect(isMounted(m.service.mountpointOf('late'))).toBe(false);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    expect((await m.get('late')).Status).toMatchObject({ mounted: false, containerMounts: 0 });
    expect(saved().volumes.late!.mounts).toEqual({});
  });

  it('a Mount whose caller has already gone counts no reference and leaves the mount of another container alone', async () => {
    const m = await manager({}, { mount: 1_000 });
    await m.create('shared', {});
    const mp = await m.mount('shared', ID1);
    const slowSave = m.mount('shared', ID2, { signal: AbortSignal.abort(new Error('caller gone')) });
    await expect(slowSave).rejects.toThrow(/caller gone/);
    expect(isMounted(mp)).toBe(true);
    expect((await m.get('shared')).Status).toMatchObject({ mounted: true, containerMounts: 1 });
    await m.unmount('shared', ID1);
    expect(isMounted(mp)).toBe(false);
  });

  it('a call waiting for the volume lock past its deadline fails then, and its work never runs', async () => {
    const m = await manager({ attachMs: 2_000 }, { mount: 3_000, other: 500 });
    await m.create('busy', {});
    const first = m.mount('busy', ID1);
    await sleep(100);
    const t0 = Date.now();
    const err = await m.remove('busy').catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(1_500);
    expect(isBerthError(err, 'TIMEOUT')).toBe(true);
    const mp = await first;
    await sleep(100);
    expect(isMounted(mp)).toBe(true); // the Remove never ran
    expect((await m.list()).map((v) => v.Name)).toEqual(['busy']);
    await m.unmount('busy', ID1);
  });

  it('a Create that finishes after its deadline is undone: no image, no sidecar, no List entry', async () => {
    const m = await manager({ createMs: 1_500 }, { create: 1_000 });
    const err = await m.create('slow', {}).catch((e: unknown) => e);
    expect(isBerthError(err, 'TIMEOUT')).toBe(true);
    expect(existsSync(join(stateDir, 'images')) ? readdirSync(join(stateDir, 'images')) : []).toEqual([]);
    expect(await m.list()).toEqual([]);
  });
});
