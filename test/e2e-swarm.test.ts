import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { sleep } from '../lib/sleep.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { docker, ensureBusyboxImage, makeMachineDir, privateDockerd, TEST_IMAGE, type PrivateDockerd } from './helpers/docker.js';
import { noDockerReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';

/**
 * A one-node swarm on a private dockerd (swarm mode must not touch the shared engine), with a
 * plugin directory of its own (helpers/docker.ts makeMachineDir).
 */
describe.skipIf(noDockerReason)(`Docker Swarm service with a berth volume${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  let engine: PrivateDockerd;
  const driver = uniquePluginName('berth-swarm');
  let dir: ReturnType<typeof tempDir>;
  let agent: Agent;
  const d = (args: string[]) => docker(args, { host: engine.host });

  beforeAll(async () => {
    dir = tempDir('berth-swarm');
    const machine = join(dir.path, 'machine');
    const pluginDir = makeMachineDir(machine);
    engine = privateDockerd({ pluginDir });
    await engine.start();
    await ensureBusyboxImage(engine.host);
    await d(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
    ({ agent } = await startInProcessAgent(driver, join(machine, 'state'), { BERTH_PLUGIN_DIR: pluginDir }));
  });
  afterAll(async () => {
    await agent?.stop();
    await engine?.destroy();
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  async function runningTask(service: string, want: number): Promise<string[]> {
    for (let i = 0; i < 300; i++) {
      const ids = (await d(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${service}`])).split('\n').filter(Boolean);
      if (ids.length === want) return ids;
      await sleep(100);
    }
    const tasks = await d(['service', 'ps', '--no-trunc', '--format', '{{.CurrentState}} {{.Error}}', service]);
    throw new Error(`service ${service} did not reach ${want} running task(s):\n${tasks}`);
  }

  it('keeps the volume\'s data while the service scales 0 → 1 → 0 → 1', async () => {
    const service = `s${driver.slice(-8)}`;
    const volume = `${service}-data`;
    // Swarm places a task only on nodes whose engine reports the volume driver, and
    // an engine reports a legacy plugin once it has used it: create the volume first.
    await d(['volume', 'create', '-d', driver, '-o', 'size=256MiB', volume]);
    for (let i = 0; i < 300 && !(await d(['node', 'inspect', 'self', '--format', '{{json .Description.Engine.Plugins}}'])).includes(`"${driver}"`); i++) await sleep(100);
    // --init: an init as PID 1 passes on SIGTERM, so scaling to 0 does not wait out the 10 s stop grace (as compose's init: true).
    await d([
      'service', 'create', '--detach', '--no-resolve-image', '--init', '--name', service, '--replicas', '0',
      '--mount', `type=volume,source=${volume},target=/data,volume-driver=${driver},volume-opt=size=256MiB`,
      TEST_IMAGE, 'sh', '-c', 'echo start >> /data/log; exec sleep 3600',
    ]);
    await d(['service', 'scale', '--detach', `${service}=1`]);
    const [first] = await runningTask(service, 1);
    await d(['exec', first!, 'sh', '-c', 'echo precious > /data/keep']);
    expect(agent.manager.snapshot().find((v) => v.name === volume)).toMatchObject({ mounted: true, refs: 1 });

    await d(['service', 'scale', '--detach', `${service}=0`]);
    await runningTask(service, 0);
    for (let i = 0; i < 100 && agent.manager.snapshot().find((v) => v.name === volume)?.mounted; i++) await sleep(100);
    expect(agent.manager.snapshot().find((v) => v.name === volume)).toMatchObject({ mounted: false, refs: 0 });

    await d(['service', 'scale', '--detach', `${service}=1`]);
    const [second] = await runningTask(service, 1);
    expect(second).not.toBe(first);
    expect(await d(['exec', second!, 'cat', '/data/keep'])).toBe('precious');
    expect(await d(['exec', second!, 'cat', '/data/log'])).toBe('start\nstart');
    await d(['service', 'rm', service]);
  });
});
