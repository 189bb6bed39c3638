import { DescribeInstancesCommand, DescribeInstanceTypesCommand, DescribeVolumesCommand, EC2Client, type DescribeInstanceTypesCommandInput, type Tag } from '@aws-sdk/client-ec2';
import { INSTANCE_TYPES } from '../../test/aws/instance-types.js';
import { DescribeServicesCommand, DescribeTasksCommand, ECSClient, ListTasksCommand, type ListTasksCommandInput } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { subnetIndexFor } from '../programs/unit/index.js';
import { ClusterApi, type ClusterWorkspace, type StackState } from './cluster-api.js';
import type { ClusterSpec } from './invariants.js';
import type { ProgressEvent } from './progress.js';
import type { ClusterOperationError } from './retry.js';

/**
 * Stateful model: the fake workspace "deploys" hosts and volumes into the same model
 * DescribeInstances/Volumes read, keeps deployed and desired specs apart as Pulumi does
 * (outputs only after a completed update), and can fail its next steps as the CLI does.
 */
// ECS: one service per node (<cluster>-<node>); its task runs once the ECS agent starts it, or stops with a reason.
interface Task { arn: string; service: string; lastStatus: string; desiredStatus: string; stoppedReason?: string }
interface Model { instances: { id: string; tags: Tag[] }[]; volumes: { id: string; tags: Tag[] }[]; services: string[]; tasks: Task[]; taskFails?: string }
let model: Model;
let stacks: Map<string, StackState>;
let applied: ClusterSpec[];
let failures: Error[];
const ec2 = mockClient(EC2Client);
const ecs = mockClient(ECSClient);

/** The CLI's error for a stack another update holds (automation/errors.ts). */
function concurrentUpdate(): Error {
  return Object.assign(new Error('code: 255\n stderr: error: [409] Conflict: Another update is currently in progress.'), { name: 'ConcurrentUpdateError' });
}
function throttled(): Error {
  return Object.assign(new Error('code: 255\n stdout: ...\n stderr: error: 1 error occurred:\n\t* creating EC2 Launch Template: RequestLimitExceeded: Request limit exceeded.'), { name: 'CommandError' });
}

const workspace: ClusterWorkspace = {
  read: (name) => Promise.resolve(stacks.get(name)),
  list: () => Promise.resolve([...stacks.keys()]),
  apply: (spec, options) => {
    applied.push(spec);
    const before = stacks.get(spec.name);
    stacks.set(spec.name, { deployed: before?.deployed, desired: spec });
    options?.onEvent?.({ sequence: 1, timestamp: 0, resourcePreEvent: { metadata: { op: 'create', urn: `urn:pulumi:${spec.name}::berth-unit::aws:ecs/service:Service::${spec.name}-n1`, type: 'aws:ecs/service:Service' } } } as never);
    const failure = failures.shift();
    if (failure) return Promise.reject(failure);
    stacks.set(spec.name, { deployed: spec, desired: spec });
    model.instances = spec.hosts.map((h) => ({ id: `i-${h}`, tags: [{ Key: 'berth:cluster', Value: spec.name }, { Key: 'berth:host', Value: h }] }));
    model.volumes = spec.nodes.map((n) => ({ id: `vol-${n.name}`, tags: [{ Key: 'berth:cluster', Value: spec.name }, { Key: 'berth:volume', Value: `${spec.name}-${n.name}` }] }));
    model.services = spec.nodes.map((n) => `${spec.name}-${n.name}`);
    model.tasks = [];
    return Promise.resolve();
  },
  destroy: (name) => {
    const failure = failures.shift();
    if (failure) return Promise.reject(failure);
    stacks.delete(name);
    return Promise.resolve();
  },
};

