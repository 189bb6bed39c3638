import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { roleNamePrefix } from './naming.js';

/** SSM public parameter naming the current AL2023 ECS-optimized AMI (x86_64). */
export const ECS_AL2023_AMI_PARAMETER = '/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id';

/** The AMI id the parameter names now; resolved at deploy time, so a new AMI is a visible change in a preview. */
export function ecsAmiId(parent: pulumi.Resource, parameter = ECS_AL2023_AMI_PARAMETER): pulumi.Output<string> {
  return aws.ssm.getParameterOutput({ name: parameter }, { parent }).value;
}

/** Managed policies every berth instance gets: the ECS agent, SSM Session Manager (no SSH), the CloudWatch agent. */
export const INSTANCE_MANAGED_POLICIES = [
  'arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role',
  'arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore',
  'arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy',
] as const;

export interface SingleInstanceGroupArgs {
  readonly amiId: pulumi.Input<string>;
  readonly instanceType: string;
  /** One subnet: the instance always comes back in the same AZ (EBS volumes are AZ-bound). */
  readonly subnetId: pulumi.Input<string>;
  readonly securityGroupIds: readonly pulumi.Input<string>[];
  /** Userdata as text; base64-encoded here. */
  readonly userData: pulumi.Input<string>;
  /** Tags on the group, propagated to each instance it launches. */
  readonly tags: Readonly<Record<string, pulumi.Input<string>>>;
  /**
   * Tags of the root volume and network interface. Not the instance's berth:host/berth:cluster:
   * a root volume carrying them would look like one of the host's berth volumes.
   */
  readonly attachedResourceTags?: Readonly<Record<string, string>>;
  /** The instance role's own policy (JSON). */
  readonly policy: pulumi.Input<string>;
  readonly publicIp: boolean;
  readonly rootVolumeGiB?: number;
  /**
   * Replace the instance (instance refresh) as soon as the launch template changes. Off for
   * berth hosts: a release or AMI change would otherwise replace every host of a cluster at once.
   */
  readonly refreshOnChange: boolean;
}

/**
 * An Auto Scaling group of exactly one instance (min = max = desired = 1) from a launch
 * template, with its role and instance profile. IMDSv2 only, hop limit 1 (containers
 * use task roles, never the instance's credentials), encrypted root volume.
 */
export function singleInstanceGroup(name: string, args: SingleInstanceGroupArgs, parent: pulumi.Resource) {
  const opts = { parent };
  const role = new aws.iam.Role(`${name}-role`, { namePrefix: roleNamePrefix(`${name}-role`), assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: 'ec2.amazonaws.com' }) }, opts);
  INSTANCE_MANAGED_POLICIES.forEach((arn, i) => new aws.iam.RolePolicyAttachment(`${name}-managed-${i}`, { role: role.name, policyArn: arn }, opts));
  new aws.iam.RolePolicy(`${name}-policy`, { role: role.id, policy: args.policy }, opts);
  const profile = new aws.iam.InstanceProfile(`${name}-profile`, { role: role.name }, opts);
  const template = new aws.ec2.LaunchTemplate(`${name}-lt`, {
    imageId: args.amiId,
    instanceType: args.instanceType,
    iamInstanceProfile: { arn: profile.arn },
    userData: pulumi.output(args.userData).apply((u) => Buffer.from(u, 'utf8').toString('base64')),
    networkInterfaces: [{ deviceIndex: 0, associatePublicIpAddress: String(args.publicIp), securityGroups: [...args.securityGroupIds], deleteOnTermination: 'true' }],
    metadataOptions: { httpEndpoint: 'enabled', httpTokens: 'required', httpPutResponseHopLimit: 1, instanceMetadataTags: 'disabled' },
    // A bootstrap that fails for good powers the instance off (userdata/bootstrap.sh); terminated
    // rather than stopped, the group replaces it at once (a stopped one waits for a health check).
    instanceInitiatedShutdownBehavior: 'terminate',
    blockDeviceMappings: [{ deviceName: '/dev/xvda', ebs: { volumeSize: args.rootVolumeGiB ?? 30, volumeType: 'gp3', encrypted: 'true', deleteOnTermination: 'true' } }],
    tagSpecifications: ['volume', 'network-interface'].map((resourceType) => ({ resourceType, tags: { ...args.attachedResourceTags, Name: name } })),
    updateDefaultVersion: true,
  }, opts);
  const group = new aws.autoscaling.Group(`${name}-asg`, {
    minSize: 1, maxSize: 1, desiredCapacity: 1,
    vpcZoneIdentifiers: [args.subnetId],
    launchTemplate: { id: template.id, version: pulumi.interpolate`${template.latestVersion}` },
    healthCheckType: 'EC2', healthCheckGracePeriod: 300,
    ...(args.refreshOnChange ? { instanceRefresh: { strategy: 'Rolling', preferences: { minHealthyPercentage: 0 } } } : {}),
    tags: Object.entries({ ...args.tags, Name: name }).map(([key, value]) => ({ key, value, propagateAtLaunch: true })),
  }, opts);
  return { role, profile, template, group };
}
