import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { countByType, ofType, recordResources, settled, userdataParts, type Declared } from '../../test/pulumi-mocks.js';
import type { ClusterSpec } from '../../cluster-api/invariants.js';
import { openToWorld, resolveAll, unconditionedEbsMutations, userdataProblems } from '../../test/program-checks.js';
import { subnetIndexFor } from './index.js';

const spec: ClusterSpec = {
  name: 'shop', region: 'eu-west-1', hosts: ['shop-h1', 'shop-h2'],
  nodes: [{ name: 'db1', host: 'shop-h1' }, { name: 'db2', host: 'shop-h2', image: 'postgres:16', port: 5432, sizeGiB: 100 }, { name: 'db3', host: 'shop-h2' }],
};
const config = {
  'aws:region': 'eu-west-1',
  'berth:cluster': JSON.stringify(spec),
  'berth:regionalStack': 'acme/berth-regional/regional-eu-west-1',
  'berth:regions': JSON.stringify(['eu-west-1', 'us-east-1']),
  'berth:zone': 'example.com',
  'berth:nodeImage': 'app:1',
  'berth:nodePort': '8080',
};
const subnets = ['subnet-a', 'subnet-b', 'subnet-c'];
const azs = ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'];

let declared: Declared[] = [];
beforeAll(() => {
  declared = recordResources({
    stacks: {
      'acme/berth-regional/regional-eu-west-1': {
        environment: 'prod', zone: 'example.com', zoneId: 'Z0EXAMPLE', privateSubnetIds: subnets, privateSubnetAzs: azs,
        securityGroupId: 'sg-eu', artifactUri: 's3://berth-artifacts-0001/berth/build-42.tar.gz', ebsKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/ebs',
        bucketKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/buckets', traefikIp: '203.0.113.10',
        environmentBucket: 'berth-environment-0001', environmentBucketRegion: 'us-east-1',
      },
    },
    calls: {
      'aws:index/getCallerIdentity:getCallerIdentity': () => ({ accountId: '111122223333', arn: 'arn', userId: 'u', id: '111122223333' }),
      'aws:ssm/getParameter:getParameter': (i) => ({ name: i['name'], value: 'ami-0ecs2023', type: 'String' }),
    },
  });
  pulumi.runtime.setAllConfig(config);
});

describe('subnetIndexFor', () => {
  it('keeps a host in the same subnet whatever other hosts exist, and spreads hosts', () => {
    expect(subnetIndexFor('shop-h1', 3)).toBe(subnetIndexFor('shop-h1', 3));
    const spread = new Set(Array.from({ length: 30 }, (_, i) => subnetIndexFor(`h${i}`, 3)));
    expect(spread).toEqual(new Set([0, 1, 2]));
    expect(() => subnetIndexFor('h', 0)).toThrow(/no private subnets/);
  });
});