/** berth on each host marks itself ready and its volume mounted, as the agent does (docs/design.md §6); then the ECS agent starts each node's task. */
function berthBecomesReady(volumeState = 'mounted') {
  for (const i of model.instances) if (!i.tags.some((t) => t.Key === 'berth:ready')) i.tags.push({ Key: 'berth:ready', Value: 'true' });
  for (const v of model.volumes) if (!v.tags.some((t) => t.Key === 'berth:state')) v.tags.push({ Key: 'berth:state', Value: volumeState });
  tasksStart();
}

function tasksStart() {
  model.tasks = model.services.map((service, i) => model.taskFails
    ? { arn: `t${i}`, service, lastStatus: 'STOPPED', desiredStatus: 'STOPPED', stoppedReason: model.taskFails }
    : { arn: `t${i}`, service, lastStatus: 'RUNNING', desiredStatus: 'RUNNING' });
}

const spec: ClusterSpec = { name: 'shop', region: 'eu-west-1', hosts: ['h1'], nodes: [{ name: 'n1', host: 'h1' }] };

beforeEach(() => {
  model = { instances: [], volumes: [], services: [], tasks: [] };
  stacks = new Map();
  applied = [];
  failures = [];
  ec2.reset();
  ec2.on(DescribeInstancesCommand).callsFake(() => ({ Reservations: [{ Instances: model.instances.map((i) => ({ InstanceId: i.id, Tags: i.tags })) }] }));
  // DescribeInstanceTypes as EC2 answers for a few real types (test/aws/instance-types.ts).
  ec2.on(DescribeInstanceTypesCommand).callsFake((i: DescribeInstanceTypesCommandInput) => {
    const unknown = (i.InstanceTypes ?? []).filter((t) => !INSTANCE_TYPES[t]);
    if (unknown.length > 0) throw Object.assign(new Error(`The following supplied instance types do not exist: [${unknown.join(', ')}]`), { name: 'InvalidInstanceType' });
    return { InstanceTypes: (i.InstanceTypes ?? []).map((t) => INSTANCE_TYPES[t]!) };
  });
  ec2.on(DescribeVolumesCommand).callsFake(() => ({ Volumes: model.volumes.map((v) => ({ VolumeId: v.id, Tags: v.tags })) }));
  ecs.reset();
  ecs.on(DescribeServicesCommand).callsFake((i: { services: string[] }) => ({
    services: i.services.filter((s) => model.services.includes(s)).map((s) => ({ serviceName: s, status: 'ACTIVE', taskDefinition: 'td:1', events: [] })),
  }));
  ecs.on(ListTasksCommand).callsFake((i: ListTasksCommandInput) => ({ taskArns: model.tasks.filter((t) => t.service === i.serviceName && t.desiredStatus === i.desiredStatus).map((t) => t.arn) }));
  ecs.on(DescribeTasksCommand).callsFake((i: { tasks: string[] }) => ({
    tasks: model.tasks.filter((t) => i.tasks.includes(t.arn)).map((t) => ({ taskArn: t.arn, lastStatus: t.lastStatus, desiredStatus: t.desiredStatus, stoppedReason: t.stoppedReason, taskDefinitionArn: 'td:1' })),
  }));
});

function api(onSleep: (ms: number) => void = () => berthBecomesReady(), timeoutMs = 60_000) {
  let t = 0;
  return new ClusterApi({ environment: 'prod',
    workspace, regions: ['eu-west-1'], ec2: () => new EC2Client({ region: 'eu-west-1' }), ecs: () => new ECSClient({ region: 'eu-west-1' }),
    readyTimeoutMs: timeoutMs, pollMs: 1000, retry: { attempts: 3, firstDelayMs: 10_000, maxDelayMs: 60_000 },
    now: () => t, sleep: (ms) => { t += ms; onSleep(ms); return Promise.resolve(); },
  });
}

