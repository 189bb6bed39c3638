import { DescribeServicesCommand, DescribeTasksCommand, ECSClient, ListTasksCommand } from '@aws-sdk/client-ecs';
import { EC2Client, type Volume } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nodeDriverOpts, tagKeys } from '../../lib/node-contract.js';
import { liveVolumes, type ZoneMoveDeps } from '../../volume-plugin/backends/ebs/zone-move.js';
import { ebsUnitWorld, HOST, type EbsUnitWorld } from '../../test/fakes/ebs.js';
import { ofType, type Declared } from '../test/pulumi-mocks.js';
import { importMismatch, InlineStacks, PulumiEbsVolumes, regionalOutputs, unitProgramMocks, type ApplyCrash } from '../test/unit-stacks.js';
import { subnetIndexFor } from '../programs/unit/index.js';
import { AutomationWorkspace, type UnitSettings } from './automation-workspace.js';
import { ClusterApi } from './cluster-api.js';
import type { ClusterSpec } from './invariants.js';
import type { ProgressEvent } from './progress.js';

/**
 * The cluster API's zone move of a node (issue 22 item 3), end to end: the real unit program
 * (under setMocks) applied to the EC2 model by a model of Pulumi's engine and the AWS provider for
 * EBS volumes (PulumiEbsVolumes: create, import with its "inputs must match" rule, retained
 * deletes), the move by zone-move.ts through the SDK client the API is given (the EC2 model behind
 * it), the source host's berth detaching the stopped node's volume, and the target host's real
 * volume service mounting the moved one. ECS is a mock that reports the node's task running.
 */
const k = tagKeys();
const NEAR = 'eu-west-1a'; // the target host's zone: ebsUnitWorld's host, HOST, runs berth's volume service there
const FAR = 'eu-west-1b'; // the node's zone before the move
const ENV = 'prod';
const NAME = 'shop-db1';
// A source host name whose subnet differs from HOST's, and the region's zones ordered so HOST is in NEAR, it in FAR.
const SOURCE = ['shop-h1', 'shop-h2', 'shop-h3', 'shop-h4', 'shop-h5'].find((h) => subnetIndexFor(h, 3) !== subnetIndexFor(HOST, 3))!;
const ZONES = (() => {
  const z = ['', '', ''];
  z[subnetIndexFor(HOST, 3)] = NEAR;
  z[subnetIndexFor(SOURCE, 3)] = FAR;
  z[z.indexOf('')] = 'eu-west-1c';
  return z;
})();
const EBS_KEY = 'arn:aws:kms:eu-west-1:123456789012:key/0b7c1e2a-1111-4222-8333-444455556666';
// The mover's waits in milliseconds (`settleMs`: a mover's settle time of its claim and cut-over, where zone-move.ts has one).
const MOVER = { pollMs: 2, settleMs: 5 } as Partial<ZoneMoveDeps>;
const settings: UnitSettings = { regions: ['eu-west-1'], regionalStack: 'acme/berth-regional/regional-{region}', zone: 'example.com', nodeImage: 'app:1', nodePort: 8080 };
const spec: ClusterSpec = { name: 'shop', region: 'eu-west-1', hosts: [SOURCE], nodes: [{ name: 'db1', host: SOURCE, sizeGiB: 8 }] };

let engine: PulumiEbsVolumes | undefined;
let declared: Declared[] = [];
beforeAll(() => {
  declared = unitProgramMocks(regionalOutputs({ privateSubnetAzs: ZONES, ebsKeyArn: EBS_KEY }), (a) => engine?.resource(a));
});

let w: EbsUnitWorld | undefined;
let restore: Array<() => void> = [];
function reset(): void {
  w?.cleanup();
  w = undefined;
  engine = undefined;
  for (const r of restore) r();
  restore = [];
}
afterEach(reset);

