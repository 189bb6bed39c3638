import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCidr } from './cidr-map.js';
import { ofType, recordResources, settled, type Declared } from '../test/pulumi-mocks.js';
import { carveSubnets } from './vpc.js';

let declared: Declared[] = [];
beforeAll(() => {
  declared = recordResources();
});

const inside = (inner: string, outer: string) => {
  const a = parseCidr(inner);
  const b = parseCidr(outer);
  return a.start >= b.start && a.end <= b.end;
};

describe('carveSubnets', () => {
  it('gives the same disjoint subnets inside the VPC range every time', () => {
    const s = carveSubnets('10.1.0.0/16', 2, 3);
    expect(s).toEqual({ private: ['10.1.0.0/18', '10.1.64.0/18', '10.1.128.0/18'], public: ['10.1.192.0/20', '10.1.208.0/20'] });
    expect(carveSubnets('10.1.0.0/16', 2, 3)).toEqual(s);
    const all = [...s.public, ...s.private].map(parseCidr);
    for (const [i, a] of all.entries()) for (const b of all.slice(i + 1)) expect(a.end < b.start || b.end < a.start).toBe(true);
    for (const c of [...s.public, ...s.private]) expect(inside(c, '10.1.0.0/16')).toBe(true);
  });
  it('scales with the VPC prefix', () => {
    expect(carveSubnets('10.7.16.0/20', 2, 2)).toEqual({ private: ['10.7.16.0/22', '10.7.20.0/22'], public: ['10.7.28.0/24', '10.7.29.0/24'] });
  });
  it('refuses ranges too small and impossible subnet counts', () => {
    expect(() => carveSubnets('10.1.0.0/26', 2, 2)).toThrow(/too small/);
    expect(() => carveSubnets('10.1.0.0/16', 2, 4)).toThrow(/1 to 3 private/);
    expect(() => carveSubnets('10.1.0.1/16', 2, 2)).toThrow(/host bits/);
  });
  it('refuses a block larger than /16 before any resource, as CreateVpc would later', () => {
    expect(() => carveSubnets('10.0.0.0/8', 2, 2)).toThrow(/VPC CIDR 10\.0\.0\.0\/8 is larger than \/16/);
    expect(() => carveSubnets('10.0.0.0/15', 2, 3)).toThrow(/larger than \/16/);
  });
});

describe('Vpc under setMocks', () => {
  const ofVpc = (prefix: string, type: string) => ofType(declared, type).filter((d) => d.name.startsWith(prefix));

  it('global: 2 public + 2 private subnets over 2 AZs, private traffic through a NAT gateway with an EIP', async () => {
    const { Vpc, VPC_LAYOUTS } = await import('./vpc.js');
    const vpc = new Vpc('g', { cidr: '10.0.0.0/16', layout: VPC_LAYOUTS.global, availabilityZones: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'] });
    await new Promise<void>((r) => pulumi.all([vpc.vpcId, ...vpc.privateSubnetIds]).apply(() => r()));
    await settled(declared);
    const subnets = ofVpc('g-', 'aws:ec2/subnet:Subnet');
    const tier = (t: string) => subnets.filter((s) => (s.inputs['tags'] as Record<string, string>)['berth:tier'] === t);
    expect(tier('public').map((s) => s.inputs['availabilityZone'])).toEqual(['eu-west-1a', 'eu-west-1b']);
    expect(tier('private').map((s) => s.inputs['availabilityZone'])).toEqual(['eu-west-1a', 'eu-west-1b']);
    expect(tier('public').every((s) => s.inputs['mapPublicIpOnLaunch'] === true)).toBe(true);
    expect(tier('private').every((s) => s.inputs['mapPublicIpOnLaunch'] === false)).toBe(true);
    const nat = ofVpc('g-', 'aws:ec2/natGateway:NatGateway');
    expect(nat).toHaveLength(1);
    expect(nat[0]!.inputs['allocationId']).toBe('g-nat-id');
    expect(nat[0]!.inputs['subnetId']).toBe('g-public-0-id');
    const routes = ofVpc('g-', 'aws:ec2/route:Route').map((r) => [r.inputs['routeTableId'], r.inputs['destinationCidrBlock'], r.inputs['natGatewayId'] ?? r.inputs['gatewayId']]);
    expect(routes).toEqual([['g-public-id', '0.0.0.0/0', 'g-igw-id'], ['g-private-id', '0.0.0.0/0', 'g-nat-id']]);
    expect(ofVpc('g-', 'aws:ec2/routeTableAssociation:RouteTableAssociation')).toHaveLength(4);
  });

  it('regional: 2 public + 3 private over 3 AZs, no NAT gateway and no Pulumi-owned default route in private subnets', async () => {
    const { Vpc, VPC_LAYOUTS } = await import('./vpc.js');
    const vpc = new Vpc('r', { cidr: '10.2.0.0/16', layout: VPC_LAYOUTS.regional, availabilityZones: ['us-east-1a', 'us-east-1b', 'us-east-1d'], region: 'us-east-1' });
    const azs = await new Promise<string[]>((r) => pulumi.all(vpc.privateSubnetAzs).apply(r));
    await settled(declared);
    expect(azs).toEqual(['us-east-1a', 'us-east-1b', 'us-east-1d']);
    const cidrs = ofVpc('r-', 'aws:ec2/subnet:Subnet').map((s) => s.inputs['cidrBlock']);
    expect(cidrs.sort()).toEqual(['10.2.0.0/18', '10.2.128.0/18', '10.2.192.0/20', '10.2.208.0/20', '10.2.64.0/18']);
    expect(ofVpc('r-', 'aws:ec2/natGateway:NatGateway')).toHaveLength(0);
    const routes = ofVpc('r-', 'aws:ec2/route:Route').map((r) => [r.inputs['routeTableId'], r.inputs['destinationCidrBlock'], r.inputs['gatewayId']]);
    expect(routes).toEqual([['r-public-id', '0.0.0.0/0', 'r-igw-id']]);
    expect(ofVpc('r-', 'aws:ec2/routeTable:RouteTable').every((t) => t.inputs['routes'] === undefined)).toBe(true);
  });

  it('regional: hosts reach S3 through a gateway endpoint on both route tables, not through the NAT instance', async () => {
    const endpoints = ofVpc('r-', 'aws:ec2/vpcEndpoint:VpcEndpoint');
    expect(endpoints.map((e) => [e.inputs['serviceName'], e.inputs['vpcEndpointType'], e.inputs['vpcId']])).toEqual([['com.amazonaws.us-east-1.s3', 'Gateway', 'r-vpc-id']]);
    expect([...(endpoints[0]!.inputs['routeTableIds'] as string[])].sort()).toEqual(['r-private-id', 'r-public-id']);
    // The global VPC has a NAT gateway that is never replaced: no endpoint there.
    expect(ofVpc('g-', 'aws:ec2/vpcEndpoint:VpcEndpoint')).toEqual([]);
    const { Vpc, VPC_LAYOUTS } = await import('./vpc.js');
    expect(() => new Vpc('x', { cidr: '10.3.0.0/16', layout: VPC_LAYOUTS.regional, availabilityZones: ['a', 'b', 'c'] })).toThrow(/give its region/);
  });
});
