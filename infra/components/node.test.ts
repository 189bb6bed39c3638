import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { recordResources, type Declared } from './mocks.js';

let created: Declared[] = [];

beforeAll(() => {
  created = recordResources();
});

describe('Node under setMocks', () => {
  it('declares a tagged volume, a task with the berth volume and a service pinned to its host', async () => {
    const { Node } = await import('./node.js');
    const node = new Node('n1', { node: 'n1', host: 'shop-h1', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', ecsCluster: 'c-eu', availabilityZone: 'eu-west-1a' });
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
    const node = new Node('n2', { node: 'n2', host: 'shop-h1', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', ecsCluster: 'c-eu', availabilityZone: 'eu-west-1a' }, {
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
});