/** The node's live volumes by the readers' rule (zone-move.ts liveVolumes), as the model holds them. */
async function live(world: EbsUnitWorld): Promise<Volume[]> {
  const signal = AbortSignal.timeout(5_000);
  const named = (await world.port.describeVolumes({ Filters: [{ Name: `tag:${k.volume}`, Values: [NAME] }] }, signal)).Volumes ?? [];
  return liveVolumes(named, k, async (id) => (await world.port.describeVolumes({ VolumeIds: [id] }, signal)).Volumes?.[0]);
}

/**
 * One cluster `shop` with node db1 on SOURCE (in FAR), deployed, its volume attached there and
 * holding data; HOST (in NEAR) runs berth. `kill(n)` makes the API's n-th mutating EC2 call die
 * right after EC2 did it (the process killed between the call and its next step).
 */
async function deployed(opts: { detachTimeoutMs?: number } = {}) {
  w = ebsUnitWorld({ createLatencyMs: 2, snapshotLatencyMs: 5 });
  const world = w;
  const model = world.model;
  engine = new PulumiEbsVolumes(model);
  const pulumiVolumes = engine;
  const tags = { [k.cluster]: 'shop', [k.environment]: ENV, [k.ready]: 'true' };
  model.setTags(world.instanceId, tags);
  const source = model.addInstance({ az: FAR, tags: { ...tags, [k.host]: SOURCE } });
  const agent = await world.service(world.backend());
  const signal = () => AbortSignal.timeout(5_000);

  // ECS: the node's task runs (readiness reads it); what ECS does with the service is the hosts' reactions below.
  const ecs = mockClient(ECSClient);
  ecs.on(DescribeServicesCommand).resolves({ services: [{ serviceName: NAME, status: 'ACTIVE', taskDefinition: 'td:1', runningCount: 1 }] });
  ecs.on(ListTasksCommand, { desiredStatus: 'RUNNING' }).resolves({ taskArns: ['t1'] });
  ecs.on(ListTasksCommand, { desiredStatus: 'STOPPED' }).resolves({ taskArns: [] });
  ecs.on(DescribeTasksCommand).resolves({ tasks: [{ taskArn: 't1', lastStatus: 'RUNNING', desiredStatus: 'RUNNING', taskDefinitionArn: 'td:1' }] });
  const client = new EC2Client({ region: 'eu-west-1' });
  const stub = model.install(client);
  restore.push(() => ecs.restore(), () => stub.restore());

  const stacks = new InlineStacks(() => declared);
  const world2 = { detachOnStop: true, mounts: 0 };
  stacks.afterUp = async (_stack, run) => {
    pulumiVolumes.commit(run);
    // The applied service: berth on its host mounts the volume when it runs, detaches it (idle) when it stopped.
    const svc = ofType(run, 'aws:ecs/service:Service').at(-1)!;
    const onHost = String((svc.inputs['placementConstraints'] as Array<{ expression: string }>)[0]!.expression).endsWith(`== ${HOST}`);
    const [v] = await live(world);
    if (!v) throw new Error('no live volume');
    const attached = v.Attachments?.[0]?.InstanceId;
    if (svc.inputs['desiredCount'] === 0) {
      if (attached === source && world2.detachOnStop) await world.port.detachVolume({ VolumeId: v.VolumeId, InstanceId: source }, signal());
    } else if (!onHost && !attached) {
      await world.port.attachVolume({ VolumeId: v.VolumeId, InstanceId: source, Device: '/dev/xvdba' }, signal());
      model.setTags(v.VolumeId!, { [k.state]: 'mounted', [k.attachedTo]: source });
    } else if (onHost) {
      // ECS's Docker volume (autoprovision): Create with the task's driver options, then Mount.
      await agent.create(NAME, nodeDriverOpts({ sizeGiB: Number(ofType(run, 'aws:ebs/volume:Volume').at(-1)!.inputs['size']) }));
      await agent.publish(NAME, `task${++world2.mounts}`);
      model.setTags(v.VolumeId!, { [k.state]: 'mounted' });
    }
  };

  let killAfter: ((command: string, input: Record<string, unknown>) => boolean) | undefined;
  /** Mutating calls after which the node had not exactly one live volume (by the readers' rule). */
  const forks: string[] = [];
  const ec2 = {
    send: async (command: { input: Record<string, unknown> }) => {
      const out = await client.send(command as never);
      const name = command.constructor.name;
      if (!/^(Create|Delete|Attach|Detach|Modify)/.test(name)) return out;
      const count = (await live(world)).length;
      if (count !== 1) forks.push(`${count} live volumes after ${name} ${JSON.stringify(command.input)}`);
      if (killAfter?.(name, command.input)) {
        killAfter = undefined;
        throw new Error(`killed after ${name}`);
      }
      return out;
    },
  };
  const events: ProgressEvent[] = [];
  const api = new ClusterApi({
    environment: ENV, workspace: new AutomationWorkspace(settings, stacks), regions: settings.regions,
    ec2: () => ec2 as unknown as EC2Client, ecs: () => new ECSClient({ region: 'eu-west-1' }),
    sleep: () => new Promise((r) => setTimeout(r, 2)), pollMs: 2, move: MOVER, readyTimeoutMs: 5_000, retry: { attempts: 1, firstDelayMs: 1, maxDelayMs: 1 },
    ...(opts.detachTimeoutMs !== undefined ? { detachTimeoutMs: opts.detachTimeoutMs } : {}),
  });
  await api.create(spec);
  const [original] = await live(world);
  model.writeContent(original!.VolumeId!, 'rows of db1');
  const move = () => api.moveNode('shop', 'db1', HOST, { onProgress: (e) => void events.push(e) });
  return {
    world, api, stacks, engine: pulumiVolumes, events, move, original: original!, source, agent, reactions: world2,
    /** The API dies right after EC2 did the first call `at` picks (the process killed between the call and its next step). */
    kill(at: (command: string, input: Record<string, unknown>) => boolean) {
      killAfter = at;
    },
    forks,
  };
}

