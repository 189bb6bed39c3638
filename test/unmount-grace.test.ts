import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startAgent } from '../agent/agent.js';
import { loadConfig } from '../agent/config.js';
import { processRunner, type Runner } from '../lib/exec.js';
import { silentLogger } from '../lib/logger.js';
import { sleep } from '../lib/sleep.js';
import { loopManager } from './helpers/manager.js';
import { unixPoster } from '../bench/lib.js';
import { agentEnv, socketOf, startChildAgent, stopChild, uniquePluginName } from './helpers/agent.js';
import { docker as runDocker, ensureBusyboxImage, privateDockerd, TEST_IMAGE } from './helpers/docker.js';
import { noDockerReason, noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';

const ID1 = 'a'.repeat(64);
const ID2 = 'b'.repeat(64);
const mounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);

/** processRunner that records the programs run (name and first argument). */
function recording(): { runner: Runner; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    runner: (file, args, options) => {
      calls.push(file);
      return processRunner(file, args, options);
    },
  };
}

async function waitFor(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (check()) return;
  throw new Error(`timed out waiting for: ${what}`);
}

describe.skipIf(noLoopReason)(`unmount grace (real loop devices)${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;
  const stops: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    while (stops.length) await stops.pop()!().catch(() => undefined);
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  async function manager(graceMs: number, runner: Runner = processRunner) {
    const { manager: m } = await loopManager(stateDir, undefined, { runner, sizeBytes: 32 * 2 ** 20, unmountGraceMs: graceMs });
    stops.push(() => m.service.flushUnmountGrace());
    return m;
  }
  const fresh = () => {
    dir = tempDir('berth-grace');
    stateDir = join(dir.path, 'state');
  };
  const saved = () => JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { volumes: Record<string, Record<string, unknown>> };

  it('a Mount inside the grace mounts nothing again; after the grace the volume is unmounted and its loop device detached', async () => {
    fresh();
    const { runner, calls } = recording();
    const m = await manager(1_500, runner);
    await m.create('g', {});
    const mp = await m.mount('g', ID1);
    await m.unmount('g', ID1);
    // In the grace: still mounted, 0 references, and said so.
    expect(mounted(mp)).toBe(true);
    expect(m.service.snapshot()).toEqual([expect.objectContaining({ name: 'g', mounted: true, refs: 0, unmountPending: true })]);
    expect((await m.get('g')).Status).toMatchObject({ mounted: true, containerMounts: 0, unmountPending: true });
    expect(saved().volumes.g).toMatchObject({ mounted: true, unmountPending: true, mounts: {} });

    calls.length = 0;
    expect(await m.mount('g', ID2)).toBe(mp);
    expect(calls).not.toContain('mount');
    expect(calls).not.toContain('e2fsck');
    expect(calls).not.toContain('losetup');
    expect(m.service.snapshot()[0]).toMatchObject({ mounted: true, refs: 1 });
    expect(m.service.snapshot()[0]!.unmountPending).toBeUndefined();

    const t0 = Date.now();
    await m.unmount('g', ID2);
    expect(mounted(mp)).toBe(true);
    await waitFor('unmounted after the grace', () => !mounted(mp));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_400);
    await waitFor('loop device detached', () => loopDevicesUnder(dir.path).length === 0);
    await waitFor('state file says unmounted', () => saved().volumes.g!.mounted === false);
    expect(saved().volumes.g!.unmountPending).toBeUndefined();
    expect(m.service.snapshot()[0]).toMatchObject({ mounted: false, refs: 0 });
  });

  it('what the container wrote is on the device when its Unmount answers, although the volume stays mounted', async () => {
    fresh();
    const m = await manager(60_000);
    await m.create('w', {});
    const mp = await m.mount('w', ID1);
    const marker = `berth-grace-marker-${Date.now()}`;
    writeFileSync(join(mp, 'f'), marker); // no fsync: dirty in the page cache
    await m.unmount('w', ID1);
    expect(mounted(mp)).toBe(true);
    // The loop driver writes into the image file: the marker is there only if the filesystem was synced.
    expect(readFileSync(join(stateDir, 'images', 'w.img')).includes(marker)).toBe(true);
  });

  it('Remove and host release inside the grace unmount at once', async () => {
    fresh();
    const m = await manager(60_000);
    await m.create('r', {});
    await m.create('h', {});
    const r = await m.mount('r', ID1);
    const h = await m.mount('h', ID1);
    await m.unmount('r', ID1);
    await m.unmount('h', ID1);
    expect(mounted(r) && mounted(h)).toBe(true);

    await m.remove('r');
    expect(mounted(r)).toBe(false);
    expect(await m.service.releaseIfUnused('h', 'test: tagged to another host')).toBe(true);
    expect(mounted(h)).toBe(false);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    expect(saved().volumes.h).toMatchObject({ mounted: false });
    expect(saved().volumes.h!.unmountPending).toBeUndefined();
  });

  it('agent shutdown unmounts every volume in its grace', async () => {
    fresh();
    const name = uniquePluginName('berth-grace');
    const agent = await startAgent(loadConfig(agentEnv(name, stateDir, { BERTH_UNMOUNT_GRACE_SECONDS: '60' })), silentLogger);
    stops.push(() => agent.stop());
    const post = unixPoster(socketOf(name));
    await post('/VolumeDriver.Create', { Name: 's', Opts: {} });
    const { json } = await post('/VolumeDriver.Mount', { Name: 's', ID: ID1 });
    await post('/VolumeDriver.Unmount', { Name: 's', ID: ID1 });
    expect(mounted(json.Mountpoint as string)).toBe(true);
    await agent.stop();
    expect(mounted(json.Mountpoint as string)).toBe(false);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
  });

  it('an agent killed in the grace: the restarted one unmounts the volume and detaches its loop device', async () => {
    fresh();
    const name = uniquePluginName('berth-grace');
    const env = { BERTH_UNMOUNT_GRACE_SECONDS: '60' };
    const first = await startChildAgent(name, stateDir, env);
    stops.push(async () => void (first.exitCode === null && first.signalCode === null && (await stopChild(first, 'SIGKILL'))));
    const post = unixPoster(socketOf(name));
    await post('/VolumeDriver.Create', { Name: 'k', Opts: {} });
    const { json } = await post('/VolumeDriver.Mount', { Name: 'k', ID: ID1 });
    const mp = json.Mountpoint as string;
    await post('/VolumeDriver.Unmount', { Name: 'k', ID: ID1 });
    expect(mounted(mp)).toBe(true);
    await stopChild(first, 'SIGKILL');
    expect(mounted(mp)).toBe(true); // the kill left it mounted
    rmSync(socketOf(name), { force: true }); // so that the wait below is for the new agent's socket

    const second = await startChildAgent(name, stateDir, env);
    stops.push(() => stopChild(second, 'SIGTERM'));
    expect(mounted(mp)).toBe(false);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    const again = unixPoster(socketOf(name));
    expect((await again('/VolumeDriver.Get', { Name: 'k' })).json).toMatchObject({ Volume: { Status: { mounted: false, containerMounts: 0 } } });
    // Still usable.
    expect((await again('/VolumeDriver.Mount', { Name: 'k', ID: ID2 })).json.Mountpoint).toBe(mp);
    await again('/VolumeDriver.Unmount', { Name: 'k', ID: ID2 });
  });

  it('with a grace of 0 the last Unmount unmounts at once', async () => {
    fresh();
    const m = await manager(0);
    await m.create('z', {});
    const mp = await m.mount('z', ID1);
    await m.unmount('z', ID1);
    expect(mounted(mp)).toBe(false);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
  });
});

describe.skipIf(noDockerReason)(`unmount grace with the real Docker engine${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  const engine = privateDockerd();
  let dir: ReturnType<typeof tempDir>;
  beforeAll(async () => {
    dir = tempDir('berth-grace-docker');
    await engine.start();
    await ensureBusyboxImage(engine.host);
  }, 120_000);
  afterAll(async () => {
    await engine.destroy();
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  it('two docker runs inside the grace mount the volume once; after it the volume is unmounted and detached', async () => {
    const driver = uniquePluginName('berth-grace');
    const { runner, calls } = recording();
    const stateDir = join(dir.path, 'state');
    const agent = await startAgent(loadConfig(agentEnv(driver, stateDir, { BERTH_UNMOUNT_GRACE_SECONDS: '3' })), silentLogger, { runner });
    const docker = (args: string[]) => runDocker(args, { host: engine.host });
    const vol = `grace-${driver.slice(-8)}`;
    try {
      await docker(['volume', 'create', '-d', driver, vol]);
      await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/d`, TEST_IMAGE, 'sh', '-c', 'echo one > /d/f']);
      expect(await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/d`, TEST_IMAGE, 'cat', '/d/f'])).toBe('one');
      expect(calls.filter((c) => c === 'mount')).toHaveLength(1);
      expect(calls.filter((c) => c === 'e2fsck')).toHaveLength(0); // the first mount came right after mkfs
      const mp = join(stateDir, 'mounts', vol);
      expect(mounted(mp)).toBe(true);
      expect(agent.manager.snapshot()).toEqual([expect.objectContaining({ name: vol, mounted: true, refs: 0, unmountPending: true })]);
      await waitFor('unmounted after the grace', () => !mounted(mp), 15_000);
      await waitFor('loop device detached', () => loopDevicesUnder(dir.path).length === 0);
      await docker(['volume', 'rm', vol]);
    } finally {
      await docker(['volume', 'rm', '-f', vol]).catch(() => undefined);
      await agent.stop();
    }
  }, 120_000);
});
