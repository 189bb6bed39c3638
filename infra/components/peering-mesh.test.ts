import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { recordResources, type Declared } from '../test/pulumi-mocks.js';

let created: Declared[] = [];

beforeAll(() => {
  created = recordResources();
});

const settle = (outs: pulumi.Output<string>[]) => new Promise<string[]>((resolve) => pulumi.all(outs).apply(resolve));

describe('PeeringMesh under setMocks', () => {
  it('connects 4 regions with 6 peerings and routes both ways in every route table', async () => {
    const { PeeringMesh } = await import('./peering-mesh.js');
    const regions = ['eu-west-1', 'us-east-1', 'ap-southeast-2', 'sa-east-1'];
    const networks = Object.fromEntries(regions.map((r, i) => [r, { vpcId: `vpc-${r}`, cidr: `10.${i + 1}.0.0/16`, routeTableIds: [`rt-${r}-a`, `rt-${r}-b`] }]));
    const mesh = new PeeringMesh('mesh', { networks });
    await settle(mesh.connectionIds);
    // Routes wait on the accepters, so they register after the connection ids resolve.
    for (let i = 0; i < 100 && created.filter((c) => c.type === 'aws:ec2/route:Route').length < 24; i++) await new Promise((r) => setTimeout(r, 20));
    const peerings = created.filter((c) => c.type === 'aws:ec2/vpcPeeringConnection:VpcPeeringConnection');
    expect(peerings).toHaveLength(6);
    const routes = created.filter((c) => c.type === 'aws:ec2/route:Route').map((c) => `${String(c.inputs['routeTableId'])}>${String(c.inputs['destinationCidrBlock'])}`);
    for (const [i, r] of regions.entries()) {
      for (const [j, other] of regions.entries()) {
        if (i === j) continue;
        for (const rt of ['a', 'b']) expect(routes, `${r} -> ${other}`).toContain(`rt-${r}-${rt}>10.${j + 1}.0.0/16`);
      }
    }
    expect(routes).toHaveLength(6 * 2 * 2);
  });
  it('with a hub, declares only the hub\'s pairs (a regional stack peers with the regions before it)', async () => {
    const { PeeringMesh } = await import('./peering-mesh.js');
    const regions = ['eu-west-1', 'us-east-1', 'ap-southeast-2', 'sa-east-1'];
    const networks = Object.fromEntries(regions.map((r, i) => [r, { vpcId: `hub-vpc-${r}`, cidr: `10.${i + 1}.0.0/16`, routeTableIds: [`hub-rt-${r}`] }]));
    const mesh = new PeeringMesh('hubmesh', { networks, hub: 'sa-east-1' });
    await settle(mesh.connectionIds);
    const peerings = created.filter((c) => c.type === 'aws:ec2/vpcPeeringConnection:VpcPeeringConnection' && c.name.startsWith('hubmesh-'));
    expect(peerings.map((p) => [p.inputs['vpcId'], p.inputs['peerVpcId']].sort().join(' ')).sort()).toEqual([
      'hub-vpc-ap-southeast-2 hub-vpc-sa-east-1', 'hub-vpc-eu-west-1 hub-vpc-sa-east-1', 'hub-vpc-sa-east-1 hub-vpc-us-east-1',
    ]);
    expect(() => new PeeringMesh('nohub', { networks, hub: 'mars-1' })).toThrow(/hub mars-1 is not one of the networks/);
  });
  it('refuses overlapping regional CIDRs before declaring anything', async () => {
    const { PeeringMesh } = await import('./peering-mesh.js');
    const before = created.length;
    expect(() => new PeeringMesh('bad', { networks: {
      a: { vpcId: 'v1', cidr: '10.1.0.0/16', routeTableIds: [] },
      b: { vpcId: 'v2', cidr: '10.1.0.0/20', routeTableIds: [] },
    } })).toThrow(/overlaps/);
    expect(created.filter((c) => c.name.startsWith('bad-'))).toHaveLength(0);
    expect(created.length).toBeGreaterThanOrEqual(before);
  });
});