type World = Awaited<ReturnType<typeof deployed>>;

/** What a finished move leaves, whatever happened on the way. */
async function expectMoved(t: World): Promise<void> {
  const model = t.world.model;
  const now = await live(t.world);
  expect(now).toHaveLength(1);
  const moved = model.volume(now[0]!.VolumeId!);
  expect(moved).toMatchObject({ az: NEAR, size: 8, type: 'gp3', encrypted: true, kmsKeyId: EBS_KEY });
  expect(moved.tags).toMatchObject({ [k.volume]: NAME, [k.host]: HOST, [k.cluster]: 'shop', [k.environment]: ENV });
  expect(model.content(moved.volumeId)).toBe('rows of db1');
  // Pulumi holds the moved volume, imported; it created none but the original; the original left its state without a DeleteVolume.
  expect([...t.engine.state.values()]).toEqual([moved.volumeId]);
  expect(t.engine.created).toEqual([t.original.VolumeId]);
  expect(t.engine.forgotten).toContain(t.original.VolumeId);
  expect(model.calls('DeleteVolume')).toBe(0);
  const old = model.volume(t.original.VolumeId!);
  expect(old.tags[k.retired]).toBeDefined();
  expect(old.tags[k.volume]).toBeUndefined();
  expect(old.state).toBe('available');
  // One snapshot (never taken twice), one volume made by the move.
  expect(model.snapshotList()).toHaveLength(1);
  expect(model.volumes()).toHaveLength(2);
  // The node runs on HOST: its service there, and berth on HOST mounted the moved volume.
  const svc = ofType(declared, 'aws:ecs/service:Service').at(-1)!;
  expect(svc.inputs['desiredCount']).toBe(1);
  expect(svc.inputs['placementConstraints']).toEqual([{ type: 'memberOf', expression: `attribute:berth.host == ${HOST}` }]);
  expect(moved.attachment).toMatchObject({ instanceId: t.world.instanceId, state: 'attached' });
  expect(t.agent.describe(NAME)).toMatchObject({ mounted: true });
  const deployedSpec = (await t.api.status('shop'))!;
  expect(deployedSpec.deployed).toEqual({ ...spec, hosts: [HOST], nodes: [{ name: 'db1', host: HOST, sizeGiB: 8, volume: { id: moved.volumeId, snapshotId: moved.snapshotId, iops: 3000, throughput: 125 } }] });
  expect(deployedSpec.ready).toBe(true);
  expect(t.forks).toEqual([]);
}

