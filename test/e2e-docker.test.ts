import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { sleep } from '../lib/sleep.js';
import { startChildAgent, startInProcessAgent, stopChild, uniquePluginName } from './helpers/agent.js';
import { docker as runDocker, ensureBusyboxImage, makeMachineDir, privateDockerd, TEST_IMAGE, type PrivateDockerd } from './helpers/docker.js';
import { noDockerReason } from './helpers/env.js';
import { detachLoopDevicesUnder, sh, tempDir } from './helpers/loop.js';

/**
 * The real Docker engine calling berth over its plugin socket, with the loop
 * backend. The file runs its own dockerd: dockerd keeps every legacy plugin it
 * ever activated and makes `docker volume ls` wait ~15 s on each one whose
 * socket is gone, so sharing an engine with other tests' dead drivers would
 * make timings meaningless; for the same reason its plugin directory is one of its own
 * (helpers/docker.ts makeMachineDir), not the host's /run/docker/plugins, where other tests
 * leave dead agents' sockets. One driver name serves the whole file; each test keeps its
 * state in a directory of its own under the machine directory.
 */

const mounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);

describe.skipIf(noDockerReason)(`berth with the real Docker engine${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  let root: ReturnType<typeof tempDir>;
  let pluginDir: string;
  let dir: string;
  let tests = 0;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];

  let engine: PrivateDockerd;
  const driver = uniquePluginName();
  const docker = (args: string[], opts: { host?: string } = {}) => runDocker(args, { host: opts.host ?? engine.host });
  const inspect = async (volume: string) =>
    JSON.parse(await docker(['volume', 'inspect', volume]))[0] as Record<string, unknown> & { Status: Record<string, unknown> };

  beforeAll(async () => {
    root = tempDir('berth-e2e');
    pluginDir = makeMachineDir(join(root.path, 'machine'));
    engine = privateDockerd({ pluginDir });
    await engine.start();
    await ensureBusyboxImage(engine.host);
  });
  afterAll(async () => {
    await engine?.destroy();
    root?.cleanup();
  });
  afterEach(async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch {
        // best effort: later cleanups still run
      }
    }
    detachLoopDevicesUnder(dir);
  });

  function setup() {
    dir = join(root.path, 'machine', `test-${++tests}`);
    mkdirSync(dir);
    const vol = (n: string) => `${n}-${driver.slice(-8)}`;
    return { driver, vol, stateDir: join(dir, 'state') };
  }

  async function inProcess(driver: string, stateDir: string): Promise<Agent> {
    const { agent } = await startInProcessAgent(driver, stateDir, { BERTH_PLUGIN_DIR: pluginDir });
    cleanups.push(() => agent.stop());
    return agent;
  }

  it('runs the user story: create, write, read back, ls, inspect, rm', async () => {
    const { driver, vol, stateDir } = setup();
    await inProcess(driver, stateDir);
    const pg = vol('pgdata');
    cleanups.push(() => docker(['volume', 'rm', '-f', pg]));

    expect(await docker(['volume', 'create', '-d', driver, '-o', 'size=1GiB', '-o', 'fs=ext4', pg])).toBe(pg);
    await docker(['run', '--rm', '--network', 'none', '-v', `${pg}:/data`, TEST_IMAGE, 'sh', '-c', 'echo hello > /data/f']);
    expect(await docker(['run', '--rm', '--network', 'none', '-v', `${pg}:/data`, TEST_IMAGE, 'cat', '/data/f'])).toBe('hello');

    expect(await docker(['volume', 'ls', '--format', '{{.Driver}} {{.Name}}'])).toContain(`${driver} ${pg}`);
    const info = await inspect(pg);
    expect(info).toMatchObject({ Driver: driver, Name: pg, Options: { size: '1GiB', fs: 'ext4' } });
    expect(info.Status).toMatchObject({ size: '1GiB', fs: 'ext4', mounted: false, containerMounts: 0, onRemove: 'retain' });
    expect(Date.parse(info.CreatedAt as string)).toBeGreaterThan(Date.now() - 120_000);

    await docker(['volume', 'rm', pg]);
    expect(await docker(['volume', 'ls', '-q'])).not.toContain(pg);
  });

  it('shares one volume between two running containers and unmounts when the last stops', async () => {
    const { driver, vol, stateDir } = setup();
    const agent = await inProcess(driver, stateDir);
    const shared = vol('shared');
    await docker(['volume', 'create', '-d', driver, shared]);
    cleanups.push(() => docker(['volume', 'rm', '-f', shared]));
    const a = await docker(['run', '-d', '--network', 'none', '-v', `${shared}:/d`, TEST_IMAGE, 'sh', '-c', 'echo from-a > /d/a; sleep 300']);
    cleanups.push(() => docker(['rm', '-f', a]));
    const b = await docker(['run', '-d', '--network', 'none', '-v', `${shared}:/d`, TEST_IMAGE, 'sleep', '300']);
    cleanups.push(() => docker(['rm', '-f', b]));
    const mp = agent.manager.mountpointOf(shared);

    for (let i = 0; i < 50 && (await docker(['exec', b, 'sh', '-c', 'cat /d/a 2>/dev/null || true'])) !== 'from-a'; i++) await sleep(100);
    expect(await docker(['exec', b, 'cat', '/d/a'])).toBe('from-a');
    expect((await inspect(shared)).Status).toMatchObject({ mounted: true, containerMounts: 2 });

    await docker(['rm', '-f', a]);
    expect(mounted(mp)).toBe(true);
    expect(await docker(['exec', b, 'cat', '/d/a'])).toBe('from-a');
    // the daemon refuses to remove a volume a container uses, and so does berth
    await expect(docker(['volume', 'rm', shared])).rejects.toThrow(/in use/);

    await docker(['rm', '-f', b]);
    expect(mounted(mp)).toBe(false);
    expect((await inspect(shared)).Status).toMatchObject({ mounted: false, containerMounts: 0 });
  });

  it('counts every mount: docker cp and several runs of one volume', async () => {
    const { driver, vol, stateDir } = setup();
    const agent = await inProcess(driver, stateDir);
    const v = vol('refs');
    await docker(['volume', 'create', '-d', driver, v]);
    cleanups.push(() => docker(['volume', 'rm', '-f', v]));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await docker(['run', '-d', '--network', 'none', '-v', `${v}:/d`, TEST_IMAGE, 'sleep', '300']));
    cleanups.push(() => docker(['rm', '-f', ...ids]));
    expect((await inspect(v)).Status).toMatchObject({ containerMounts: 3 });
    await docker(['rm', '-f', ids[0]!, ids[1]!]);
    expect((await inspect(v)).Status).toMatchObject({ mounted: true, containerMounts: 1 });
    await docker(['exec', ids[2]!, 'sh', '-c', 'echo copied > /d/c']);
    await docker(['rm', '-f', ids[2]!]);
    expect(mounted(agent.manager.mountpointOf(v))).toBe(false);

    // docker cp mounts the volume of a stopped container for the copy, then unmounts it
    const stopped = await docker(['create', '--network', 'none', '-v', `${v}:/d`, TEST_IMAGE, 'true']);
    cleanups.push(() => docker(['rm', '-f', stopped]));
    expect(await docker(['cp', `${stopped}:/d/c`, '-'])).toContain('copied');
    expect(mounted(agent.manager.mountpointOf(v))).toBe(false);
    expect((await inspect(v)).Status).toMatchObject({ containerMounts: 0 });
  });

  it('survives SIGKILL while a container uses a volume: data kept, inspect works, the later Unmount really unmounts', async () => {
    const { driver, vol, stateDir } = setup();
    let child = await startChildAgent(driver, stateDir, { BERTH_PLUGIN_DIR: pluginDir });
    cleanups.push(() => stopChild(child, 'SIGTERM'));
    const v = vol('kill');
    await docker(['volume', 'create', '-d', driver, v]);
    cleanups.push(() => docker(['volume', 'rm', '-f', v]));
    const c = await docker(['run', '-d', '--network', 'none', '-v', `${v}:/d`, TEST_IMAGE, 'sh', '-c', 'i=0; while true; do echo $i > /d/counter; sync; i=$((i+1)); sleep 0.1; done']);
    cleanups.push(() => docker(['rm', '-f', c]));
    await sleep(500);

    await stopChild(child, 'SIGKILL');
    const mp = join(stateDir, 'mounts', v);
    expect(mounted(mp)).toBe(true);
    const before = Number(await docker(['exec', c, 'cat', '/d/counter']));
    await sleep(500);
    expect(Number(await docker(['exec', c, 'cat', '/d/counter']))).toBeGreaterThan(before); // still writing to the volume

    child = await startChildAgent(driver, stateDir, { BERTH_PLUGIN_DIR: pluginDir });
    expect((await inspect(v)).Status).toMatchObject({ mounted: true, containerMounts: 1 });
    await docker(['rm', '-f', c]);
    expect(mounted(mp)).toBe(false);
    expect(Number(await docker(['run', '--rm', '--network', 'none', '-v', `${v}:/d`, TEST_IMAGE, 'cat', '/d/counter']))).toBeGreaterThan(before);
  });

  it('keeps serving after berth restarts while dockerd runs (SIGTERM leaves mounts in place)', async () => {
    const { driver, vol, stateDir } = setup();
    let child = await startChildAgent(driver, stateDir, { BERTH_PLUGIN_DIR: pluginDir });
    cleanups.push(() => stopChild(child, 'SIGTERM'));
    const v = vol('restart');
    await docker(['volume', 'create', '-d', driver, '-o', 'size=128MiB', v]);
    cleanups.push(() => docker(['volume', 'rm', '-f', v]));
    const c = await docker(['run', '-d', '--network', 'none', '-v', `${v}:/d`, TEST_IMAGE, 'sh', '-c', 'echo kept > /d/f; sleep 300']);
    cleanups.push(() => docker(['rm', '-f', c]));

    expect(await stopChild(child, 'SIGTERM')).toBe(0);
    expect(mounted(join(stateDir, 'mounts', v))).toBe(true);
    child = await startChildAgent(driver, stateDir, { BERTH_PLUGIN_DIR: pluginDir });

    expect(await docker(['volume', 'ls', '-q'])).toContain(v);
    expect(await docker(['run', '--rm', '--network', 'none', '-v', `${v}:/d`, TEST_IMAGE, 'cat', '/d/f'])).toBe('kept');
    expect((await inspect(v)).Status).toMatchObject({ size: '128MiB', containerMounts: 1 });
  });

  it('loses no volume when dockerd restarts while berth runs', async () => {
    const { driver, vol, stateDir } = setup();
    await inProcess(driver, stateDir);
    const v = vol('engine');
    await docker(['volume', 'create', '-d', driver, v]);
    cleanups.push(() => docker(['volume', 'rm', '-f', v]));
    await docker(['run', '--rm', '--network', 'none', '-v', `${v}:/d`, TEST_IMAGE, 'sh', '-c', 'echo survived > /d/f']);

    await engine.stop();
    await engine.start();

    expect(await docker(['volume', 'ls', '-q'])).toContain(v);
    expect(await docker(['run', '--rm', '--network', 'none', '-v', `${v}:/d`, TEST_IMAGE, 'cat', '/d/f'])).toBe('survived');
  });
});
