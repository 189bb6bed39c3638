import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { sleep } from '../../lib/sleep.js';
import { startInProcessAgent, uniquePluginName } from '../helpers/agent.js';
import { docker as runDocker, ensureBusyboxImage, privateDockerd, TEST_IMAGE } from '../helpers/docker.js';
import { noDockerReason } from '../helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from '../helpers/loop.js';
import { EcsAgent, type EcsAgentOptions } from './ecs-agent.js';
import { EcsModel, type TaskDefinitionInput } from './ecs-model.js';
import { makeMachineDir, unmountUnder } from './region.js';

/**
 * The emulated ECS agent against a dockerd of its own and berth (loop backend) in this process.
 * The engine's /run/docker/plugins is a directory of this test's: plugin sockets other tests
 * leave behind would otherwise slow every `docker volume ls` of the engine to a crawl.
 */
describe.skipIf(noDockerReason)(`emulated ECS agent${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  const dir = tempDir('berth-ecs-agent');
  const machine = join(dir.path, 'machine');
  const engine = privateDockerd({ pluginDir: join(machine, 'plugins') });
  const docker = (args: string[]) => runDocker(args, { host: engine.host });
  const driver = uniquePluginName('berth-ecs');
  let berth: Agent | undefined;
  const agents: EcsAgent[] = [];
  const CLUSTER = 'c1';

  beforeAll(async () => {
    makeMachineDir(machine);
    await engine.start();
    await ensureBusyboxImage(engine.host);
  });
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop();
    const ids = (await docker(['ps', '-aq', '--filter', `label=com.amazonaws.ecs.cluster=${CLUSTER}-${driver}`])).split('\n').filter(Boolean);
    if (ids.length) await docker(['rm', '-f', ...ids]);
    for (const v of (await docker(['volume', 'ls', '-q', '--filter', `driver=${driver}`])).split('\n').filter(Boolean)) await docker(['volume', 'rm', v]).catch(() => undefined);
  });
  afterAll(async () => {
    await berth?.stop();
    await engine.destroy();
    unmountUnder(machine);
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  const startBerth = async () => {
    berth ??= (await startInProcessAgent(driver, join(machine, 'state'), { BERTH_PLUGIN_DIR: join(machine, 'plugins') })).agent;
  };
  const agent = async (model: EcsModel, extra: Partial<EcsAgentOptions> = {}) => {
    const a = new EcsAgent({
      model, cluster: `${CLUSTER}-${driver}`, ec2InstanceId: 'i-0123456789abcdef0', dockerHost: engine.host,
      pluginDir: join(machine, 'plugins'), instanceAttributes: { 'berth.host': 'h1' }, containerStopTimeoutSeconds: 1, pollMs: 100, ...extra,
    });
    agents.push(a);
    await a.start();
    return a;
  };
  const taskDef = (family: string, volume: NonNullable<TaskDefinitionInput['volumes']>[number]): TaskDefinitionInput => ({
    family,
    containerDefinitions: [{ name: 'app', image: TEST_IMAGE, essential: true, command: ['sleep', '100000'], mountPoints: [{ sourceVolume: volume.name!, containerPath: '/data' }] }],
    volumes: [volume],
  });
  const service = (model: EcsModel, name: string, td: TaskDefinitionInput) =>
    model.createService({ cluster: `${CLUSTER}-${driver}`, name, taskDefinitionArn: model.registerTaskDefinition(td).arn, desiredCount: 1, placementConstraints: [{ type: 'memberOf', expression: 'attribute:berth.host == h1' }] });
  async function until<T>(what: string, get: () => T | undefined, a?: EcsAgent): Promise<T> {
    for (let i = 0; i < 300; i++) {
      const v = get();
      if (v) return v;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}${a ? ` (agent errors: ${a.errors.join('; ')})` : ''}`);
  }
  const running = (model: EcsModel, svc: string) => model.allTasks().find((t) => t.group === `service:${svc}` && t.lastStatus === 'RUNNING');
  const stopped = (model: EcsModel, svc: string) => model.allTasks().filter((t) => t.group === `service:${svc}` && t.lastStatus === 'STOPPED');

  it('advertises a volume plugin only when it is there at agent start; the task is placed once a restarted agent advertises it', async () => {
    const model = new EcsModel();
    const early = await agent(model);
    expect(early.capabilities).not.toContain(`ecs.capability.docker-plugin.${driver}`);
    expect(early.capabilities).toContain('ecs.capability.docker-plugin.local');
    await startBerth();
    const svc = service(model, 's-cap', taskDef('cap', { name: 'data', dockerVolumeConfiguration: { scope: 'shared', autoprovision: true, driver } }));
    await sleep(500);
    expect(running(model, 's-cap')).toBeUndefined();
    expect(svc.events[0]!.message).toMatch(/unable to place a task because no container instance met all of its requirements/);
    await early.stop();
    const late = await agent(model);
    expect(late.capabilities).toContain(`ecs.capability.docker-plugin.${driver}`);
    await until('the task to run', () => running(model, 's-cap'), late);
  });

  it('shared + autoprovision: creates the volume by its task definition name with driver, options and labels, and reuses it by name', async () => {
    await startBerth();
    const model = new EcsModel();
    const a = await agent(model);
    const volume = { name: `shared-${driver.slice(-8)}`, dockerVolumeConfiguration: { scope: 'shared' as const, autoprovision: true, driver, driverOpts: { size: '64MiB' }, labels: { team: 'db' } } };
    service(model, 's-shared', taskDef('shared', volume));
    const first = await until('the first task', () => running(model, 's-shared'), a);
    const [info] = JSON.parse(await docker(['volume', 'inspect', volume.name])) as Array<{ Driver: string; Options: Record<string, string>; Labels: Record<string, string> }>;
    expect(info).toMatchObject({ Driver: driver, Options: { size: '64MiB' }, Labels: { team: 'db' } });
    await docker(['exec', first.containers[0]!.runtimeId!, 'sh', '-c', 'echo kept > /data/f']);

    // The essential container exits: the task stops, the service starts another, on the same volume.
    await docker(['kill', first.containers[0]!.runtimeId!]);
    const second = await until('a replacement task', () => { const t = running(model, 's-shared'); return t && t.arn !== first.arn ? t : undefined; }, a);
    expect(stopped(model, 's-shared').map((t) => t.stoppedReason)).toEqual(['Essential container in task exited']);
    expect(await docker(['exec', second.containers[0]!.runtimeId!, 'cat', '/data/f'])).toBe('kept');

    // Other labels and options on a new revision: reused by name, unchecked (ECS_SHARED_VOLUME_MATCH_FULL_CONFIG off, the Linux default).
    const changed = { ...volume, dockerVolumeConfiguration: { ...volume.dockerVolumeConfiguration, driverOpts: { size: '128MiB' }, labels: { team: 'web' } } };
    model.updateService(`${CLUSTER}-${driver}`, 's-shared', { taskDefinitionArn: model.registerTaskDefinition(taskDef('shared', changed)).arn });
    const third = await until('the task of revision 2', () => { const t = running(model, 's-shared'); return t?.taskDefinitionArn.endsWith(':2') ? t : undefined; }, a);
    expect(await docker(['exec', third.containers[0]!.runtimeId!, 'cat', '/data/f'])).toBe('kept');
    expect(JSON.parse(await docker(['volume', 'inspect', volume.name]))[0]).toMatchObject({ Options: { size: '64MiB' }, Labels: { team: 'db' } });

    // With the full match on (another instance's agent), the same change stops the task with the agent's reason.
    model.deleteService(`${CLUSTER}-${driver}`, 's-shared');
    await until('the task to stop', () => (running(model, 's-shared') ? undefined : true), a);
    await a.stop();
    const strict = await agent(model, { sharedVolumeMatchFullConfig: true });
    service(model, 's-strict', taskDef('strict', changed));
    await until('a task stopped for its labels', () => stopped(model, 's-strict').find((t) => /does not match existing volume labels/.test(t.stoppedReason ?? '')), strict);
  });

  it('task scope: a volume per task named ecs-<family>-<revision>-<volume>-<hex>, created at start and removed at stop', async () => {
    await startBerth();
    const model = new EcsModel();
    const a = await agent(model);
    service(model, 's-scratch', taskDef('scratch', { name: 'tmp', dockerVolumeConfiguration: { scope: 'task', driver, driverOpts: { size: '32MiB' } } }));
    const task = await until('the task', () => running(model, 's-scratch'), a);
    const names = (await docker(['volume', 'ls', '-q', '--filter', `driver=${driver}`])).split('\n').filter((n) => n.startsWith('ecs-scratch-'));
    expect(names).toEqual([expect.stringMatching(/^ecs-scratch-1-tmp-[0-9a-f]{20}$/)]);
    model.deleteService(`${CLUSTER}-${driver}`, 's-scratch');
    await until('the task to stop', () => (model.allTasks().find((t) => t.arn === task.arn)?.lastStatus === 'STOPPED' ? true : undefined), a);
    await a.idle();
    expect((await docker(['volume', 'ls', '-q', '--filter', `driver=${driver}`])).split('\n')).not.toContain(names[0]);
  });
});