describe('moving a node to another zone through the cluster API', () => {
  it('stops the node, waits for the detach, moves the volume with zone-move.ts, and the unit program adopts it (import id and inputs = the moved volume): the node runs on the new host with its data', async () => {
    const t = await deployed();
    const result = await t.move();
    expect(result.operation).toBe('move-node');
    await expectMoved(t);
    const said = t.events.map((e) => `${e.phase}: ${e.message}`);
    expect(said).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`^validated: moving node db1 from host ${SOURCE} \\(${FAR}\\) to host ${HOST} \\(${NEAR}\\)`)),
      'applying: stopping node db1 (its ECS service to 0 tasks)',
      expect.stringMatching(/^moving: step cutover: vol-\w+, snapshot snap-\w+, new volume vol-\w+$/),
      expect.stringMatching(/^moving: volume shop-db1 is vol-\w+ in eu-west-1a now; vol-\w+ is retired, kept until \d{4}-\d\d-\d\d$/),
      'succeeded: move-node of cluster shop done',
    ]));
    // The seam: the import id and the inputs the unit program declared are the moved volume as the EC2 model holds it.
    const vol = ofType(declared, 'aws:ebs/volume:Volume').at(-1)!;
    const moved = t.world.model.volume(vol.importId!);
    expect(vol.name).toBe(`${NAME}-data-${moved.volumeId}`);
    expect(importMismatch(vol.inputs, moved)).toEqual([]);
    expect(vol.inputs['tags']).toEqual(Object.fromEntries(Object.entries(moved.tags).filter(([key]) => [k.volume, k.host, k.cluster, k.environment, k.managedBy, 'Name'].includes(key))));
    // Run again: nothing left to do but to see the node ready.
    t.world.model.resetCalls();
    const ups = t.stacks.ups;
    await t.move();
    expect(t.stacks.ups).toBe(ups);
    expect(t.world.model.calls('CreateSnapshot') + t.world.model.calls('CreateVolume') + t.world.model.calls('CreateTags')).toBe(0);
  });

  it('refuses up front, changing nothing: a host in the same zone, an unknown node, a bad host name, a move to another zone already journalled', async () => {
    const t = await deployed();
    const model = t.world.model;
    const sameZone = ['shop-h6', 'shop-h7', 'shop-h8', 'shop-h9'].find((h) => subnetIndexFor(h, 3) === subnetIndexFor(SOURCE, 3))!;
    const calls = () => model.calls('CreateTags') + model.calls('CreateSnapshot') + model.calls('DetachVolume');
    const ups = t.stacks.ups;
    model.resetCalls();
    await expect(t.api.moveNode('shop', 'db1', sameZone)).rejects.toThrow(new RegExp(`host ${sameZone} is in ${FAR}, where node db1 and its volume are already`));
    await expect(t.api.moveNode('shop', 'db9', HOST)).rejects.toThrow(/cluster shop has no node db9/);
    await expect(t.api.moveNode('shop', 'db1', 'Bad_Host')).rejects.toThrow(/host name "Bad_Host"/);
    model.setTags(t.original.VolumeId!, { [k.move]: 'step=snapshot to=eu-west-1c id=m1' });
    await expect(t.api.moveNode('shop', 'db1', HOST)).rejects.toThrow(/volume shop-db1 \(vol-\w+\) is already moving to eu-west-1c \(step snapshot\); finish that move \(berth move shop-db1 --zone eu-west-1c\) or abort it/);
    model.removeTags(t.original.VolumeId!, [k.move]);
    expect(calls()).toBe(0);
    expect(t.stacks.ups).toBe(ups);
    expect(model.volume(t.original.VolumeId!).attachment?.instanceId).toBe(t.source);
  });

  it('a volume berth does not detach in time: a clear error, the node stays stopped with its volume untouched, and the move finishes when run again', async () => {
    const t = await deployed({ detachTimeoutMs: 300 });
    t.reactions.detachOnStop = false;
    await expect(t.move()).rejects.toThrow(new RegExp(`volume shop-db1 is still attached after 0 s: ${t.original.VolumeId} attached to ${t.source} \\(attached\\); the node stays stopped`));
    expect(t.world.model.snapshotList()).toHaveLength(0);
    expect(ofType(declared, 'aws:ecs/service:Service').at(-1)!.inputs['desiredCount']).toBe(0);
    await t.world.port.detachVolume({ VolumeId: t.original.VolumeId, InstanceId: t.source }, AbortSignal.timeout(5_000));
    await t.move();
    await expectMoved(t);
  });
});

