import { EC2Client } from '@aws-sdk/client-ec2';
import { ECSClient } from '@aws-sdk/client-ecs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterApi } from '../infra/cluster-api/cluster-api.js';
import { unitEcsClusterName } from '../infra/components/cluster.js';
import type { ClusterSpec } from '../infra/cluster-api/invariants.js';
import { notReady } from '../infra/cluster-api/readiness.js';
import { nodeServiceName, nodeVolumeName } from '../lib/node-contract.js';
import { sleep } from '../lib/sleep.js';
import { noDockerReason } from './helpers/env.js';
import { NODE_IMAGE, Region } from './ecs/region.js';
import { MockedUnitWorkspace, REGIONAL } from './ecs/unit-workspace.js';

/**
 * A whole region on one machine: what the unit program declares (run for
 * real under setMocks) applied to the EC2 and ECS models; two hosts, each an
 * instance with its own IMDS, NVMe tree and dockerd, berth as a process on the
 * EBS backend talking EC2's wire protocol, and the emulated ECS agent starting
 * the node tasks through the real Docker engine. The cluster API drives it.
 */
const spec: ClusterSpec = {
  name: 'shop', region: 'eu-west-1', hosts: ['shop-h1', 'shop-h2'],
  nodes: [{ name: 'db1', host: 'shop-h1', sizeGiB: 1 }, { name: 'db2', host: 'shop-h2', sizeGiB: 1 }, { name: 'db3', host: 'shop-h2', sizeGiB: 1 }],
};

/** Runs one step with its own deadline, so a hang says where it was. */
async function inStep<T>(name: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`step "${name}" timed out after ${timeoutMs / 1000}s`)), timeoutMs);
  });
  const started = Date.now();
  try {
    return await Promise.race([fn(), deadline]);
  } catch (err) {
    throw new Error(`step "${name}": ${(err as Error).message}`, { cause: err });
  } finally {
    clearTimeout(timer);
    if (process.env.BERTH_TEST_LOGS) process.stderr.write(`region test: ${name} took ${Date.now() - started} ms\n`);
  }
}

