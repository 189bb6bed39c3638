import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { sleep } from '../lib/sleep.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { docker as runDocker, ensureBusyboxImage, privateDockerd, TEST_IMAGE } from './helpers/docker.js';
import { noDockerReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';

/**
 * References reconciled with the engine (BERTH_DOCKER_HOST): a reference no
 * container holds is dropped, so a dockerd crash does not pin a volume forever.
 */
describe.skipIf(noDockerReason)(`references reconciled with the Docker engine${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  const engine = privateDockerd();
  const driver = uniquePluginName();
  let dir: ReturnType<typeof tempDir>;
  let agent: Agent | undefined;
  const docker = (args: string[]) => runDocker(args, { host: engine.host });
  const mounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);
  const vol = (n: string) => `${n}-${driver.slice(-8)}`;

  beforeAll(async () => {
    await engine.start();
    await ensureBusyboxImage(engine.host);
  }, 120_000);
  afterAll(() => engine.destroy(), 60_000);
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await docker(['rm', '-f', ...(await docker(['ps', '-aq'])).split('\n').filter(Boolean)]).catch(() => undefined);
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  async function startAgent(stateDir: string): Promise<Agent> {
    ({ agent } = await startInProcessAgent(driver, stateDir, { BERTH_DOCKER_HOST: engine.host, BERTH_REFERENCE_CHECK_SECONDS: '1' }));
    return agent;
  }

  async function until(what: string, check: () => boolean, ms = 30_000): Promise<void> {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(200)) if (check()) return;
    throw new Error(`timed out waiting until ${what}`);
  }

  it('dockerd SIGKILLed while a container uses a volume: after its restart the reference is dropped, the volume unmounted and removable', async () => {
    dir = tempDir('berth-engine');
    const a = await startAgent(join(dir.path, 'state'));
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
    await until('its loop device is gone', () => loopDevicesUnder(dir.path).length === 0, 10_000);
    await docker(['volume', 'rm', v]);
    expect(await docker(['volume', 'ls', '-q'])).not.toContain(v);
  }, 180_000);

  it('state file lost while a container runs: its later stop really unmounts the volume', async () => {
    dir = tempDir('berth-engine');
    const stateDir = join(dir.path, 'state');
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
    await until('the volume is unmounted and its loop device detached', () => !mounted(mp) && loopDevicesUnder(dir.path).length === 0);
    await docker(['rm', container]);
    await docker(['volume', 'rm', v]);
  }, 180_000);
});
