import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { recordResources, type Declared } from '../test/pulumi-mocks.js';
import { hostEbsPolicy } from './host-policy.js';

let created: Declared[] = [];

beforeAll(() => {
  created = recordResources();
});

describe('SecurityGroups under setMocks', () => {
  type Rule = { fromPort: number; toPort: number; protocol: string; cidrBlocks?: string[]; securityGroups?: string[] };
  it('opens the public entry points on the Traefik host only, and hosts only to Traefik on the node ports', async () => {
    const { SecurityGroups } = await import('./security-groups.js');
    const sg = new SecurityGroups('eu', { vpcId: 'vpc-1', vpcCidr: '10.1.0.0/16' });
    await new Promise<void>((resolve) => pulumi.all([sg.edgeGroupId, sg.hostGroupId]).apply(() => resolve()));
    const group = (n: string) => created.find((c) => c.type === 'aws:ec2/securityGroup:SecurityGroup' && c.name === n)!.inputs['ingress'] as Rule[];
    const edge = group('eu-edge');
    const open = edge.filter((r) => r.cidrBlocks?.includes('0.0.0.0/0')).map((r) => `${r.protocol}:${r.fromPort}-${r.toPort}`).sort();
    expect(open).toEqual(['tcp:4000-4000', 'tcp:8090-8090', 'tcp:8860-8860']);
    // Every protocol only from its own VPC (the NAT it does), never from all of 10.0.0.0/8.
    expect(edge.filter((r) => r.protocol === '-1').map((r) => r.cidrBlocks)).toEqual([['10.1.0.0/16']]);
    expect(edge.filter((r) => r.cidrBlocks?.includes('10.0.0.0/8')).map((r) => `${r.protocol}:${r.fromPort}`)).toEqual(['tcp:9860']);
    const hosts = group('eu-hosts');
    expect(hosts).toEqual([expect.objectContaining({ protocol: 'tcp', fromPort: 32768, toPort: 65535, securityGroups: ['eu-edge-id'] })]);
    expect(hosts.some((r) => r.cidrBlocks !== undefined)).toBe(false);
  });
});

describe('hostEbsPolicy', () => {
  const doc = hostEbsPolicy({ region: 'eu-west-1', accountId: '123456789012', environment: 'prod', cluster: 'shop' });
  const mutating = /^ec2:(Attach|Detach|Modify|Create|Delete)/;
  it('conditions every EBS mutating action on berth tags and never uses a bare *', () => {
    for (const s of doc.Statement) {
      if (!s.Action.some((a) => mutating.test(a))) continue;
      expect(s.Resource, s.Sid).not.toBe('*');
      expect([s.Resource].flat(), s.Sid).not.toContain('*');
      expect(s.Condition, s.Sid).toBeDefined();
      expect(JSON.stringify(s.Condition), s.Sid).toMatch(/berth:|ec2:CreateAction/);
    }
  });
  it('grants no volume deletion without a host id, and no wildcard actions', () => {
    const actions = doc.Statement.flatMap((s) => s.Action);
    expect(actions).not.toContain('ec2:DeleteVolume');
    expect(actions.filter((a) => a.includes('*'))).toEqual([]);
  });
  it('lets a host delete only managed volumes tagged to itself, and remove only berth tags', () => {
    const withHost = hostEbsPolicy({ region: 'eu-west-1', accountId: '123456789012', environment: 'prod', cluster: 'shop', hostId: 'h-7' });
    const deletes = withHost.Statement.filter((s) => s.Action.includes('ec2:DeleteVolume'));
    expect(deletes).toHaveLength(1);
    expect(deletes[0]!.Condition).toEqual({
      StringEquals: { 'aws:ResourceTag/berth:managed-by': 'berth', 'aws:ResourceTag/berth:cluster': 'shop', 'aws:ResourceTag/berth:environment': 'prod', 'aws:ResourceTag/berth:host': 'h-7' },
    });
    const untag = withHost.Statement.filter((s) => s.Action.includes('ec2:DeleteTags'));
    expect(untag).toHaveLength(1);
    expect(untag[0]!.Condition?.['ForAllValues:StringEquals']).toEqual({ 'aws:TagKeys': ['berth:host', 'berth:attached-to', 'berth:state'] });
    expect(untag[0]!.Condition?.['StringEquals']).toMatchObject({ 'aws:ResourceTag/berth:host': 'h-7' });
  });
});
