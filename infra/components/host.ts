import * as pulumi from '@pulumi/pulumi';
import { hostInstanceTags } from '../../lib/node-contract.js';
import { CONFIG_DEFAULTS } from '../../agent/config.js';
import { CLOUDWATCH_PROMETHEUS_CONFIG_PATH, multipartUserdata, renderBootstrap, renderHostPrep } from '../../userdata/render.js';
import { ebsKeyStatements, ec2ScheduleStatements, hostEbsPolicy, type PolicyStatement } from './host-policy.js';
import { ecsAmiId, singleInstanceGroup } from './single-instance-group.js';
import { DEFAULT_HOST_INSTANCE_TYPE } from './host-defaults.js';
import { cloudWatchAgentConfig, cloudWatchAgentStatement } from './monitoring-specs.js';

/**
 * host-prep.sh of a host whose berth publishes its metrics into `cluster`'s metrics log group
 * (monitoring-specs.ts): berth on the host listens on BERTH_HEALTH_ADDR's default.
 */
export function hostPrepPart(a: { logGroup: string; environment: string; cluster: string; hostId: string }) {
  const cloudWatch = cloudWatchAgentConfig({
    environment: a.environment, cluster: a.cluster, hostId: a.hostId, healthAddr: CONFIG_DEFAULTS.BERTH_HEALTH_ADDR, prometheusConfigPath: CLOUDWATCH_PROMETHEUS_CONFIG_PATH,
  });
  return { filename: '10-host-prep.sh', content: renderHostPrep({ LOG_GROUP: a.logGroup, cloudWatch }) };
}

export interface HostArgs {
  /** The environment (tag berth:environment, `BERTH_ENVIRONMENT`): berth touches only its volumes. */
  readonly environment: pulumi.Input<string>;
  /** berth cluster (tag berth:cluster). */
  readonly cluster: string;
  /** Logical host id (tag berth:host, ECS attribute berth.host); stable across instance replacement. */
  readonly hostId: string;
  readonly region: string;
  readonly accountId: pulumi.Input<string>;
  /** The ECS cluster the host joins (its berth cluster's). */
  readonly ecsClusterName: pulumi.Input<string>;
  /** One private subnet: the host and its volumes stay in that subnet's AZ. */
  readonly subnetId: pulumi.Input<string>;
  readonly securityGroupId: pulumi.Input<string>;
  /** s3:// URI of the berth release tarball. */
  readonly artifactUri: pulumi.Input<string>;
  readonly logGroupName: pulumi.Input<string>;
  /** Key of the node volumes; berth attaches (and may create) volumes encrypted with it. */
  readonly ebsKmsKeyArn?: pulumi.Input<string>;
  /** Key of the artifacts and environment buckets. */
  readonly bucketKmsKeyArn?: pulumi.Input<string>;
  /**
   * The environment bucket and its Region: berth shares the account's EC2 schedule there (docs/design.md §6,
   * "Sharing the account"). Undefined (an older regional stack): the host's berth paces its EC2 calls alone.
   */
  readonly scheduleBucket?: pulumi.Input<{ bucket: string; region: string } | undefined>;
  readonly instanceType?: string;
  readonly swapMiB?: number;
  readonly amiId?: pulumi.Input<string>;
}

