import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { countByType, recordResources, settled, type Declared } from '../../test/pulumi-mocks.js';
import { openToWorld, policyStatements, resolveAll, unconditionedEbsMutations } from '../../test/program-checks.js';

let declared: Declared[] = [];
beforeAll(() => {
  declared = recordResources({
    calls: {
      'aws:index/getCallerIdentity:getCallerIdentity': () => ({ accountId: '111122223333', arn: 'arn:aws:iam::111122223333:root', userId: 'x', id: '111122223333' }),
      'aws:index/getAvailabilityZones:getAvailabilityZones': () => ({ names: ['eu-west-1b', 'eu-west-1a', 'eu-west-1c'], zoneIds: [], id: 'eu-west-1' }),
    },
  });
  pulumi.runtime.setAllConfig({
    'aws:region': 'eu-west-1', 'berth:cidr': '10.250.0.0/16',
    'berth:operations': JSON.stringify({ codePath: '.build/lambdas', stateBucket: 'acme-pulumi-state' }),
  });
});

describe('global program under setMocks', () => {
  it('declares what docs/design.md §8 lists for the global stack', async () => {
    const { globalProgram } = await import('./index.js');
    const outputs = await resolveAll(globalProgram());
    await settled(declared);
    const n = countByType(declared);
    expect({
      vpc: n['aws:ec2/vpc:Vpc'], subnets: n['aws:ec2/subnet:Subnet'], nat: n['aws:ec2/natGateway:NatGateway'], eip: n['aws:ec2/eip:Eip'],
      buckets: n['aws:s3/bucket:Bucket'], publicAccessBlocks: n['aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock'], versioning: n['aws:s3/bucketVersioning:BucketVersioning'],
      repositories: n['aws:ecr/repository:Repository'], builds: n['aws:codebuild/project:Project'], keys: n['aws:kms/key:Key'], jobs: n['aws:lambda/function:Function'],
    }).toEqual({ vpc: 1, subnets: 4, nat: 1, eip: 1, buckets: 2, publicAccessBlocks: 2, versioning: 2, repositories: 2, builds: 2, keys: 1, jobs: 1 });
    expect(outputs).toMatchObject({ region: 'eu-west-1', environmentBucket: expect.any(String) as string, artifactsBucket: expect.any(String) as string, bucketKeyArn: 'arn:aws:mock:::global-buckets' });
    expect((outputs['privateSubnetIds'] as string[])).toHaveLength(2);
  });
  it('subnets use the configured range and sorted zones, and nothing is open to the internet', () => {
    const cidrs = declared.filter((d) => d.type === 'aws:ec2/subnet:Subnet').map((s) => [s.inputs['cidrBlock'], s.inputs['availabilityZone']]);
    expect(cidrs).toEqual([['10.250.192.0/20', 'eu-west-1a'], ['10.250.208.0/20', 'eu-west-1b'], ['10.250.0.0/18', 'eu-west-1a'], ['10.250.64.0/18', 'eu-west-1b']]);
    expect(openToWorld(declared)).toEqual([]);
  });
  it('grants no EBS mutation, no wildcard action, and codebuild:StartBuild only on the two projects', () => {
    expect(unconditionedEbsMutations(declared)).toEqual([]);
    const st = policyStatements(declared);
    expect(st.flatMap((s) => [s.Action].flat()).filter((a) => a.includes('*'))).toEqual([]);
    expect(st.find((s) => [s.Action].flat().includes('codebuild:StartBuild'))!.Resource).toEqual(['arn:aws:mock:::berth-agent', 'arn:aws:mock:::berth-traefik']);
    // The buckets encrypt with the bucket key: the agent build encrypts its release, both decrypt the source.
    const keyUse = st.filter((s) => s.Sid === 'BucketKeyThroughS3').map((s) => [s.policy, s.Action, s.Resource]);
    expect(keyUse).toEqual([['berth-agent', ['kms:Decrypt', 'kms:GenerateDataKey'], 'arn:aws:mock:::global-buckets'], ['berth-traefik', ['kms:Decrypt'], 'arn:aws:mock:::global-buckets']]);
  });
  it('cleans old state backups daily, deleting only under the backup prefix of the state bucket', () => {
    const fn = declared.find((d) => d.type === 'aws:lambda/function:Function')!;
    // The state bucket's region defaults to the stack's: the function's S3 client signs for it.
    expect(fn.inputs).toMatchObject({ handler: 'state-backup-cleanup.handler', environment: { variables: { STATE_BUCKET: 'acme-pulumi-state', STATE_BUCKET_REGION: 'eu-west-1', BACKUP_PREFIX: '.pulumi/backups/' } } });
    const st = policyStatements(declared).filter((s) => s.policy === 'state-backup-cleanup-policy');
    expect(st.find((s) => s.Sid === 'DeleteBackups')!.Resource).toBe('arn:aws:s3:::acme-pulumi-state/.pulumi/backups/*');
  });
  it('refuses a build VPC range larger than /16 before declaring anything', async () => {
    const { globalProgram } = await import('./index.js');
    const before = declared.length;
    pulumi.runtime.setAllConfig({ 'aws:region': 'eu-west-1', 'berth:cidr': '10.0.0.0/12' });
    expect(() => globalProgram()).toThrow(/berth:cidr: the build VPC CIDR 10\.0\.0\.0\/12 is larger than \/16/);
    expect(declared.length).toBe(before);
  });
});
