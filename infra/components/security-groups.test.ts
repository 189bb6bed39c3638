import { beforeAll, describe, expect, it } from 'vitest';
import { recordResources, type Declared } from './mocks.js';
import { hostEbsPolicy } from './host-policy.js';

let created: Declared[] = [];

beforeAll(() => {
  created = recordResources();
});

describe('SecurityGroups under setMocks', () => {
  it('opens exactly the listed ports and nothing else to 0.0.0.0/0', async () => {
    const { SecurityGroups } = await import('./security-groups.js');
    const sg = new SecurityGroups('eu', { vpcId: 'vpc-1' });
    await new Promise<void>((resolve) => sg.groupId.apply(() => resolve()));
    const group = created.find((c) => c.type === 'aws:ec2/securityGroup:SecurityGroup');
    expect(group).toBeDefined();
    const ingress = group!.inputs['ingress'] as Array<{ fromPort: number; toPort: number; protocol: string; cidrBlocks: string[] }>;
    const open = ingress.filter((r) => r.cidrBlocks.includes('0.0.0.0/0')).map((r) => `${r.protocol}:${r.fromPort}-${r.toPort}`).sort();
    expect(open).toEqual(['tcp:4000-4000', 'tcp:8090-8090', 'tcp:8860-8860']);
    const internal = ingress.filter((r) => r.cidrBlocks.includes('10.0.0.0/8')).map((r) => `${r.protocol}:${r.fromPort}`).sort();
    expect(internal).toEqual(['-1:0', 'tcp:9860']);
    expect(ingress).toHaveLength(5);
  });
});

describe('hostEbsPolicy', () => {
  const doc = hostEbsPolicy({ region: 'eu-west-1', accountId: '123456789012', cluster: 'shop' });
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
    const withHost = hostEbsPolicy({ region: 'eu-west-1', accountId: '123456789012', cluster: 'shop', hostId: 'h-7' });
    const deletes = withHost.Statement.filter((s) => s.Action.includes('ec2:DeleteVolume'));
    expect(deletes).toHaveLength(1);
    expect(deletes[0]!.Condition).toEqual({
      StringEquals: { 'aws:ResourceTag/berth:managed-by': 'berth', 'aws:ResourceTag/berth:cluster': 'shop', 'aws:ResourceTag/berth:host': 'h-7' },
    });
    const untag = withHost.Statement.filter((s) => s.Action.includes('ec2:DeleteTags'));
    expect(untag).toHaveLength(1);
    expect(untag[0]!.Condition?.['ForAllValues:StringLike']).toEqual({ 'aws:TagKeys': ['berth:*'] });
  });
});
