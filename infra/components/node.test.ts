import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { tagKeys } from '../../lib/node-contract.js';
import { EBS_OPTIONS, optionsOf } from '../../volume-plugin/backends/ebs/ebs-options.js';
import { conflictingOptions, parseGivenOptions } from '../../volume-plugin/options.js';
import { recordResources, type Declared } from '../test/pulumi-mocks.js';

let created: Declared[] = [];

beforeAll(() => {
  created = recordResources();
});

describe('Node under setMocks', () => {
  it('declares a tagged volume, a task with the berth volume and a service pinned to its host', async () => {
    const { Node } = await import('./node.js');
    const node = new Node('n1', { environment: 'prod', node: 'n1', host: 'shop-h1', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', ecsCluster: 'c-eu', availabilityZone: 'eu-west-1a' });
    await new Promise<void>((r) => pulumi.all([node.volumeId, node.serviceName]).apply(() => r()));
    for (let i = 0; i < 100 && !created.some((c) => c.type === 'aws:ecs/service:Service'); i++) await new Promise((r) => setTimeout(r, 20));
    const vol = created.find((c) => c.type === 'aws:ebs/volume:Volume')!;
    expect(vol.inputs['tags']).toMatchObject({ 'berth:volume': 'shop-n1', 'berth:cluster': 'shop', 'berth:managed-by': 'berth', 'berth:host': 'shop-h1' });
    const td = created.find((c) => c.type === 'aws:ecs/taskDefinition:TaskDefinition')!;
    expect(td.inputs['volumes']).toMatchObject([{ dockerVolumeConfiguration: { scope: 'shared', autoprovision: true, driver: 'berth' } }]);
    const svc = created.find((c) => c.type === 'aws:ecs/service:Service')!;
    expect(svc.inputs['placementConstraints']).toEqual([{ type: 'memberOf', expression: 'attribute:berth.host == shop-h1' }]);
    expect(svc.inputs['desiredCount']).toBe(1);
  });
  it('keeps the volume and its data when the node is removed, without blocking the removal, and leaves the tags berth writes alone', async () => {
    const { Node } = await import('./node.js');
    const seen: pulumi.ResourceTransformationArgs[] = [];
    const node = new Node('n2', { environment: 'prod', node: 'n2', host: 'shop-h1', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', ecsCluster: 'c-eu', availabilityZone: 'eu-west-1a' }, {
      transformations: [(a) => { seen.push(a); return undefined; }],
    });
    await new Promise<void>((r) => node.volumeId.apply(() => r()));
    const volume = seen.find((a) => a.type === 'aws:ebs/volume:Volume')!;
    // protect: true would fail every removal of the node (pulumi: "resource ... is protected").
    expect(volume.opts.protect).not.toBe(true);
    expect(volume.opts.retainOnDelete).toBe(true);
    // A change of zone or key must not replace the volume by a blank one.
    expect(volume.opts.ignoreChanges).toEqual(expect.arrayContaining(['availabilityZone', 'kmsKeyId']));
    expect(volume.opts.ignoreChanges).toEqual(expect.arrayContaining(['tags', 'tagsAll']));
  });
  it('hands ECS a Docker volume that berth finds as the EBS volume infra declared, with options that agree with it', async () => {
    const { Node } = await import('./node.js');
    const node = new Node('n3', { environment: 'prod', node: 'n3', host: 'shop-h2', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', ecsCluster: 'c-eu', availabilityZone: 'eu-west-1a', sizeGiB: 100 });
    await new Promise<void>((r) => node.volumeId.apply(() => r()));
    for (let i = 0; i < 100 && !created.some((c) => c.type === 'aws:ecs/taskDefinition:TaskDefinition' && c.name === 'n3-task'); i++) await new Promise((r) => setTimeout(r, 20));
    const vol = created.find((c) => c.type === 'aws:ebs/volume:Volume' && c.name === 'n3-data')!.inputs;
    const td = created.find((c) => c.type === 'aws:ecs/taskDefinition:TaskDefinition' && c.name === 'n3-task')!.inputs;
    const [volume] = td['volumes'] as Array<{ name: string; dockerVolumeConfiguration: { driverOpts: Record<string, string> } }>;
    const tags = vol['tags'] as Record<string, string>;
    // ECS names the Docker volume after the task definition volume (scope shared); berth looks it up by this tag.
    expect(volume!.name).toBe(tags[tagKeys().volume]);
    const [container] = JSON.parse(td['containerDefinitions'] as string) as Array<{ mountPoints: Array<{ sourceVolume: string }> }>;
    expect(container!.mountPoints.map((m) => m.sourceVolume)).toEqual([volume!.name]);
    // What berth's Create compares: the options given against those it reads off the EBS volume (ebs-options optionsOf).
    const given = parseGivenOptions(volume!.dockerVolumeConfiguration.driverOpts, EBS_OPTIONS);
    const existing = optionsOf({ Size: vol['size'] as number, VolumeType: vol['type'] as 'gp3', Encrypted: vol['encrypted'] as boolean }, undefined, { sizeBytes: 2 ** 30, fs: 'ext4' });
    expect(conflictingOptions(given, existing)).toEqual([]);
  });
  it('fails the program run (pulumi preview) on a size berth refuses', async () => {
    const { Node } = await import('./node.js');
    expect(() => new Node('n4', { environment: 'prod', node: 'n4', host: 'shop-h1', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', ecsCluster: 'c-eu', availabilityZone: 'eu-west-1a', sizeGiB: 2.5 }))
      .toThrow(/node n4: berth would refuse its volume: volume shop-n4: size 2560MiB is not a whole number of GiB, which EBS needs \(e.g. 3GiB\)/);
  });
  it('after a zone move adopts the moved volume (import, under a name of its own, inputs as the move made it, still retained) and a stopped node runs no task', async () => {
    const { Node } = await import('./node.js');
    const seen: pulumi.ResourceTransformationArgs[] = [];
    const volume = { id: 'vol-0123456789abcdef0', snapshotId: 'snap-0123456789abcdef0', iops: 3000, throughput: 125 };
    const node = new Node('n5', {
      environment: 'prod', node: 'n5', host: 'shop-h2', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', ecsCluster: 'c-eu', availabilityZone: 'eu-west-1b', sizeGiB: 8, volume, stopped: true,
    }, { transformations: [(a) => { seen.push(a); return undefined; }] });
    await new Promise<void>((r) => node.volumeId.apply(() => r()));
    for (let i = 0; i < 100 && !created.some((c) => c.type === 'aws:ecs/service:Service' && c.name === 'n5-svc'); i++) await new Promise((r) => setTimeout(r, 20));
    const vol = created.find((c) => c.type === 'aws:ebs/volume:Volume' && c.name === 'n5-data-vol-0123456789abcdef0')!;
    expect(vol.importId).toBe(volume.id);
    expect(vol.inputs).toMatchObject({ availabilityZone: 'eu-west-1b', size: 8, type: 'gp3', encrypted: true, snapshotId: volume.snapshotId, iops: 3000, throughput: 125 });
    expect(created.some((c) => c.name === 'n5-data')).toBe(false);
    const opts = seen.find((a) => a.type === 'aws:ebs/volume:Volume')!.opts;
    expect((opts as pulumi.CustomResourceOptions).import).toBe(volume.id);
    expect(opts.retainOnDelete).toBe(true);
    expect(created.find((c) => c.type === 'aws:ecs/service:Service' && c.name === 'n5-svc')!.inputs['desiredCount']).toBe(0);
  });
});
