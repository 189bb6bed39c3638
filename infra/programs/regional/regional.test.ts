import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { countByType, ofType, recordResources, settled, userdataParts, type Declared } from '../../test/pulumi-mocks.js';
import { openToWorld, PUBLIC_PORTS, resolveAll, unconditionedEbsMutations, userdataProblems } from '../../test/program-checks.js';

const regions = ['eu-west-1', 'us-east-1', 'ap-southeast-2'];
const cidrs = { 'eu-west-1': '10.1.0.0/16', 'us-east-1': '10.2.0.0/16', 'ap-southeast-2': '10.3.0.0/16' };
const config = {
  'aws:region': 'us-east-1',
  'berth:globalStack': 'acme/berth-global/prod',
  'berth:regions': JSON.stringify(regions),
  'berth:cidrs': JSON.stringify(cidrs),
  'berth:zone': 'example.com',
  'berth:zoneId': 'Z0EXAMPLE',
  'berth:release': 'build-42',
  'berth:certDomains': JSON.stringify(['example.com', '*.example.com']),
  'berth:renewer': JSON.stringify({ email: 'ops@example.com', codePath: '.build/renewer' }),
  'berth:operations': JSON.stringify({ codePath: '.build/lambdas' }),
};

let declared: Declared[] = [];
beforeAll(() => {
  declared = recordResources({
    stacks: {
      'acme/berth-global/prod': {
        environment: 'prod', region: 'eu-west-1', artifactsBucket: 'berth-artifacts-0001', environmentBucket: 'berth-environment-0001', bucketKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/buckets',
        traefikRepositoryUrl: '111122223333.dkr.ecr.eu-west-1.amazonaws.com/berth/traefik',
      },
      // us-east-1 comes second in berth:regions: it peers with eu-west-1's stack, not with ap-southeast-2.
      'regional-eu-west-1': { vpcId: 'vpc-eu', routeTableIds: ['rtb-eu-public', 'rtb-eu-private'] },
    },
    calls: {
      'aws:index/getCallerIdentity:getCallerIdentity': () => ({ accountId: '111122223333', arn: 'arn', userId: 'u', id: '111122223333' }),
      'aws:index/getAvailabilityZones:getAvailabilityZones': () => ({ names: ['us-east-1a', 'us-east-1b', 'us-east-1d', 'us-east-1f'], zoneIds: [], id: 'us-east-1' }),
      'aws:ssm/getParameter:getParameter': (i) => ({ name: i['name'], value: 'ami-0ecs2023', type: 'String' }),
    },
  });
  pulumi.runtime.setAllConfig(config);
});

