import { DEFAULT_EC2_SCHEDULE_PREFIX, ec2ScheduleCheckKey, ec2ScheduleKey } from '../../lib/ec2-schedule-object.js';
import { MANAGED_BY, tagKeys } from '../../lib/node-contract.js';

/** IAM policy for a host's instance profile: berth may touch only volumes it manages, in its own cluster. */
export interface PolicyStatement {
  readonly Sid: string;
  readonly Effect: 'Allow';
  readonly Action: readonly string[];
  readonly Resource: string | readonly string[];
  readonly Condition?: Record<string, Record<string, string | readonly string[]>>;
}

export interface HostPolicyArgs {
  readonly region: string;
  readonly accountId: string;
  /** The environment (`berth:environment`): every condition that names the cluster names it too. */
  readonly environment: string;
  readonly cluster: string;
  /**
   * The host's logical id (its `berth:host` tag value). When given, berth on this host may
   * delete volumes tagged to this host (Remove with `onRemove=delete`); without it no volume
   * can be deleted from the host, and such a Remove fails with EC2's access error.
   */
  readonly hostId?: string;
  /** berth's tag prefix (`BERTH_TAG_PREFIX`); the node contract's default when omitted. */
  readonly tagPrefix?: string;
}

/**
 * Tag keys berth changes on existing volumes and instances (volume-plugin/backends/ebs):
 * the host claim, attachment and state on volumes, readiness on instances. Never the
 * cluster, managed-by or volume keys: those are set at CreateVolume only.
 */
export function mutableTagKeys(prefix?: string): string[] {
  const k = tagKeys(prefix);
  return [k.host, k.attachedTo, k.state, k.ready, k.readyCount];
}

/** Tag keys berth removes, and only from volumes tagged to its own host (Remove with onRemove=retain). */
export function removableTagKeys(prefix?: string): string[] {
  const k = tagKeys(prefix);
  return [k.host, k.attachedTo, k.state];
}

export function hostEbsPolicy(args: HostPolicyArgs): { Version: '2012-10-17'; Statement: PolicyStatement[] } {
  const k = tagKeys(args.tagPrefix);
  const mutable = mutableTagKeys(args.tagPrefix);
  const volumes = `arn:aws:ec2:${args.region}:${args.accountId}:volume/*`;
  // EC2 snapshot ARNs have no account (arn:aws:ec2:<region>::snapshot/<id>).
  const snapshots = `arn:aws:ec2:${args.region}::snapshot/*`;
  const instances = `arn:aws:ec2:${args.region}:${args.accountId}:instance/*`;
  // A cluster is known by its name within its environment: two environments may both have a cluster `shop`.
  const own = (kind: 'ResourceTag' | 'RequestTag'): Record<string, string> => ({
    [`aws:${kind}/${k.cluster}`]: args.cluster, [`aws:${kind}/${k.environment}`]: args.environment,
  });
  const managed = { [`aws:ResourceTag/${k.managedBy}`]: MANAGED_BY, ...own('ResourceTag') };
  const ownHost = (key: string): Record<string, string> => (args.hostId ? { [key]: args.hostId } : {});
  return {
    Version: '2012-10-17',
    Statement: [
      // DescribeVolumesModifications (berth resize) has no resource-level permissions (Service Authorization Reference): '*'.
      { Sid: 'DescribeIsReadOnly', Effect: 'Allow', Action: ['ec2:DescribeVolumes', 'ec2:DescribeInstances', 'ec2:DescribeVolumesModifications', 'ec2:DescribeInstanceTypes'], Resource: '*' },
      {
        Sid: 'AttachManagedVolumes', Effect: 'Allow',
        Action: ['ec2:AttachVolume', 'ec2:DetachVolume'],
        Resource: volumes,
        Condition: { StringEquals: managed },
      },
      {
        Sid: 'AttachToOwnClusterInstances', Effect: 'Allow',
        Action: ['ec2:AttachVolume', 'ec2:DetachVolume'],
        Resource: instances,
        Condition: { StringEquals: own('ResourceTag') },
      },
      {
        Sid: 'CreateOnlyTaggedVolumes', Effect: 'Allow', Action: ['ec2:CreateVolume'], Resource: volumes,
        Condition: { StringEquals: { [`aws:RequestTag/${k.managedBy}`]: MANAGED_BY, ...own('RequestTag'), ...ownHost(`aws:RequestTag/${k.host}`) } },
      },
      // Restore (`snapshotId`): from snapshots of this cluster's volumes only (DLM copies the volume's tags).
      {
        Sid: 'CreateFromOwnClusterSnapshots', Effect: 'Allow', Action: ['ec2:CreateVolume'], Resource: snapshots,
        Condition: { StringEquals: own('ResourceTag') },
      },
      {
        Sid: 'TagOnlyBerthStateOfClusterResources', Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: [volumes, instances],
        Condition: {
          StringEquals: own('ResourceTag'),
          // The host key may be set only to this host's id; without a host id it may not be set at all.
          ...(args.hostId ? { StringEqualsIfExists: { [`aws:RequestTag/${k.host}`]: args.hostId } } : {}),
          'ForAllValues:StringEquals': { 'aws:TagKeys': args.hostId ? mutable : mutable.filter((key) => key !== k.host) },
        },
      },
      ...(args.hostId
        ? [{
            Sid: 'UntagOnlyVolumesOfThisHost', Effect: 'Allow' as const, Action: ['ec2:DeleteTags'], Resource: volumes,
            Condition: {
              StringEquals: { ...own('ResourceTag'), [`aws:ResourceTag/${k.host}`]: args.hostId },
              'ForAllValues:StringEquals': { 'aws:TagKeys': removableTagKeys(args.tagPrefix) },
            },
          }]
        : []),
      ...(args.hostId
        ? [{
            Sid: 'DeleteOnlyVolumesOfThisHost', Effect: 'Allow' as const, Action: ['ec2:DeleteVolume'], Resource: volumes,
            Condition: { StringEquals: { ...managed, [`aws:ResourceTag/${k.host}`]: args.hostId } },
          }]
        : []),
      // berth resize (online grow): the cluster's managed volumes of this host only.
      {
        Sid: 'ModifyOnlyVolumesOfThisHost', Effect: 'Allow', Action: ['ec2:ModifyVolume'], Resource: volumes,
        Condition: { StringEquals: { ...managed, ...ownHost(`aws:ResourceTag/${k.host}`) } },
      },
      {
        Sid: 'TagAtCreate', Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: volumes,
        Condition: { StringEquals: { 'ec2:CreateAction': 'CreateVolume', ...own('RequestTag'), ...ownHost(`aws:RequestTag/${k.host}`) } },
      },
    ],
  };
}