describe('unit program under setMocks', () => {
  let outputs: Record<string, unknown> = {};
  it('declares a Host per host, a Node per node and the cluster records', async () => {
    const { unitProgram } = await import('./index.js');
    outputs = await resolveAll(unitProgram());
    await settled(declared);
    const n = countByType(declared);
    expect({
      asgs: n['aws:autoscaling/group:Group'], templates: n['aws:ec2/launchTemplate:LaunchTemplate'], profiles: n['aws:iam/instanceProfile:InstanceProfile'],
      volumes: n['aws:ebs/volume:Volume'], taskDefinitions: n['aws:ecs/taskDefinition:TaskDefinition'], services: n['aws:ecs/service:Service'],
      records: n['aws:route53/record:Record'], ecsClusters: n['aws:ecs/cluster:Cluster'],
    }).toEqual({ asgs: 2, templates: 2, profiles: 2, volumes: 3, taskDefinitions: 3, services: 3, records: 4, ecsClusters: 1 });
    expect(outputs['fqdns']).toEqual(['shop.example.com', 'db1-shop.example.com', 'db2-shop.example.com', 'db3-shop.example.com']);
  });
  it('puts each node volume in the AZ of its host subnet', () => {
    for (const [host, nodes] of [['shop-h1', ['db1']], ['shop-h2', ['db2', 'db3']]] as const) {
      const i = subnetIndexFor(host, 3);
      expect(ofType(declared, 'aws:autoscaling/group:Group').find((g) => g.name === `${host}-asg`)!.inputs['vpcZoneIdentifiers']).toEqual([subnets[i]]);
      for (const node of nodes) {
        expect(ofType(declared, 'aws:ebs/volume:Volume').find((v) => v.name === `shop-${node}-data`)!.inputs, node).toMatchObject({ availabilityZone: azs[i], kmsKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/ebs' });
      }
    }
  });
  it('gives every node task the berth volume and pins it to its host', () => {
    for (const td of ofType(declared, 'aws:ecs/taskDefinition:TaskDefinition')) {
      expect(td.inputs['volumes'], td.name).toMatchObject([{ dockerVolumeConfiguration: { scope: 'shared', autoprovision: true, driver: 'berth' } }]);
    }
    const byNode = Object.fromEntries(ofType(declared, 'aws:ecs/service:Service').map((s) => [s.name, s.inputs]));
    expect(ofType(declared, 'aws:ecs/cluster:Cluster')[0]!.inputs['name']).toBe('prod-unit-shop');
    expect(byNode['shop-db1-svc']).toMatchObject({ cluster: 'arn:aws:mock:::shop-ecs', placementConstraints: [{ type: 'memberOf', expression: 'attribute:berth.host == shop-h1' }] });
    expect(byNode['shop-db3-svc']).toMatchObject({ placementConstraints: [{ type: 'memberOf', expression: 'attribute:berth.host == shop-h2' }] });
    const db2 = ofType(declared, 'aws:ecs/taskDefinition:TaskDefinition').find((t) => t.name === 'shop-db2-task')!;
    expect(JSON.parse(db2.inputs['containerDefinitions'] as string)).toMatchObject([{ image: 'postgres:16', portMappings: [{ containerPort: 5432 }] }]);
    expect(ofType(declared, 'aws:ebs/volume:Volume').find((v) => v.name === 'shop-db2-data')!.inputs['size']).toBe(100);
  });
  it('renders host userdata completely (shellcheck clean), opens nothing, and conditions EBS rights on tags', () => {
    expect(userdataProblems(declared)).toEqual([]);
    for (const lt of ofType(declared, 'aws:ec2/launchTemplate:LaunchTemplate')) {
      // Each host joins its cluster's own ECS cluster, where its berth.host attribute is unique.
      expect(userdataParts(lt.inputs['userData'] as string)[1]!.body, lt.name).toContain("ECS_CLUSTER_NAME='prod-unit-shop'");
    }
    expect(openToWorld(declared)).toEqual([]);
    expect(unconditionedEbsMutations(declared)).toEqual([]);
  });
  it('lets each host read and write its Region\'s EC2 schedule in the environment bucket, and tells berth where it is', () => {
    for (const host of spec.hosts) {
      const lt = ofType(declared, 'aws:ec2/launchTemplate:LaunchTemplate').find((t) => t.name === `${host}-lt`)!;
      const berthPart = userdataParts(lt.inputs['userData'] as string)[1]!.body;
      expect(berthPart, host).toContain("SCHEDULE_BUCKET='berth-environment-0001'");
      expect(berthPart, host).toContain("SCHEDULE_REGION='us-east-1'");
      const doc = JSON.parse(ofType(declared, 'aws:iam/rolePolicy:RolePolicy').find((p) => p.name === `${host}-policy`)!.inputs['policy'] as string) as { Statement: Array<{ Sid: string; Action: string[]; Resource: unknown; Condition?: unknown }> };
      // Besides the release it boots from: exactly the schedule's two objects, no list, no delete.
      const s3 = doc.Statement.filter((st) => st.Sid !== 'ReadRelease' && st.Action.some((a) => a.startsWith('s3:')));
      expect(s3, host).toEqual([{
        Sid: 'Ec2ScheduleReadWrite', Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'],
        Resource: ['arn:aws:s3:::berth-environment-0001/ec2-schedule/eu-west-1.json', 'arn:aws:s3:::berth-environment-0001/ec2-schedule/eu-west-1.json.check'],
      }]);
      expect(doc.Statement.find((st) => st.Sid === 'Ec2ScheduleKeyThroughS3'), host).toMatchObject({
        Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: 'arn:aws:kms:eu-west-1:111122223333:key/buckets',
        Condition: { StringEquals: { 'kms:ViaService': 's3.us-east-1.amazonaws.com' } },
      });
    }
  });
  it('declares the operators\' move policy of the cluster (berth move), scoped to its environment and cluster, and outputs its ARN', () => {
    const policies = ofType(declared, 'aws:iam/policy:Policy').filter((p) => p.name === 'shop-move');
    expect(policies).toHaveLength(1);
    expect(policies[0]!.inputs['name']).toBe('prod-shop-berth-move');
    const doc = JSON.parse(policies[0]!.inputs['policy'] as string) as { Statement: Array<{ Action: string[]; Condition?: object }> };
    expect(doc.Statement.flatMap((s) => s.Action)).toEqual(expect.arrayContaining(['ec2:CreateSnapshot', 'ec2:CreateVolume', 'ec2:CreateTags', 'ec2:DeleteTags', 'kms:CreateGrant']));
    for (const s of doc.Statement.filter((x) => x.Action.some((a) => /^ec2:(Create|Delete)/.test(a)))) {
      expect(JSON.stringify(s.Condition), JSON.stringify(s)).toMatch(/berth:environment":"prod"/);
      expect(JSON.stringify(s.Condition), JSON.stringify(s)).toMatch(/berth:cluster":"shop"/);
    }
    expect(outputs['movePolicyArn']).toBeDefined();
  });
  it('refuses a spec that breaks the cluster invariants or lacks a node image, before declaring anything', async () => {
    const { unitProgram } = await import('./index.js');
    const before = declared.length;
    pulumi.runtime.setAllConfig({ ...config, 'berth:cluster': JSON.stringify({ ...spec, hosts: ['shop-h1'] }) });
    expect(() => unitProgram()).toThrow(/unknown host shop-h2/);
    pulumi.runtime.setAllConfig({ ...config, 'berth:nodeImage': '' });
    expect(() => unitProgram()).toThrow(/node db1: no image/);
    pulumi.runtime.setAllConfig({ ...config, 'aws:region': 'us-east-1' });
    expect(() => unitProgram()).toThrow(/is in eu-west-1, but this stack deploys to us-east-1/);
    pulumi.runtime.setAllConfig({ ...config, 'berth:cluster': JSON.stringify({ ...spec, name: 'traefik-eu-west-1' }) });
    expect(() => unitProgram()).toThrow(/cluster name "traefik-eu-west-1" is reserved/);
    expect(declared.length).toBe(before);
    pulumi.runtime.setAllConfig(config);
  });
});