describe('regional program under setMocks', () => {
  let outputs: Record<string, unknown> = {};
  it('declares what docs/design.md §8 lists for a regional stack', async () => {
    const { regionalProgram } = await import('./index.js');
    outputs = await resolveAll(regionalProgram());
    await settled(declared);
    const n = countByType(declared);
    expect({
      subnets: n['aws:ec2/subnet:Subnet'], natGateways: n['aws:ec2/natGateway:NatGateway'] ?? 0, peerings: n['aws:ec2/vpcPeeringConnection:VpcPeeringConnection'],
      accepters: n['aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter'], keys: n['aws:kms/key:Key'], groups: n['aws:ec2/securityGroup:SecurityGroup'],
      asgs: n['aws:autoscaling/group:Group'], eips: n['aws:ec2/eip:Eip'], ecsClusters: n['aws:ecs/cluster:Cluster'], services: n['aws:ecs/service:Service'],
      dlm: n['aws:dlm/lifecyclePolicy:LifecyclePolicy'], lambdas: n['aws:lambda/function:Function'],
    }).toEqual({ subnets: 5, natGateways: 0, peerings: 1, accepters: 1, keys: 3, groups: 2, asgs: 1, eips: 1, ecsClusters: 1, services: 1, dlm: 1, lambdas: 2 });
    expect(outputs).toMatchObject({
      region: 'us-east-1', cidr: '10.2.0.0/16', ecsClusterName: 'prod-traefik-us-east-1', traefikFqdn: 'traefik-us-east-1.example.com',
      artifactUri: 's3://berth-artifacts-0001/berth/build-42.tar.gz', privateSubnetAzs: ['us-east-1a', 'us-east-1b', 'us-east-1d'],
    });
  });
  it('peers with the earlier region through its provider and routes both ways', () => {
    const peering = ofType(declared, 'aws:ec2/vpcPeeringConnection:VpcPeeringConnection')[0]!;
    expect(peering.inputs).toMatchObject({ vpcId: 'vpc-eu', peerVpcId: 'us-east-1-vpc-id', peerRegion: 'us-east-1' });
    const routes = ofType(declared, 'aws:ec2/route:Route').filter((r) => r.inputs['vpcPeeringConnectionId']).map((r) => `${String(r.inputs['routeTableId'])}>${String(r.inputs['destinationCidrBlock'])}`).sort();
    expect(routes).toEqual(['rtb-eu-private>10.2.0.0/16', 'rtb-eu-public>10.2.0.0/16', 'us-east-1-private-id>10.1.0.0/16', 'us-east-1-public-id>10.1.0.0/16']);
    expect(ofType(declared, 'pulumi:providers:aws').map((p) => p.inputs['region'])).toEqual(['eu-west-1']);
  });
  it('runs the certificate renewer and the daily ECS agent update, whose role can update agents only in this region and environment', () => {
    expect(ofType(declared, 'aws:lambda/function:Function').map((f) => f.inputs['handler']).sort()).toEqual(['ecs-agent-update.handler', 'traefik/renewer/handler.handler']);
    const policy = JSON.parse(ofType(declared, 'aws:iam/rolePolicy:RolePolicy').find((p) => p.name === 'ecs-agent-update-us-east-1-policy')!.inputs['policy'] as string) as { Statement: Array<{ Action: string[]; Resource: string }> };
    const env = 'prod';
    expect(policy.Statement.find((s) => s.Action.includes('ecs:UpdateContainerAgent'))!.Resource).toEqual([
      `arn:aws:ecs:us-east-1:111122223333:container-instance/${env}-unit-*/*`, `arn:aws:ecs:us-east-1:111122223333:container-instance/${env}-traefik-*/*`,
    ]);
    const job = ofType(declared, 'aws:lambda/function:Function').find((f) => f.inputs['handler'] === 'ecs-agent-update.handler')!;
    expect(job.inputs['environment']).toEqual({ variables: { BERTH_ECS_CLUSTER_PREFIXES: `${env}-unit-,${env}-traefik-` } });
  });
  it('opens only 8090, 8860 and 4000 to the internet', () => {
    const open = openToWorld(declared);
    expect(open.map((o) => Number(o.split(':')[1]!.split('-')[0])).sort()).toEqual(PUBLIC_PORTS);
    expect(open.every((o) => /^tcp:(\d+)-\1 /.test(o))).toBe(true);
  });
  it('conditions every EBS-mutating IAM action on berth tags', () => {
    expect(unconditionedEbsMutations(declared)).toEqual([]);
  });
  it('renders the Traefik host userdata completely, and it passes shellcheck', () => {
    expect(ofType(declared, 'aws:ec2/launchTemplate:LaunchTemplate')).toHaveLength(1);
    expect(userdataProblems(declared)).toEqual([]);
    const parts = userdataParts(ofType(declared, 'aws:ec2/launchTemplate:LaunchTemplate')[0]!.inputs['userData'] as string);
    // berth reads the certificate from the global bucket, in the global stack's region.
    expect(parts[1]!.body).toContain("CERT_REGION='eu-west-1'");
    expect(parts[1]!.body).toContain("CERT_BUCKET='berth-environment-0001'");
  });
  it('pins the Traefik service to the Traefik host and routes the cluster of this region', () => {
    const svc = ofType(declared, 'aws:ecs/service:Service')[0]!;
    expect(svc.inputs['placementConstraints']).toEqual([{ type: 'memberOf', expression: 'attribute:berth.host == traefik-us-east-1' }]);
    const td = ofType(declared, 'aws:ecs/taskDefinition:TaskDefinition')[0]!;
    expect(td.inputs['containerDefinitions']).toContain('111122223333.dkr.ecr.eu-west-1.amazonaws.com/berth/traefik:build-42');
  });
  it('refuses a stack whose region is not designated, or an overlapping CIDR map, before declaring anything', async () => {
    const { regionalProgram } = await import('./index.js');
    const before = declared.length;
    pulumi.runtime.setAllConfig({ ...config, 'aws:region': 'sa-east-1' });
    expect(() => regionalProgram()).toThrow(/sa-east-1 is not in berth:regions/);
    pulumi.runtime.setAllConfig({ ...config, 'berth:cidrs': JSON.stringify({ ...cidrs, 'ap-southeast-2': '10.1.128.0/17' }) });
    expect(() => regionalProgram()).toThrow(/overlaps/);
    expect(declared.length).toBe(before);
    pulumi.runtime.setAllConfig(config);
  });
});
