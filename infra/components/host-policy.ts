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
  readonly cluster: string;
  /**
   * The host's logical id (its `berth:host` tag value). When given, berth on this host may
   * delete volumes tagged to this host (Remove with `onRemove=delete`); without it no volume
   * can be deleted from the host, and such a Remove fails with EC2's access error.
   */
  readonly hostId?: string;
}

export function hostEbsPolicy(args: HostPolicyArgs): { Version: '2012-10-17'; Statement: PolicyStatement[] } {
  const volumes = `arn:aws:ec2:${args.region}:${args.accountId}:volume/*`;
  const instances = `arn:aws:ec2:${args.region}:${args.accountId}:instance/*`;
  const managed = { 'aws:ResourceTag/berth:managed-by': 'berth', 'aws:ResourceTag/berth:cluster': args.cluster };
  return {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'DescribeIsReadOnly', Effect: 'Allow', Action: ['ec2:DescribeVolumes', 'ec2:DescribeInstances', 'ec2:DescribeTags'], Resource: '*' },
      {
        Sid: 'AttachManagedVolumes', Effect: 'Allow',
        Action: ['ec2:AttachVolume', 'ec2:DetachVolume', 'ec2:ModifyVolume'],
        Resource: volumes,
        Condition: { StringEquals: managed },
      },
      {
        Sid: 'AttachToOwnClusterInstances', Effect: 'Allow',
        Action: ['ec2:AttachVolume', 'ec2:DetachVolume'],
        Resource: instances,
        Condition: { StringEquals: { 'aws:ResourceTag/berth:cluster': args.cluster } },
      },
      {
        Sid: 'CreateOnlyTaggedVolumes', Effect: 'Allow', Action: ['ec2:CreateVolume'], Resource: volumes,
        Condition: { StringEquals: { 'aws:RequestTag/berth:managed-by': 'berth', 'aws:RequestTag/berth:cluster': args.cluster } },
      },
      {
        Sid: 'TagOnlyManagedOrAtCreate', Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: [volumes, instances],
        Condition: { StringEquals: { 'aws:ResourceTag/berth:cluster': args.cluster } },
      },
      {
        Sid: 'UntagOnlyBerthKeysOfManaged', Effect: 'Allow', Action: ['ec2:DeleteTags'], Resource: [volumes, instances],
        Condition: {
          StringEquals: { 'aws:ResourceTag/berth:cluster': args.cluster },
          'ForAllValues:StringLike': { 'aws:TagKeys': ['berth:*'] },
        },
      },
      ...(args.hostId
        ? [{
            Sid: 'DeleteOnlyVolumesOfThisHost', Effect: 'Allow' as const, Action: ['ec2:DeleteVolume'], Resource: volumes,
            Condition: { StringEquals: { ...managed, 'aws:ResourceTag/berth:host': args.hostId } },
          }]
        : []),
      {
        Sid: 'TagAtCreate', Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: volumes,
        Condition: { StringEquals: { 'ec2:CreateAction': 'CreateVolume' } },
      },
    ],
  };
}