/**
 * A customer managed EBS key used on berth's behalf: EC2 creates a grant when it attaches or creates an
 * encrypted volume, and decrypts and re-encrypts through the key (`kms:ViaService`). The host's policy and
 * the move policy (move-policy.ts) both take these.
 */
export function ebsKeyStatements(region: string, keyArn: string, sidPrefix = ''): PolicyStatement[] {
  return [
    { Sid: `${sidPrefix}EbsKeyGrants`, Effect: 'Allow', Action: ['kms:CreateGrant'], Resource: keyArn, Condition: { Bool: { 'kms:GrantIsForAWSResource': 'true' } } },
    {
      Sid: `${sidPrefix}EbsKeyThroughEc2`, Effect: 'Allow',
      Action: ['kms:Decrypt', 'kms:DescribeKey', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:ReEncryptFrom', 'kms:ReEncryptTo'],
      Resource: keyArn, Condition: { StringEquals: { 'kms:ViaService': `ec2.${region}.amazonaws.com` } },
    },
  ];
}

export interface Ec2ScheduleAccess {
  /** The environment bucket (`BERTH_EC2_SCHEDULE_BUCKET`): one per environment, so environments never share a schedule. */
  readonly bucket: string;
  /** The bucket's Region (the global stack's): where S3 calls KMS from. */
  readonly bucketRegion: string;
  /** The host's Region: its schedule is `<prefix><region>.json`, EC2's buckets being per account and Region. */
  readonly region: string;
  /** The bucket's SSE-KMS key, when it has one. */
  readonly kmsKeyArn?: string;
}

/**
 * The account's EC2 schedule (docs/design.md §6, "Sharing the account"; docs/deploy.md): a host may read and
 * write exactly its Region's schedule object and the store's self-check object, nothing else (no list,
 * no delete, no other prefix or Region). S3 asks KMS on the writer's behalf for SSE-KMS: GenerateDataKey on
 * PutObject, Decrypt on GetObject (S3 User Guide, "Using SSE-KMS"), through S3 (`kms:ViaService`) and for
 * this bucket's objects only: with an S3 Bucket Key (buckets.ts enables one with KMS) the encryption context
 * is the bucket's ARN, not the object's (S3 User Guide, "Configuring your bucket to use an S3 Bucket Key");
 * the object ARNs are allowed too, for a bucket without one.
 */
export function ec2ScheduleStatements(a: Ec2ScheduleAccess): PolicyStatement[] {
  const key = ec2ScheduleKey(DEFAULT_EC2_SCHEDULE_PREFIX, a.region);
  const bucketArn = `arn:aws:s3:::${a.bucket}`;
  const objects = [`${bucketArn}/${key}`, `${bucketArn}/${ec2ScheduleCheckKey(key)}`];
  return [
    { Sid: 'Ec2ScheduleReadWrite', Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: objects },
    ...(a.kmsKeyArn
      ? [{
          Sid: 'Ec2ScheduleKeyThroughS3', Effect: 'Allow' as const, Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: a.kmsKeyArn,
          Condition: { StringEquals: { 'kms:ViaService': `s3.${a.bucketRegion}.amazonaws.com`, 'kms:EncryptionContext:aws:s3:arn': [bucketArn, ...objects] } },
        }]
      : []),
  ];
}
