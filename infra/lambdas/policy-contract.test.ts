import { ECSClient, ListClustersCommand, ListContainerInstancesCommand, UpdateContainerAgentCommand } from '@aws-sdk/client-ecs';
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client, type DeleteObjectsCommandInput, type ListObjectsV2CommandInput } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { allows, type PolicyDocument, type RequestContext } from '../../test/aws/iam-policy.js';
import { environmentEcsClusterPrefixes } from '../components/naming.js';
import { agentUpdatePolicy, backupCleanupPolicy } from '../components/scheduled-job.js';
import { updateAgents } from './ecs-agent-update.js';
import { cleanupBackups } from './state-backup-cleanup.js';

/**
 * Each operations Lambda against the policy its ScheduledJob declares: the commands it sends
 * (recorded by aws-sdk-client-mock) as the IAM requests the service authorizes (Service
 * Authorization Reference: ECS ListContainerInstances on the cluster, UpdateContainerAgent on the
 * container instance; S3 ListObjectsV2 is s3:ListBucket on the bucket with s3:prefix,
 * DeleteObjects is s3:DeleteObject on each key). All allowed, nothing granted unused.
 */
interface IamRequest { action: string; resource: string; ctx?: RequestContext }

function contract(policy: PolicyDocument, requests: IamRequest[]) {
  const denied = requests.filter((r) => !allows([policy], r.action, r.resource, r.ctx)).map((r) => `${r.action} ${r.resource}`);
  const used = new Set(requests.map((r) => r.action));
  const unused = policy.Statement.flatMap((s) => [s.Action].flat()).filter((a) => !used.has(a));
  return { denied, unused };
}

describe('operations Lambdas against their declared policies', () => {
  it('the ECS agent update', async () => {
    const region = 'eu-west-1';
    const account = '111122223333';
    const cluster = `arn:aws:ecs:${region}:${account}:cluster/prod-unit-shop`;
    const instance = `arn:aws:ecs:${region}:${account}:container-instance/prod-unit-shop/0123456789abcdef`;
    const ecs = mockClient(ECSClient);
    ecs.on(ListClustersCommand).resolves({ clusterArns: [cluster] });
    ecs.on(ListContainerInstancesCommand).resolves({ containerInstanceArns: [instance] });
    ecs.on(UpdateContainerAgentCommand).resolves({});
    await updateAgents(new ECSClient({ region }), Object.values(environmentEcsClusterPrefixes('prod')));
    const requests: IamRequest[] = [
      ...ecs.commandCalls(ListClustersCommand).map(() => ({ action: 'ecs:ListClusters', resource: '*' })),
      ...ecs.commandCalls(ListContainerInstancesCommand).map((c) => ({ action: 'ecs:ListContainerInstances', resource: c.args[0].input.cluster! })),
      ...ecs.commandCalls(UpdateContainerAgentCommand).map((c) => ({ action: 'ecs:UpdateContainerAgent', resource: c.args[0].input.containerInstance! })),
    ];
    ecs.restore();
    expect(requests.length).toBe(3);
    expect(contract(agentUpdatePolicy(region, account, 'prod'), requests)).toEqual({ denied: [], unused: [] });
  });

  it('the state backup cleanup', async () => {
    const bucket = 'acme-pulumi-state';
    const prefix = '.pulumi/backups/';
    const old = new Date('2020-01-01T00:00:00Z');
    const s3 = mockClient(S3Client);
    s3.on(ListObjectsV2Command).callsFake((i: ListObjectsV2CommandInput) => ({
      Contents: Array.from({ length: 12 }, (_, n) => ({ Key: `${i.Prefix ?? ''}unit-shop/unit-shop.${n}.json`, LastModified: old })),
    }));
    s3.on(DeleteObjectsCommand).callsFake((i: DeleteObjectsCommandInput) => ({ Deleted: i.Delete!.Objects!.map((o) => ({ Key: o.Key })) }));
    await cleanupBackups(new S3Client({ region: 'eu-west-1' }), { bucket, prefix });
    const requests: IamRequest[] = [
      ...s3.commandCalls(ListObjectsV2Command).map((c) => ({ action: 's3:ListBucket', resource: `arn:aws:s3:::${c.args[0].input.Bucket!}`, ctx: { 's3:prefix': c.args[0].input.Prefix ?? '' } })),
      ...s3.commandCalls(DeleteObjectsCommand).flatMap((c) => c.args[0].input.Delete!.Objects!.map((o) => ({ action: 's3:DeleteObject', resource: `arn:aws:s3:::${c.args[0].input.Bucket!}/${o.Key!}` }))),
    ];
    s3.restore();
    expect(requests.some((r) => r.action === 's3:DeleteObject')).toBe(true);
    expect(contract(backupCleanupPolicy(bucket, prefix), requests)).toEqual({ denied: [], unused: [] });
  });
});