function deployed(s: ClusterSpec) {
  stacks.set(s.name, { deployed: s, desired: s });
  model.instances = s.hosts.map((h) => ({ id: `i-${h}`, tags: [{ Key: 'berth:cluster', Value: s.name }, { Key: 'berth:host', Value: h }, { Key: 'berth:ready', Value: 'true' }] }));
  model.volumes = s.nodes.map((n) => ({ id: `vol-${n.name}`, tags: [{ Key: 'berth:cluster', Value: s.name }, { Key: 'berth:volume', Value: `${s.name}-${n.name}` }, { Key: 'berth:state', Value: 'mounted' }] }));
  model.services = s.nodes.map((n) => `${s.name}-${n.name}`);
  tasksStart();
}

describe('ClusterApi', () => {
  it('create returns once berth reports the host ready and the volume mounted, and says what is deployed', async () => {
    let polls = 0;
    const result = await api(() => { if (++polls === 3) berthBecomesReady(); }).create(spec);
    expect(polls).toBe(3);
    expect(result).toEqual({ cluster: 'shop', operation: 'create', deployed: spec, attempts: 1 });
    expect(stacks.get('shop')?.deployed).toEqual(spec);
  });
  it('reports progress a UI can show: validated, applying, each resource, waiting with what is pending, ready, succeeded', async () => {
    const events: ProgressEvent[] = [];
    let polls = 0;
    await api(() => { if (++polls === 2) berthBecomesReady(); }).create(spec, { onProgress: (e) => events.push(e) });
    expect(events.map((e) => e.phase)).toEqual(['validated', 'applying', 'resource', 'waiting', 'ready', 'succeeded']);
    expect(events.every((e) => e.cluster === 'shop' && e.operation === 'create' && e.message.length > 0)).toBe(true);
    expect(events[2]!.resource).toEqual({ op: 'create', type: 'aws:ecs/service:Service', name: 'shop-n1', status: 'started' });
    expect(events[3]!.pending).toEqual([
      'host h1: instance i-h1 is not tagged berth:ready=true yet (berth is still mounting its volumes)',
      'node n1: volume vol-n1 is not reported by berth yet, not mounted',
      'node n1: ECS service shop-n1: no task is running',
    ]);
  });
  it('a progress sink that throws does not fail the change', async () => {
    const result = await api().create(spec, { onProgress: () => { throw new Error('UI gone'); } });
    expect(result.deployed).toEqual(spec);
  });
  it('retries a concurrent update and AWS throttling with growing waits, and says so', async () => {
    failures = [concurrentUpdate(), throttled()];
    const events: ProgressEvent[] = [];
    const waits: number[] = [];
    const result = await api((ms) => { waits.push(ms); berthBecomesReady(); }).create(spec, { onProgress: (e) => events.push(e) });
    expect(result.attempts).toBe(3);
    expect(waits.slice(0, 2)).toEqual([10_000, 20_000]);
    const retries = events.filter((e) => e.phase === 'retrying').map((e) => e.message);
    expect(retries).toEqual([
      expect.stringMatching(/attempt 1 failed \(concurrent-update: .*Another update is currently in progress.*\); trying again in 10 s/),
      expect.stringMatching(/attempt 2 failed \(transient: .*RequestLimitExceeded.*\); trying again in 20 s/),
    ]);
  });
  it('gives up after the bounded attempts with a clear final error naming the cause', async () => {
    failures = [throttled(), throttled(), throttled(), throttled()];
    const err = await api().create(spec).catch((e: ClusterOperationError) => e);
    expect(err).toMatchObject({ name: 'ClusterOperationError', cluster: 'shop', operation: 'create', attempts: 3, kind: 'transient' });
    expect((err as Error).message).toBe('create of cluster shop failed (transient, gave up after 3 attempt(s)): creating EC2 Launch Template: RequestLimitExceeded: Request limit exceeded.');
    expect(applied).toHaveLength(3);
  });
  it('does not retry a permanent failure, and status then tells the deployed spec from the change that failed', async () => {
    deployed(spec);
    const bigger: ClusterSpec = { ...spec, hosts: ['h1', 'h2'], nodes: [...spec.nodes, { name: 'n2', host: 'h2' }] };
    failures = [Object.assign(new Error('stderr: error: creating IAM Role: AccessDenied: not authorized'), { name: 'CommandError' })];
    await expect(api().addNodes('shop', [{ name: 'n2', host: 'h2' }])).rejects.toThrow(/^add-nodes of cluster shop failed: creating IAM Role: AccessDenied: not authorized$/);
    expect(applied).toHaveLength(1);
    const status = await api().status('shop');
    expect(status).toEqual({ name: 'shop', deployed: spec, pendingChange: bigger, ready: true, notReady: [] });
  });
  it('adds a node on a new host and removes it again, host and all, with the invariants on each step', async () => {
    deployed(spec);
    const added = await api().addNodes('shop', [{ name: 'n2', host: 'h2' }]);
    expect(added.deployed).toEqual({ ...spec, hosts: ['h1', 'h2'], nodes: [{ name: 'n1', host: 'h1' }, { name: 'n2', host: 'h2' }] });
    const removed = await api().removeNodes('shop', ['n2']);
    expect(removed.deployed).toEqual(spec);
    await expect(api().removeNodes('shop', ['n1'])).rejects.toThrow(/at least one node/);
    await expect(api().removeNodes('shop', ['n9'])).rejects.toThrow(/has no node n9/);
    await expect(api().addNodes('shop', [{ name: 'n1', host: 'h1' }])).rejects.toThrow(/n1 is listed twice/);
    expect(applied).toHaveLength(2);
  });
  it('a stopped node (its service at 0 tasks, a zone move\'s first step) is ready without a task or a mounted volume', async () => {
    const two: ClusterSpec = { ...spec, nodes: [{ name: 'n1', host: 'h1' }, { name: 'n2', host: 'h1' }] };
    deployed(two);
    const stopped: ClusterSpec = { ...two, nodes: [two.nodes[0]!, { name: 'n2', host: 'h1', stopped: true }] };
    const result = await api(() => {
      berthBecomesReady();
      // ECS runs no task for it; berth unmounted its volume.
      model.tasks = model.tasks.filter((t) => t.service !== 'shop-n2');
      model.volumes.find((v) => v.id === 'vol-n2')!.tags = [{ Key: 'berth:cluster', Value: 'shop' }, { Key: 'berth:volume', Value: 'shop-n2' }, { Key: 'berth:state', Value: 'idle' }];
    }, 30_000).update(stopped);
    expect(result.deployed).toEqual(stopped);
    expect((await api().status('shop'))!.notReady).toEqual([]);
  });
  it('times out with the pending items named when berth never becomes ready', async () => {
    await expect(api(() => undefined, 5000).create(spec)).rejects.toThrow(/not ready after 5s: host h1: .*; node n1: volume vol-n1 is not reported by berth yet, not mounted; node n1: ECS service shop-n1: no task is running$/);
  });
  it('is not ready while the tags say ready but the node task keeps stopping, and says why', async () => {
    model.taskFails = 'CannotStartContainerError: volume shop-n1: invalid volume options';
    await expect(api(() => berthBecomesReady(), 5000).create(spec))
      .rejects.toThrow(/not ready after 5s: node n1: ECS service shop-n1: no task is running; last task stopped: CannotStartContainerError: volume shop-n1: invalid volume options$/);
  });
  it('fails fast when berth tags a volume with an error', async () => {
    await expect(api(() => berthBecomesReady('error:identity mismatch')).create(spec)).rejects.toThrow(/error:identity mismatch/);
  });
  it('refuses an invalid shrink before applying anything', async () => {
    deployed(spec);
    await expect(api().update({ ...spec, hosts: [], nodes: [] })).rejects.toThrow(/at least one node/);
    expect(applied).toEqual([]);
  });
  it('refuses creating an existing cluster and changing a missing one', async () => {
    deployed(spec);
    await expect(api().create(spec)).rejects.toThrow(/already exists/);
    await expect(api().update({ ...spec, name: 'other' })).rejects.toThrow(/does not exist/);
    await expect(api().addNodes('other', [{ name: 'n2', host: 'h2' }])).rejects.toThrow(/does not exist/);
    expect(applied).toEqual([]);
  });
  it('a create whose first deployment failed can be run again', async () => {
    failures = [new Error('error: creating EC2 Launch Template: InvalidParameterValue')];
    await expect(api().create(spec)).rejects.toThrow(/InvalidParameterValue/);
    expect(stacks.get('shop')).toEqual({ deployed: undefined, desired: spec });
    expect((await api().create(spec)).deployed).toEqual(spec);
  });
  it('runs one operation per cluster at a time and refuses a second one clearly', async () => {
    deployed(spec);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const slow: ClusterWorkspace = { ...workspace, apply: async (s, o) => { await gate; return workspace.apply(s, o); } };
    const shared = new ClusterApi({ environment: 'prod', workspace: slow, regions: ['eu-west-1'], ec2: () => new EC2Client({ region: 'eu-west-1' }), ecs: () => new ECSClient({ region: 'eu-west-1' }), sleep: () => { berthBecomesReady(); return Promise.resolve(); } });
    const first = shared.addNodes('shop', [{ name: 'n2', host: 'h2' }]);
    await expect(shared.removeNodes('shop', ['n1'])).rejects.toThrow(/busy with add-nodes/);
    release();
    await first;
  });
  it('deletes through the invariants: a stack whose nodes sit outside its hosts is refused, a missing one is fine', async () => {
    stacks.set('shop', { deployed: { ...spec, hosts: ['h1'], nodes: [{ name: 'n1', host: 'h9' }] }, desired: undefined });
    await expect(api().delete('shop')).rejects.toThrow(/n1 on h9 outside its hosts/);
    expect(stacks.has('shop')).toBe(true);
    deployed(spec);
    const events: ProgressEvent[] = [];
    expect(await api().delete('shop', { onProgress: (e) => events.push(e) })).toEqual({ cluster: 'shop', operation: 'delete', deployed: undefined, attempts: 1 });
    expect(events[0]!.message).toBe('deleting cluster shop: 1 node(s), then 1 host(s)');
    expect(await api().status('shop')).toBeUndefined();
    expect((await api().delete('shop')).attempts).toBe(0);
  });
  it('lists clusters and reports the status of each from what is deployed', async () => {
    deployed(spec);
    expect(await api().list()).toEqual(['shop']);
    model.volumes[0]!.tags = model.volumes[0]!.tags.filter((t) => t.Key !== 'berth:state');
    expect(await api().status('shop')).toEqual({ name: 'shop', deployed: spec, pendingChange: undefined, ready: false, notReady: ['node n1: volume vol-n1 is not reported by berth yet, not mounted'] });
  });

  describe('attachment limits (docs/design.md §6)', () => {
    const nodes = (count: number, host = 'h1') => Array.from({ length: count }, (_, i) => ({ name: `n${i + 1}`, host }));
    it('refuses a zone move to a host that has no slot left, before the node is stopped', async () => {
      // h1 and the full host in different subnets (the unit program's placement), so the zones differ.
      const full = ['h2', 'h3', 'h4', 'h5', 'h6'].find((h) => subnetIndexFor(h, 3) !== subnetIndexFor('h1', 3))!;
      const s: ClusterSpec = { ...spec, hosts: ['h1', full], nodes: [{ name: 'db', host: 'h1' }, ...nodes(26, full)] };
      deployed(s);
      stacks.set('shop', { deployed: s, desired: s, zones: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'] });
      const err = (await api().moveNode('shop', 'db', full).catch((e: unknown) => e)) as ClusterOperationError;
      expect(err.kind).toBe('invariant');
      expect(err.message).toMatch(new RegExp(`host ${full} would carry 27 nodes, but a t3\\.medium host attaches at most 26 node volumes`));
      expect(applied).toEqual([]);
      // A stack without the zones output: the zone of a host is not known.
      stacks.set('shop', { deployed: s, desired: s });
      await expect(api().moveNode('shop', 'db', full)).rejects.toThrow(new RegExp(`the zone of host ${full} is not known: cluster shop's stack has no "zones" output`));
      expect(applied).toEqual([]);
    });
    it('refuses, before anything is applied, a spec that places more nodes on a host than its type can attach', async () => {
      // t3.medium (the default): 28 shared slots, less the root volume and the primary interface.
      const crowded: ClusterSpec = { ...spec, nodes: nodes(27) };
      const err = (await api().create(crowded).catch((e: unknown) => e)) as ClusterOperationError;
      expect(err.kind).toBe('invariant');
      expect(err.message).toMatch(/host h1 would carry 27 nodes, but a t3\.medium host attaches at most 26 node volumes \(t3\.medium has 28 attachment slots shared by EBS volumes, network interfaces and NVMe instance store/);
      expect(applied).toEqual([]);
      // An instance type with NVMe instance store has one slot fewer; a dedicated limit counts EBS only.
      await expect(api().create({ ...spec, instanceType: 'm6id.large', nodes: nodes(26) })).rejects.toThrow(/at most 25 node volumes/);
      expect(applied).toEqual([]);
      const events: ProgressEvent[] = [];
      await api().create({ ...spec, instanceType: 'm7i.large', nodes: nodes(31) }, { onProgress: (e) => events.push(e) });
      expect(events[0]!.message).toBe('cluster shop: 1 host(s), 31 node(s), up to 31 node(s) per m7i.large host');
    });
    it('adding nodes past the limit is refused and the deployed cluster is left as it is', async () => {
      const full: ClusterSpec = { ...spec, nodes: nodes(26) };
      deployed(full);
      await expect(api().addNodes('shop', [{ name: 'extra', host: 'h1' }])).rejects.toThrow(/host h1 would carry 27 nodes/);
      expect(applied).toEqual([]);
      expect(stacks.get('shop')?.deployed).toEqual(full);
    });
    it('an instance type EC2 does not know is refused; one EC2 states no limit for is applied, and the progress says it was not checked', async () => {
      await expect(api().create({ ...spec, instanceType: 'x9.huge' })).rejects.toThrow(/instance type x9\.huge does not exist in eu-west-1/);
      expect(applied).toEqual([]);
      ec2.on(DescribeInstanceTypesCommand).resolves({ InstanceTypes: [{ InstanceType: 'm4.large', EbsInfo: {} }] });
      const events: ProgressEvent[] = [];
      await api().create({ ...spec, instanceType: 'm4.large' }, { onProgress: (e) => events.push(e) });
      expect(events[0]!.message).toMatch(/attachment limit not checked: EC2 states no EBS attachment limit for m4\.large/);
    });
  });
  describe('names across the environment\'s clusters (one label each under the zone)', () => {
    const one = (name: string, node: string): ClusterSpec => ({ name, region: 'eu-west-1', hosts: [`${name}-h1`], nodes: [{ name: node, host: `${name}-h1` }] });

    it('refuses a create whose node label another cluster\'s node publishes (node a-b of c, node a of b-c), before any stack is touched', async () => {
      deployed(one('c', 'a-b'));
      const events: ProgressEvent[] = [];
      const err = await api().create(one('b-c', 'a'), { onProgress: (e) => events.push(e) }).catch((e: ClusterOperationError) => e);
      expect(err).toMatchObject({ name: 'ClusterOperationError', cluster: 'b-c', operation: 'create', attempts: 0, kind: 'invariant' });
      expect((err as Error).message).toBe('node a of cluster b-c would publish a-b-c.<zone>, which node a-b of cluster c publishes (<node>-<cluster> joins names that may contain "-"); rename the node or the cluster');
      expect(events.map((e) => e.phase)).toEqual(['failed']);
      expect(applied).toEqual([]);
      expect(stacks.has('b-c')).toBe(false);
    });
    it('refuses a cluster named like another cluster\'s node label, and adding that node beside such a cluster', async () => {
      deployed(one('shop', 'db1'));
      await expect(api().create(one('db1-shop', 'n1'))).rejects.toThrow(/^cluster db1-shop would publish db1-shop\.<zone>, which node db1 of cluster shop publishes/);
      stacks.clear();
      deployed(one('shop', 'db2'));
      stacks.set('db1-shop', { deployed: one('db1-shop', 'n1'), desired: one('db1-shop', 'n1') });
      await expect(api().addNodes('shop', [{ name: 'db1', host: 'shop-h1' }])).rejects.toThrow(/^node db1 of cluster shop would publish db1-shop\.<zone>, which cluster db1-shop publishes/);
      expect(applied).toEqual([]);
    });
    it('counts the names a failed change asked for: applied again, that stack would publish them', async () => {
      stacks.set('c', { deployed: undefined, desired: one('c', 'a-b') });
      await expect(api().create(one('b-c', 'a'))).rejects.toThrow(/which node a-b of cluster c publishes/);
      expect(applied).toEqual([]);
    });
    it('refuses a node whose label is a region\'s Traefik record, traefik-<region>', async () => {
      await expect(api().create(one('west-1', 'traefik-eu'))).rejects.toThrow(/^node traefik-eu of cluster west-1: its DNS name would be traefik-eu-west-1\.<zone>, a region's Traefik host's/);
      expect(applied).toEqual([]);
    });
    it('of two colliding changes running at once in this process, refuses the later one', async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      const slow: ClusterWorkspace = { ...workspace, apply: async (s, o) => { await gate; return workspace.apply(s, o); } };
      const shared = new ClusterApi({ environment: 'prod', workspace: slow, regions: ['eu-west-1'], ec2: () => new EC2Client({ region: 'eu-west-1' }), ecs: () => new ECSClient({ region: 'eu-west-1' }), sleep: () => { berthBecomesReady(); return Promise.resolve(); } });
      const first = shared.create(one('c', 'a-b'));
      const second = shared.create(one('b-c', 'a')).then(() => undefined, (e: Error) => e);
      release();
      await first;
      expect((await second)?.message).toMatch(/node a of cluster b-c would publish a-b-c\.<zone>, which node a-b of cluster c publishes/);
      expect(applied.map((s) => s.name)).toEqual(['c']);
    });
    it('creates clusters whose names share parts but no label, reading only the stacks that could publish one of the new labels', async () => {
      const reads: string[] = [];
      const counting: ClusterWorkspace = { ...workspace, read: (n) => { reads.push(n); return workspace.read(n); } };
      const reading = new ClusterApi({ environment: 'prod', workspace: counting, regions: ['eu-west-1'], ec2: () => new EC2Client({ region: 'eu-west-1' }), ecs: () => new ECSClient({ region: 'eu-west-1' }), sleep: () => { berthBecomesReady(); return Promise.resolve(); } });
      const others = (r: string[], self: string) => r.filter((n) => n !== self);
      for (const [name, node] of [['shop', 'db1'], ['blue', 'db1'], ['eu', 'db1'], ['shop-eu', 'db1']] as const) {
        reads.length = 0;
        expect((await reading.create(one(name, node))).deployed).toEqual(one(name, node));
        // shop-eu's labels (shop-eu, db1-shop-eu) could come only from a cluster named eu; shop and blue are not read.
        expect(others(reads, name)).toEqual(name === 'shop-eu' ? ['eu'] : []);
      }
      expect(applied.map((s) => s.name)).toEqual(['shop', 'blue', 'eu', 'shop-eu']);
      reads.length = 0;
      await reading.update({ ...one('shop', 'db1'), instanceType: 't3.large' });
      expect(others(reads, 'shop')).toEqual([]);
    });
  });
});
