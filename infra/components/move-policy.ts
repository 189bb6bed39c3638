import { MANAGED_BY, tagKeys } from '../../lib/node-contract.js';
import { ebsKeyStatements, type PolicyStatement } from './host-policy.js';

/**
 * The IAM statements a zone move needs (`berth move NAME --zone Z`, `--abort`, `--status`,
 * `--from-snapshot`; volume-plugin/backends/ebs/zone-move.ts; docs/design.md §6, "Zone moves"), and
 * nothing else. The unit stack declares them as a managed policy an operator's role is given
 * (docs/deploy.md, "Who may move a node"); the cluster API's role takes the same statements, for an
 * environment without a cluster (its zone change runs the same move code).
 *
 * Per action, from the Service Authorization Reference for Amazon EC2 ("Actions, resources, and
 * condition keys for Amazon EC2", read 2026-12-06) and the EBS User Guide's policy examples:
 * - DescribeVolumes, DescribeSnapshots: no resource-level permissions ('*').
 * - CreateSnapshot: authorized on the volume (resource tags: the cluster's volumes only) and on the
 *   new snapshot (`arn:aws:ec2:<region>::snapshot/*`, no account in the ARN; request tags: the move
 *   tags the snapshot with the cluster and environment at creation). Its TagSpecifications are a
 *   second authorization, ec2:CreateTags with `ec2:CreateAction = CreateSnapshot` ("Grant permission
 *   to tag resources during creation", EC2 User Guide).
 * - CreateVolume from a snapshot: authorized on the new volume (request tags) and on the snapshot
 *   (resource tags: the move's own snapshot, or a DLM snapshot, which carries its volume's tags);
 *   its tags as ec2:CreateTags with `ec2:CreateAction = CreateVolume`.
 * - CreateTags, DeleteTags on existing volumes: resource tags (the cluster's berth volumes) and
 *   `aws:TagKeys` (only the keys a move writes or removes).
 * - With a customer managed key, EC2 uses the key on the caller's behalf (CreateVolume of an
 *   encrypted copy): the KMS statements the host has (`ebsKeyStatements`).
 */
export interface MovePolicyArgs {
  readonly region: string;
  readonly accountId: string;
  /** `berth:environment`: always a condition. */
  readonly environment: string;
  /** `berth:cluster`: a condition when given (an operator's policy); without it, any cluster of the environment (the cluster API's role). */
  readonly cluster?: string;
  /** berth's tag prefix (`BERTH_TAG_PREFIX`); the node contract's default when omitted. */
  readonly tagPrefix?: string;
  /** The node volumes' KMS key (the regional stack's `ebsKeyArn`), when they are encrypted with one. */
  readonly ebsKmsKeyArn?: string;
  /** Prefix of every statement id (statement ids must be unique within a policy it is merged into). */
  readonly sidPrefix?: string;
}

/** Tag keys a move sets on existing volumes: the journal, the retirement, and the name and host on the new volume. */
export function moveTagKeys(prefix?: string): string[] {
  const k = tagKeys(prefix);
  return [k.move, k.retired, k.retiredVolume, k.retainUntil, k.volume, k.host];
}

/** Tag keys a move removes from volumes: the retired source's name, host, attachment and state; the journal on abort. */
export function moveUntagKeys(prefix?: string): string[] {
  const k = tagKeys(prefix);
  return [k.volume, k.host, k.attachedTo, k.state, k.move];
}

export function zoneMoveStatements(args: MovePolicyArgs): PolicyStatement[] {
  const k = tagKeys(args.tagPrefix);
  const sid = (s: string) => `${args.sidPrefix ?? 'BerthMove'}${s}`;
  const volumes = `arn:aws:ec2:${args.region}:${args.accountId}:volume/*`;
  // EC2 snapshot ARNs carry no account (arn:aws:ec2:<region>::snapshot/<id>).
  const snapshots = `arn:aws:ec2:${args.region}::snapshot/*`;
  const scope = (kind: 'ResourceTag' | 'RequestTag'): Record<string, string> => ({
    [`aws:${kind}/${k.environment}`]: args.environment,
    ...(args.cluster ? { [`aws:${kind}/${k.cluster}`]: args.cluster } : {}),
  });
  const managed = (kind: 'ResourceTag' | 'RequestTag') => ({ [`aws:${kind}/${k.managedBy}`]: MANAGED_BY, ...scope(kind) });
  return [
    { Sid: sid('Describe'), Effect: 'Allow', Action: ['ec2:DescribeVolumes', 'ec2:DescribeSnapshots'], Resource: '*' },
    { Sid: sid('SnapshotClusterVolumes'), Effect: 'Allow', Action: ['ec2:CreateSnapshot'], Resource: volumes, Condition: { StringEquals: managed('ResourceTag') } },
    { Sid: sid('SnapshotsTaggedForCluster'), Effect: 'Allow', Action: ['ec2:CreateSnapshot'], Resource: snapshots, Condition: { StringEquals: managed('RequestTag') } },
    {
      Sid: sid('RestoreTaggedVolumes'), Effect: 'Allow', Action: ['ec2:CreateVolume'], Resource: volumes,
      Condition: { StringEquals: managed('RequestTag') },
    },
    { Sid: sid('RestoreFromClusterSnapshots'), Effect: 'Allow', Action: ['ec2:CreateVolume'], Resource: snapshots, Condition: { StringEquals: scope('ResourceTag') } },
    {
      Sid: sid('TagAtCreate'), Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: [volumes, snapshots],
      Condition: { StringEquals: { ...scope('RequestTag'), 'ec2:CreateAction': ['CreateVolume', 'CreateSnapshot'] } },
    },
    {
      Sid: sid('JournalOnClusterVolumes'), Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: volumes,
      Condition: { StringEquals: managed('ResourceTag'), 'ForAllValues:StringEquals': { 'aws:TagKeys': moveTagKeys(args.tagPrefix) } },
    },
    {
      Sid: sid('UntagClusterVolumes'), Effect: 'Allow', Action: ['ec2:DeleteTags'], Resource: volumes,
      Condition: { StringEquals: managed('ResourceTag'), 'ForAllValues:StringEquals': { 'aws:TagKeys': moveUntagKeys(args.tagPrefix) } },
    },
    ...(args.ebsKmsKeyArn ? ebsKeyStatements(args.region, args.ebsKmsKeyArn, sid('')) : []),
  ];
}

/** The managed policy document of the operators who move a cluster's nodes (the unit stack's `movePolicyArn`). */
export function zoneMovePolicy(args: MovePolicyArgs): { Version: '2012-10-17'; Statement: PolicyStatement[] } {
  return { Version: '2012-10-17', Statement: zoneMoveStatements(args) };
}
