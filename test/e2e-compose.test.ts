import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { commandStep, docker, ensureBusyboxImage, makeMachineDir, privateDockerd, TEST_IMAGE, type PrivateDockerd } from './helpers/docker.js';
import { step } from './helpers/step.js';
import { noComposeReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';

const composeFile = join(import.meta.dirname, '..', 'examples', 'compose', 'docker-compose.yml');
const skip = noComposeReason;

/**
 * examples/compose with the real docker-compose, the real engine (a private one, with a plugin
 * directory of its own: helpers/docker.ts makeMachineDir) and berth in this process.
 */
describe.skipIf(skip)(`Docker Compose with a berth volume${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let engine: PrivateDockerd;
  const driver = uniquePluginName('berth-compose');
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;
  let agent: Agent;

  beforeAll(async () => {
    dir = tempDir('berth-compose');
    const machine = join(dir.path, 'machine');
    const pluginDir = makeMachineDir(machine);
    stateDir = join(machine, 'state');
    engine = privateDockerd({ pluginDir });
    await engine.start();
    await ensureBusyboxImage(engine.host);
    ({ agent } = await startInProcessAgent(driver, stateDir, { BERTH_PLUGIN_DIR: pluginDir }));
  });
  afterAll(async () => {
    await agent?.stop();
    await engine?.destroy();
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  const compose = (project: string, args: string[], onRemove = 'retain') =>
    step(commandStep('docker-compose', args), () =>
      execa('docker-compose', ['-f', composeFile, '-p', project, ...args], {
        env: { DOCKER_HOST: engine.host, BERTH_DRIVER: driver, BUSYBOX_IMAGE: TEST_IMAGE, BERTH_ON_REMOVE: onRemove },
        timeout: 120_000,
      }),
    );
  const d = (args: string[]) => docker(args, { host: engine.host });
  const container = async (project: string) => d(['ps', '-q', '--filter', `label=com.docker.compose.project=${project}`]);

  it('keeps the data across down and up, and down -v with the default retain keeps the image', async () => {
    const project = `p${driver.slice(-8)}`;
    await compose(project, ['up', '-d']);
    await d(['exec', await container(project), 'sh', '-c', 'echo precious > /data/keep']);
    await compose(project, ['down']);
    expect(agent.manager.snapshot().find((v) => v.name === `${project}_data`)).toMatchObject({ mounted: false, refs: 0 });

    await compose(project, ['up', '-d']);
    const c = await container(project);
    expect(await d(['exec', c, 'cat', '/data/keep'])).toBe('precious');
    expect(await d(['exec', c, 'cat', '/data/log'])).toBe('started\nstarted');

    await compose(project, ['down', '-v']);
    expect(await d(['volume', 'ls', '-q'])).not.toContain(`${project}_data`);
    expect(existsSync(join(stateDir, 'images', `${project}_data.img`))).toBe(true);
  });

  it('down -v deletes the data of a volume created with onRemove=delete', async () => {
    const project = `q${driver.slice(-8)}`;
    await compose(project, ['up', '-d'], 'delete');
    await compose(project, ['down', '-v'], 'delete');
    expect(existsSync(join(stateDir, 'images', `${project}_data.img`))).toBe(false);
  });
});
