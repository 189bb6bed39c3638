import * as pulumi from '@pulumi/pulumi';
import { BuildPipeline } from '../../components/build-pipeline.js';
import { assertVpcCidr } from '../../components/cidr-map.js';
import { Buckets } from '../../components/buckets.js';
import { KmsKeys } from '../../components/kms-keys.js';
import { Registries } from '../../components/registries.js';
import { backupCleanupPolicy, ScheduledJob } from '../../components/scheduled-job.js';
import { validateEnvironment } from '../../components/naming.js';
import { Vpc, VPC_LAYOUTS } from '../../components/vpc.js';
import { accountId, availabilityZones, config, stackRegion } from '../shared.js';

/**
 * The global stack (one per environment): the build VPC (2 public, 2 private, NAT gateway),
 * the bucket key, the environment and artifacts buckets, ECR for the agent and Traefik
 * images, and the pipeline that builds both. Config: `berth:environment` (default the stack's
 * name: it prefixes repositories, aliases and log groups), `berth:cidr` (default 10.0.0.0/16),
 * `berth:availabilityZones`, `berth:imagesKept` (default 30), `berth:operations`
 * (`{codePath, stateBucket, stateBucketRegion, backupPrefix}`: daily cleanup of old Pulumi state
 * backups in the self-managed state bucket, whose region defaults to the stack's).
 */
export function globalProgram() {
  const c = config();
  const region = stackRegion();
  const environment = validateEnvironment(c.get('environment') ?? pulumi.getStack());
  const cidr = c.get('cidr') ?? '10.0.0.0/16';
  assertVpcCidr(cidr, 'berth:cidr: the build VPC'); // before any resource, not at CreateVpc
  const keys = new KmsKeys('global', { purposes: ['buckets'], aliasPrefix: environment });
  const bucketKeyArn = keys.keyArns.buckets!;
  const vpc = new Vpc('global', { cidr, layout: VPC_LAYOUTS.global, availabilityZones: availabilityZones() });
  const buckets = new Buckets('berth', { kmsKeyArn: bucketKeyArn });
  const registries = new Registries('berth', { namespace: environment, keep: c.getNumber('imagesKept') ?? 30 });
  const build = new BuildPipeline('berth', {
    environment, region, accountId: accountId(), vpcId: vpc.vpcId, privateSubnetIds: vpc.privateSubnetIds,
    artifactsBucket: buckets.artifactsBucket, repositoryUrls: registries.repositoryUrls, repositoryArns: registries.repositoryArns,
    bucketKmsKeyArn: bucketKeyArn,
    ...(c.get('traefikBaseImage') ? { traefikBaseImage: c.require('traefikBaseImage') } : {}),
  });
  const operations = c.getObject<{ codePath: string; stateBucket?: string; stateBucketRegion?: string; backupPrefix?: string }>('operations');
  if (operations?.stateBucket) {
    const prefix = operations.backupPrefix ?? '.pulumi/backups/';
    new ScheduledJob('state-backup-cleanup', {
      description: 'berth: delete Pulumi state backups older than 30 days (newest 10 per stack kept)',
      code: new pulumi.asset.FileArchive(operations.codePath), handler: 'state-backup-cleanup.handler',
      policy: JSON.stringify(backupCleanupPolicy(operations.stateBucket, prefix)),
      environment: { STATE_BUCKET: operations.stateBucket, STATE_BUCKET_REGION: operations.stateBucketRegion ?? region, BACKUP_PREFIX: prefix },
    });
  }
  return {
    environment,
    region,
    vpcId: vpc.vpcId,
    privateSubnetIds: pulumi.all(vpc.privateSubnetIds),
    natPublicIp: vpc.natPublicIp,
    bucketKeyArn,
    environmentBucket: buckets.environmentBucket,
    artifactsBucket: buckets.artifactsBucket,
    agentRepositoryUrl: registries.repositoryUrls.agent,
    traefikRepositoryUrl: registries.repositoryUrls.traefik,
    buildProjects: pulumi.all(build.projectNames),
  };
}
