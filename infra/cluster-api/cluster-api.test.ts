import { DescribeInstancesCommand, DescribeVolumesCommand, EC2Client, type Tag } from '@aws-sdk/client-ec2';
import { DescribeServicesCommand, DescribeTasksCommand, ECSClient, ListTasksCommand, type ListTasksCommandInput } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { ClusterApi, type ClusterWorkspace } from './cluster-api.js';
import type { ClusterSpec } from './invariants.js';

// Stateful model: the fake workspace "deploys" hosts and volumes into the same model DescribeInstances/Volumes read.
// ECS: one service per node (named <cluster>-<node>) whose one task the ECS agent reports.
interface Task { arn: string; service: string; lastStatus: string; desiredStatus: string; stoppedReason?: string }
interface Model { instances: { id: string; tags: Tag[] }[]; volumes: { id: string; tags: Tag[] }[]; services: string[]; tasks: Task[] }
let model: Model;
let stacks: Map<string, ClusterSpec>;
let applied: ClusterSpec[];
const ec2 = mockClient(EC2Client);
const ecs = mockClient(ECSClient);

const workspace: ClusterWorkspace = {
  read: (name) => Promise.resolve(stacks.get(name)),
  apply: (spec) => {
    applied.push(spec);
    stacks.set(spec.name, spec);
    model.instances = spec.hosts.map((h) => ({ id: `i-${h}`, tags: [{ Key: 'berth:cluster', Value: spec.name }, { Key: 'berth:host', Value: h }] }));
    model.volumes = spec.nodes.map((n) => ({ id: `vol-${n.name}`, tags: [{ Key: 'berth:cluster', Value: spec.name }, { Key: 'berth:volume', Value: `${spec.name}-${n.name}` }] }));
    model.services = spec.nodes.map((n) => `${spec.name}-${n.name}`);
    return Promise.resolve();
  },
  destroy: (name) => { stacks.delete(name); return Promise.resolve(); },
};

/** berth on each host marks itself ready and its volume mounted, as the agent does (DESIGN.md §6). */
function berthBecomesReady(volumeState = 'mounted') {
  for (const i of model.instances) i.tags.push({ Key: 'berth:ready', Value: 'true' });
  for (const v of model.volumes) v.tags.push({ Key: 'berth:state', Value: volumeState });
}

/** The ECS agent on the host starts each node's task (RUNNING), or reports it stopped. */
function tasksRun(lastStatus = 'RUNNING', stoppedReason?: string) {
  model.tasks = model.services.map((service, i) => ({ arn: `t${i}`, service, lastStatus, desiredStatus: lastStatus === 'STOPPED' ? 'STOPPED' : 'RUNNING', stoppedReason }));
}

const spec: ClusterSpec = { name: 'shop', region: 'eu-west-1', hosts: ['h1'], nodes: [{ name: 'n1', host: 'h1' }] };

beforeEach(() => {
  model = { instances: [], volumes: [], services: [], tasks: [] };
  stacks = new Map();
  applied = [];
  ec2.reset();
  ec2.on(DescribeInstancesCommand).callsFake(() => ({ Reservations: [{ Instances: model.instances.map((i) => ({ InstanceId: i.id, Tags: i.tags })) }] }));
  ec2.on(DescribeVolumesCommand).callsFake(() => ({ Volumes: model.volumes.map((v) => ({ VolumeId: v.id, Tags: v.tags })) }));
  ecs.reset();
  ecs.on(DescribeServicesCommand).callsFake((i: { services: string[] }) => ({
    services: i.services.filter((s) => model.services.includes(s)).map((s) => ({ serviceName: s, status: 'ACTIVE', taskDefinition: 'td:1', events: [] })),
  }));
  ecs.on(ListTasksCommand).callsFake((i: ListTasksCommandInput) => ({ taskArns: model.tasks.filter((t) => t.service === i.serviceName && t.desiredStatus === i.desiredStatus).map((t) => t.arn) }));
  ecs.on(DescribeTasksCommand).callsFake((i: { tasks: string[] }) => ({ tasks: model.tasks.filter((t) => i.tasks.includes(t.arn)).map((t) => ({ taskArn: t.arn, lastStatus: t.lastStatus, desiredStatus: t.desiredStatus, stoppedReason: t.stoppedReason, taskDefinitionArn: 'td:1' })) }));
});

function api(onSleep: () => void = () => undefined, timeoutMs = 60_000) {
  let t = 0;
  return new ClusterApi({
    workspace, regions: ['eu-west-1'], ec2: () => new EC2Client({ region: 'eu-west-1' }), ecs: () => new ECSClient({ region: 'eu-west-1' }),
    readyTimeoutMs: timeoutMs, pollMs: 1000, now: () => t, sleep: (ms) => { t += ms; onSleep(); return Promise.resolve(); },
  });
}

describe('ClusterApi', () => {
  it('create returns once berth reports the host ready and the volume mounted, and the node task runs', async () => {
    let polls = 0;
    await api(() => { ++polls; if (polls === 3) berthBecomesReady(); if (polls === 5) tasksRun(); }).create(spec);
    expect(polls).toBe(5);
    expect(stacks.get('shop')).toEqual(spec);
  });
  it('times out with the pending items named when berth never becomes ready', async () => {
    await expect(api(() => undefined, 5000).create(spec)).rejects.toThrow(/not ready after 5s: host h1: instance i-h1 is not tagged berth:ready=true yet \(berth is still mounting its volumes\); node n1: volume vol-n1 is not reported by berth yet, not mounted; node n1: ECS service shop-n1: no task is running/);
  });
  it('is not ready while the tags say ready but the node task keeps stopping, and says why', async () => {
    await expect(api(() => { berthBecomesReady(); tasksRun('STOPPED', 'CannotStartContainerError: volume shop-n1: invalid volume options'); }, 5000).create(spec))
      .rejects.toThrow(/not ready after 5s: node n1: ECS service shop-n1: no task is running; last task stopped: CannotStartContainerError: volume shop-n1: invalid volume options$/);
  });
  it('fails fast when berth tags a volume with an error', async () => {
    await expect(api(() => berthBecomesReady('error:identity mismatch')).create(spec)).rejects.toThrow(/error:identity mismatch/);
  });
  it('refuses an invalid shrink before applying anything', async () => {
    stacks.set('shop', spec);
    await expect(api().update({ ...spec, hosts: [], nodes: [] })).rejects.toThrow(/at least one node/);
    expect(applied).toEqual([]);
  });
  it('refuses creating an existing cluster and updating a missing one', async () => {
    stacks.set('shop', spec);
    await expect(api().create(spec)).rejects.toThrow(/already exists/);
    await expect(api().update({ ...spec, name: 'other' })).rejects.toThrow(/does not exist/);
    expect(applied).toEqual([]);
  });
});