/** The journal step a CreateTags call writes on the source volume, if it is one. */
const journalStep = (input: Record<string, unknown>) => (input['Tags'] as Array<{ Key: string; Value: string }> | undefined)?.find((t) => t.Key === k.move)?.Value.split(' ')[0];

describe('the API killed at any point of a zone move, and the move run again', () => {
  const kills: Array<[string, (command: string, input: Record<string, unknown>) => boolean]> = [
    ['after CreateSnapshot (the move journalled at step snapshot)', (c) => c === 'CreateSnapshotCommand'],
    ['after CreateVolume, before the cut-over', (c) => c === 'CreateVolumeCommand'],
    ['right after the cut-over (the new volume not named yet)', (c, i) => c === 'CreateTagsCommand' && journalStep(i) === 'step=cutover'],
    ['after the move, before the unit program is applied', (c, i) => c === 'CreateTagsCommand' && journalStep(i) === 'step=done'],
  ];
  for (const [point, at] of kills) {
    it(`${point}: one live volume at every call, then the node moved, the old volume retired, nothing blank made`, async () => {
      const t = await deployed();
      t.kill(at);
      await expect(t.move()).rejects.toThrow(/killed after/);
      const [now] = await live(t.world);
      expect(await live(t.world)).toHaveLength(1);
      if (t.world.model.volume(t.original.VolumeId!).tags[k.move]?.startsWith('step=done')) {
        // The move is done and the new volume tagged to HOST: berth there may attach it before the API runs again.
        await t.world.port.attachVolume({ VolumeId: now!.VolumeId, InstanceId: t.world.instanceId, Device: '/dev/xvdbb' }, AbortSignal.timeout(5_000));
      }
      await t.move();
      await expectMoved(t);
    });
  }

  for (const crash of ['before-import', 'after-import'] as ApplyCrash[]) {
    it(`a pulumi up killed ${crash.replace('-', ' ')} (the old volume still in its state): run again, Pulumi holds only the moved volume`, async () => {
      const t = await deployed();
      let ups = 0;
      t.stacks.beforeUp = () => {
        if (++ups === 2) t.engine.crashNext = crash;
      };
      await expect(t.move()).rejects.toThrow(new RegExp(`pulumi up killed ${crash.replace('-import', '')} its import step`));
      expect(await live(t.world)).toHaveLength(1);
      expect(t.engine.state.size).toBe(crash === 'after-import' ? 2 : 1);
      await t.move();
      await expectMoved(t);
    });
  }
});