/** The IAM policy of a host: berth's tag-conditioned EBS rights, its release, and the keys it needs. */
export function hostInstancePolicy(a: {
  region: string; accountId: string; environment: string; cluster: string; hostId: string; artifactUri: string; ebsKmsKeyArn?: string; bucketKmsKeyArn?: string;
  scheduleBucket?: { bucket: string; region: string } | undefined;
}) {
  const statements: PolicyStatement[] = [
    ...hostEbsPolicy({ region: a.region, accountId: a.accountId, environment: a.environment, cluster: a.cluster, hostId: a.hostId }).Statement,
    { Sid: 'ReadRelease', Effect: 'Allow', Action: ['s3:GetObject'], Resource: a.artifactUri.replace(/^s3:\/\//, 'arn:aws:s3:::') },
    cloudWatchAgentStatement({ region: a.region, accountId: a.accountId, environment: a.environment, cluster: a.cluster }),
  ];
  // EC2 uses the key on berth's behalf when it creates or attaches an encrypted volume.
  if (a.ebsKmsKeyArn) statements.push(...ebsKeyStatements(a.region, a.ebsKmsKeyArn));
  if (a.bucketKmsKeyArn) statements.push({ Sid: 'DecryptRelease', Effect: 'Allow', Action: ['kms:Decrypt'], Resource: a.bucketKmsKeyArn });
  // The account's EC2 schedule: this Region's object in the environment bucket, nothing else (docs/deploy.md).
  if (a.scheduleBucket) {
    statements.push(...ec2ScheduleStatements({
      bucket: a.scheduleBucket.bucket, bucketRegion: a.scheduleBucket.region, region: a.region, ...(a.bucketKmsKeyArn ? { kmsKeyArn: a.bucketKmsKeyArn } : {}),
    }));
  }
  return { Version: '2012-10-17' as const, Statement: statements };
}

/**
 * One berth host: an ASG of exactly one instance on the AL2023 ECS-optimized AMI in one
 * private subnet, tagged berth:cluster/berth:host/berth:environment at launch. Its userdata installs Node.js
 * and the CloudWatch agent, makes swap, then installs and starts berth before the ECS agent,
 * which registers with the unique attribute `berth.host = <hostId>` that node services are
 * pinned to.
 */
export class Host extends pulumi.ComponentResource {
  readonly groupName: pulumi.Output<string>;
  readonly hostId: string;

  constructor(name: string, args: HostArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:unit:Host', name, {}, opts);
    const swapMiB = args.swapMiB ?? 2048;
    if (!Number.isInteger(swapMiB) || swapMiB < 0) throw new Error(`Host ${args.hostId}: swapMiB must be a whole number ≥ 0, not ${swapMiB}`);
    const userData = pulumi.all([args.artifactUri, args.ecsClusterName, args.logGroupName, args.environment, args.scheduleBucket]).apply(([artifact, ecsCluster, logGroup, environment, schedule]) => multipartUserdata([
      hostPrepPart({ logGroup, environment, cluster: args.cluster, hostId: args.hostId }),
      {
        filename: '20-berth.sh',
        content: renderBootstrap({
          ENVIRONMENT: environment, CLUSTER: args.cluster, HOST_ID: args.hostId, REGION: args.region, ARTIFACT_URI: artifact, SWAP_MIB: swapMiB, ECS_CLUSTER: ecsCluster,
          ...(schedule ? { SCHEDULE_BUCKET: schedule.bucket, SCHEDULE_REGION: schedule.region } : {}),
        }),
      },
    ]));
    const policy = pulumi.all([args.accountId, args.artifactUri, args.ebsKmsKeyArn, args.bucketKmsKeyArn, args.environment, args.scheduleBucket]).apply(([accountId, artifactUri, ebsKmsKeyArn, bucketKmsKeyArn, environment, scheduleBucket]) =>
      JSON.stringify(hostInstancePolicy({ region: args.region, accountId, environment, cluster: args.cluster, hostId: args.hostId, artifactUri, ebsKmsKeyArn, bucketKmsKeyArn, scheduleBucket })));
    const { group } = singleInstanceGroup(name, {
      amiId: args.amiId ?? ecsAmiId(this),
      instanceType: args.instanceType ?? DEFAULT_HOST_INSTANCE_TYPE,
      subnetId: args.subnetId,
      securityGroupIds: [args.securityGroupId],
      userData,
      tags: hostInstanceTags({ environment: args.environment, cluster: args.cluster, host: args.hostId }),
      policy,
      publicIp: false,
      // A new AMI or release takes effect when the host is next replaced; operators roll hosts one at a time.
      refreshOnChange: false,
    }, this);
    this.groupName = group.name;
    this.hostId = args.hostId;
    this.registerOutputs({ groupName: this.groupName, hostId: this.hostId });
  }
}
