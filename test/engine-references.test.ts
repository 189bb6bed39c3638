import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { sleep } from '../lib/sleep.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { docker as runDocker, ensureBusyboxImage, makeMachineDir, privateDockerd, TEST_IMAGE, type PrivateDockerd } from './helpers/docker.js';
import { noDockerReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';

/**
 * References reconciled with the engine (BERTH_DOCKER_HOST): a reference no
 * container holds is dropped, so a dockerd crash does not pin a volume forever. The engine is a
 * private one with a plugin directory of its own (helpers/docker.ts makeMachineDir); each test
 * keeps its state in a directory of its own under it.
 */
describe.skipIf(noDockerReason)(`references reconciled with the Docker engine${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  let engine: PrivateDockerd;
  const driver = uniquePluginName();
  let root: ReturnType<typeof tempDir>;
  let pluginDir: string;
  let tests = 0;
  /** A new state directory under the engine's machine directory (mounts below it reach the engine). */
  const newStateDir = () => join(root.path, 'machine', `test-${++tests}`, 'state');
  let stateDir: string;
  let agent: Agent | undefined;
  const docker = (args: string[]) => runDocker(args, { host: engine.host });
  const mounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);
  const vol = (n: string) => `${n}-${driver.slice(-8)}`;

  beforeAll(async () => {
    root = tempDir('berth-engine');
    pluginDir = makeMachineDir(join(root.path, 'machine'));
    engine = privateDockerd({ pluginDir });
    await engine.start();
    await ensureBusyboxImage(engine.host);
  }, 120_000);
  afterAll(async () => {
    await engine?.destroy();
    root?.cleanup();
  }, 60_000);
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await docker(['rm', '-f', ...(await docker(['ps', '-aq'])).split('\n').filter(Boolean)]).catch(() => undefined);
    detachLoopDevicesUnder(stateDir);
  });

  async function startAgent(stateDir: string): Promise<Agent> {
    ({ agent } = await startInProcessAgent(driver, stateDir, { BERTH_DOCKER_HOST: engine.host, BERTH_REFERENCE_CHECK_SECONDS: '1', BERTH_PLUGIN_DIR: pluginDir }));
    return agent;
  }

  async function until(what: string, check: () => boolean, ms = 30_000): Promise<void> {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(200)) if (check()) return;
    throw new Error(`timed out waiting until ${what}`);
  }

  it('dockerd SIGKILLed while a container uses a volume: after its restart the reference is dropped, the volume unmounted and removable', async () => {
    stateDir = newStateDir();
    const a = await startAgent(stateDir);
    const v = vol('crash');
    await docker(['volume', 'create', '-d', driver, v]);
    const container = await docker(['run', '-d', '--network', 'none', '-v', `${v}:/data`, TEST_IMAGE, 'sleep', '600']);
    const mp = a.manager.mountpointOf(v);
    expect(a.manager.snapshot().find((s) => s.name === v)).toMatchObject({ mounted: true, refs: 1 });

    await engine.kill();
    await sleep(2_500); // checks while the engine is down change nothing
    expect(a.manager.snapshot().find((s) => s.name === v)).toMatchObject({ mounted: true, refs: 1 });
    await engine.start();
    await until('the reference is dropped and the volume unmounted', () => a.manager.snapshot().find((s) => s.name === v)?.refs === 0 && !mounted(mp));
    await docker(['rm', '-f', container]);
    await until('its loop device is gone', () => loopDevicesUnder(stateDir).length === 0, 10_000);
    await docker(['volume', 'rm', v]);
    expect(await docker(['volume', 'ls', '-q'])).not.toContain(v);
  }, 180_000);

  it('state file lost while a container runs: its later stop really unmounts the volume', async () => {
    stateDir = newStateDir();
    let a = await startAgent(stateDir);
    const v = vol('lost');
    await docker(['volume', 'create', '-d', driver, v]);
    const container = await docker(['run', '-d', '--network', 'none', '-v', `${v}:/data`, TEST_IMAGE, 'sleep', '600']);
    const mp = a.manager.mountpointOf(v);
    await a.stop();
    writeFileSync(join(stateDir, 'state.json'), '{"version":1,"volumes":[]}');
    a = await startAgent(stateDir);
    expect(a.manager.snapshot().find((s) => s.name === v)).toMatchObject({ mounted: true, refs: 0 });
    await sleep(2_500); // the periodic check keeps it: the engine lists the container
    expect(mounted(mp)).toBe(true);
    await docker(['stop', '-t', '1', container]);
    // The check unmounts, then detaches: seen from outside, the two are apart by a losetup call.
    await until('the volume is unmounted and its loop device detached', () => !mounted(mp) && loopDevicesUnder(stateDir).length === 0);
    await docker(['rm', container]);
    await docker(['volume', 'rm', v]);
  }, 180_000);
});