describe.skipIf(noDockerReason)(`a region on one machine${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  const region = new Region('eu-west-1');
  let workspace: MockedUnitWorkspace;
  let api: ClusterApi;
  let ec2: EC2Client;
  const ecs = new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' } });

  beforeAll(async () => {
    await region.start();
    region.ecs.install(ecs);
    ec2 = new EC2Client({ region: 'eu-west-1', endpoint: region.endpoint(), credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' } });
    workspace = new MockedUnitWorkspace(region, { nodeImage: NODE_IMAGE, nodePort: 8080 });
    api = new ClusterApi({ environment: REGIONAL.environment, workspace, regions: ['eu-west-1'], ec2: () => ec2, ecs: () => ecs, pollMs: 250, readyTimeoutMs: 60_000 });
  });
  afterAll(async () => {
    await region.cleanup();
  }, 120_000);

  /** The node's running task: its host instance and container, as ECS and the engine report them. */
  function runningTask(node: string) {
    const n = spec.nodes.find((x) => x.name === node)!;
    const host = region.host(n.host)!;
    const tasks = region.ecs.allTasks().filter((t) => t.group === `service:${nodeServiceName(spec.name, node)}` && t.lastStatus === 'RUNNING');
    expect(tasks, `${node}: one running task`).toHaveLength(1);
    expect(tasks[0]!.containerInstanceArn).toBe(host.agent.containerInstanceArn);
    return { host, task: tasks[0]!, container: tasks[0]!.containers[0]!.runtimeId! };
  }

  async function expectNodeServed(node: string) {
    const { host, container } = runningTask(node);
    const name = nodeVolumeName(spec.name, node);
    const volumeId = workspace.volumeIds(spec.name).get(`${spec.name}-${node}-data`)!;
    // The engine: the node's own Docker volume, served by berth from the EBS volume infra declared.
    const [info] = JSON.parse(await host.docker(['volume', 'inspect', name])) as Array<{ Driver: string; Labels: Record<string, string>; Status: Record<string, string> }>;
    expect(info, name).toMatchObject({ Driver: 'berth', Status: { backend: 'ebs', volumeId, attachedTo: host.instanceId } });
    const mounts = JSON.parse(await host.docker(['inspect', '--format', '{{json .Mounts}}', container])) as Array<{ Name: string; Destination: string; Driver: string }>;
    expect(mounts).toEqual([expect.objectContaining({ Name: name, Destination: '/data', Driver: 'berth' })]);
    // EC2: berth's readiness tags.
    expect(region.ec2.volume(volumeId), name).toMatchObject({ attachment: { instanceId: host.instanceId, state: 'attached' }, tags: { 'berth:volume': name, 'berth:state': 'mounted', 'berth:attached-to': host.instanceId } });
    expect(region.ec2.instance(host.instanceId).tags).toMatchObject({ 'berth:ready': 'true' });
    return { host, container };
  }

  it('deploys 2 hosts and 3 nodes, keeps every marker across a host replacement, removes a node, deletes the cluster', async () => {
    const markers = new Map<string, string>();
    await inStep('deploy the cluster', 90_000, async () => {
      expect((await api.create(spec)).deployed).toEqual(spec);
      expect(await api.status(spec.name)).toMatchObject({ ready: true, notReady: [] });
      for (const n of spec.nodes) {
        const { host, container } = await expectNodeServed(n.name);
        markers.set(n.name, `${n.name}@${host.instanceId}`);
        await host.docker(['exec', container, 'sh', '-c', `echo ${markers.get(n.name)} > /data/marker && sync`]);
      }
      // Two nodes on one host: two Docker volumes, two EBS volumes.
      const h2 = region.host('shop-h2')!;
      expect((await h2.docker(['volume', 'ls', '--format', '{{.Name}}'])).split('\n').sort()).toEqual(['shop-db2', 'shop-db3']);
      expect(region.host('shop-h1')!.agent.capabilities).toContain('ecs.capability.docker-plugin.berth');
    });

    const tasksBefore = new Map(spec.nodes.map((n) => [n.name, runningTask(n.name).task]));
    await inStep('replace host shop-h2', 90_000, async () => {
      const old = await workspace.terminateInstance('shop-h2');
      expect(region.ec2.instance(old).state).toBe('terminated');
      // What the control plane sees: which host and nodes are down, and why; not ready until berth mounted the volumes and ECS runs both tasks again.
      const down = (await api.status(spec.name))!;
      expect(down.ready).toBe(false);
      expect(down.notReady).toEqual(expect.arrayContaining(['host shop-h2: no running instance', expect.stringMatching(/^node db2: ECS service shop-db2: no task is running/), expect.stringMatching(/^node db3: /)]));
      // db1 as a word: node db1, service shop-db1; not the hex of an instance id (i-c5db1245…, which the last CI drew).
      expect(down.notReady.join('; ')).not.toMatch(/\bdb1\b/);
      const fresh = await workspace.launchInstance(spec.name, 'shop-h2');
      expect(fresh).not.toBe(old);
      while (!(await api.status(spec.name))!.ready) await sleep(250);
      for (const n of spec.nodes) {
        const { host, container } = await expectNodeServed(n.name);
        expect(await host.docker(['exec', container, 'cat', '/data/marker']), n.name).toBe(markers.get(n.name));
        const task = runningTask(n.name).task;
        expect(task.taskDefinitionArn, n.name).toBe(tasksBefore.get(n.name)!.taskDefinitionArn);
        if (n.host === 'shop-h2') expect(task.arn, n.name).not.toBe(tasksBefore.get(n.name)!.arn);
        else expect(task.arn, n.name).toBe(tasksBefore.get(n.name)!.arn);
      }
      expect(tasksBefore.get('db2')!.stoppedReason).toMatch(/terminated/);
    });

    await inStep('remove node db3', 60_000, async () => {
      const db3Volume = workspace.volumeIds(spec.name).get('shop-db3-data')!;
      await api.removeNodes(spec.name, ['db3']);
      expect(region.ecs.service(unitEcsClusterName(REGIONAL.environment, 'shop'), 'shop-db3').status).toBe('INACTIVE');
      // The agent on shop-h2 stops the deleted service's task.
      for (let i = 0; region.ecs.allTasks().some((t) => t.group === 'service:shop-db3' && t.lastStatus !== 'STOPPED'); i++) {
        if (i > 200) throw new Error('the task of the deleted service shop-db3 did not stop within 20 s');
        await sleep(100);
      }
      expect(await region.host('shop-h2')!.docker(['ps', '--format', '{{.Names}}'])).not.toMatch(/shop-db3/);
      // Kept: the EBS volume and its tags (Pulumi retains it), the Docker volume on its host (ECS never removes a shared volume).
      expect(region.ec2.volume(db3Volume).tags).toMatchObject({ 'berth:volume': 'shop-db3', 'berth:cluster': 'shop', 'berth:host': 'shop-h2' });
      expect(JSON.parse(await region.host('shop-h2')!.docker(['volume', 'inspect', 'shop-db3']))[0]).toMatchObject({ Driver: 'berth', Status: { volumeId: db3Volume } });
      expect(await api.status(spec.name)).toMatchObject({ ready: true, notReady: [], deployed: { nodes: spec.nodes.filter((n) => n.name !== 'db3') } });
      for (const n of ['db1', 'db2']) expect(await runningTask(n).host.docker(['exec', runningTask(n).container, 'cat', '/data/marker'])).toBe(markers.get(n));
    });

    await inStep('delete the cluster', 60_000, async () => {
      const volumes = workspace.volumeIds(spec.name);
      const instances = region.hosts().map((h) => h.instanceId);
      await api.delete(spec.name);
      expect(await workspace.read(spec.name)).toBeUndefined();
      expect(await api.status(spec.name)).toBeUndefined();
      expect(region.hosts()).toEqual([]);
      for (const i of instances) expect(region.ec2.instance(i).state).toBe('terminated');
      expect(region.ecs.allTasks().filter((t) => t.lastStatus !== 'STOPPED')).toEqual([]);
      // Every node volume is kept with its name, detached.
      for (const [resource, id] of volumes) {
        expect(region.ec2.volume(id), resource).toMatchObject({ state: 'available', attachment: undefined, tags: { 'berth:volume': resource.replace(/-data$/, '') } });
      }
      const pending = await notReady({ ec2, ecs, environment: REGIONAL.environment }, spec);
      expect(pending.map((p) => `${p.kind} ${p.name}`)).toEqual(expect.arrayContaining(['host shop-h1', 'host shop-h2', 'node db1']));
    });
  }, 330_000);
});
