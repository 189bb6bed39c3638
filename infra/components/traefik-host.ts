import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { hostInstanceTags, tagKeys, TRAEFIK_ROLE } from '../../lib/node-contract.js';
import { multipartUserdata, renderBootstrap, renderTemplate } from '../../userdata/render.js';
import { hostPrepPart } from './host.js';
import { cloudWatchAgentStatement } from './monitoring-specs.js';
import { ec2ScheduleStatements, hostEbsPolicy } from './host-policy.js';
import { ecsAmiId, singleInstanceGroup } from './single-instance-group.js';
import { traefikHostId } from './traefik-names.js';

export interface TraefikHostArgs {
  /** The environment (the global stack's): berth on this host runs in it, and the host is tagged with it. */
  readonly environment: pulumi.Input<string>;
  readonly region: string;
  readonly accountId: pulumi.Input<string>;
  readonly vpcCidr: string;
  /** Public subnet the host lives in (one AZ; the EIP follows the instance, not the AZ). */
  readonly publicSubnetId: pulumi.Input<string>;
  readonly securityGroupId: pulumi.Input<string>;
  /** Route tables whose default route the host takes over at boot (NAT for the private subnets). */
  readonly privateRouteTableIds: readonly pulumi.Input<string>[];
  readonly ecsClusterName: pulumi.Input<string>;
  readonly zoneId: pulumi.Input<string>;
  readonly zoneName: string;
  /** s3:// URI of the berth release tarball; berth on this host refreshes Traefik's certificate. */
  readonly artifactUri: pulumi.Input<string>;
  readonly certBucket: pulumi.Input<string>;
  /** Region of the certificate bucket (the global stack's): berth's S3 client must use it. */
  readonly certBucketRegion: pulumi.Input<string>;
  readonly certDomains: readonly string[];
  /** Key the buckets are encrypted with (berth reads the release and the certificate through S3). */
  readonly bucketKmsKeyArn?: pulumi.Input<string>;
  readonly instanceType?: string;
  readonly amiId?: pulumi.Input<string>;
  /** Log group of the host (`/<environment>/hosts/traefik-<region>`). */
  readonly logGroupName: pulumi.Input<string>;
}

export { traefikHostId } from './traefik-names.js';

/** The Traefik host's own DNS name, `traefik-<region>.<zone>`. */
export const traefikHostFqdn = (hostId: string, zone: string) => `${hostId}.${zone}`;

/**
 * The region's Traefik/NAT host: an ASG of one instance in a public subnet. At boot its
 * userdata takes over the region's Elastic IP, turns the source/destination check off, NATs
 * the private subnets and points their default route at itself, then starts berth (the
 * certificate refresher) and the ECS agent with `berth.host = traefik-<region>`.
 * DNS: `traefik-<region>.<zone>` → the Elastic IP.
 */
export class TraefikHost extends pulumi.ComponentResource {
  readonly publicIp: pulumi.Output<string>;
  readonly allocationId: pulumi.Output<string>;
  readonly fqdn: string;
  readonly hostId: string;
  readonly groupName: pulumi.Output<string>;

  constructor(name: string, args: TraefikHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:edge:TraefikHost', name, {}, opts);
    if (args.privateRouteTableIds.length === 0) throw new Error('TraefikHost: privateRouteTableIds must name the private route tables it NATs for');
    if (args.certDomains.length === 0) throw new Error('TraefikHost: certDomains must name the certificate\'s domains');
    const hostId = traefikHostId(args.region);
    const keys = tagKeys();
    const role = { [keys.role]: TRAEFIK_ROLE };
    const eip = new aws.ec2.Eip(`${name}-eip`, { domain: 'vpc', tags: { ...role, Name: hostId } }, { parent: this, protect: true });
    new aws.cloudwatch.LogGroup(`${name}-logs`, { name: args.logGroupName, retentionInDays: 30 }, { parent: this });

    const userData = pulumi.all([eip.id, pulumi.all([...args.privateRouteTableIds]), args.certBucket, args.certBucketRegion, args.artifactUri, args.ecsClusterName, args.logGroupName, args.environment])
      .apply(([allocation, tables, bucket, bucketRegion, artifact, ecsCluster, logGroup, environment]) => multipartUserdata([
        // berth here (the certificate refresher) publishes berth_cert_expires_in_seconds for the certificate alarm.
        hostPrepPart({ logGroup, environment, cluster: hostId, hostId }),
        {
          filename: '20-traefik-host.sh',
          content: renderTemplate('traefik-host.sh', {
            REGION: args.region, ALLOCATION_ID: allocation, ROUTE_TABLE_IDS: tables.join(','), VPC_CIDR: args.vpcCidr,
            CERT_BUCKET: bucket, CERT_REGION: bucketRegion, CERT_DOMAINS: args.certDomains.join(','),
          }),
        },
        // berth here runs the EBS backend too: it shares the account's EC2 schedule in the same (environment) bucket.
        {
          filename: '30-berth.sh',
          content: renderBootstrap({
            ENVIRONMENT: environment, CLUSTER: hostId, HOST_ID: hostId, REGION: args.region, ARTIFACT_URI: artifact, SWAP_MIB: 0, ECS_CLUSTER: ecsCluster,
            SCHEDULE_BUCKET: bucket, SCHEDULE_REGION: bucketRegion,
          }),
        },
      ]));

    const policy = pulumi.all([args.accountId, eip.id, pulumi.all([...args.privateRouteTableIds]), args.certBucket, args.artifactUri, args.bucketKmsKeyArn, args.environment, args.certBucketRegion])
      .apply(([account, allocation, tables, bucket, artifact, bucketKey, environment, bucketRegion]) => {
        const ec2 = (type: string) => `arn:aws:ec2:${args.region}:${account}:${type}`;
        const traefikOnly = { StringEquals: { [`aws:ResourceTag/${keys.role}`]: TRAEFIK_ROLE } };
        // Instances carry the environment (network interfaces and the address are named by ARN or role only).
        const ownTraefikInstance = { StringEquals: { [`aws:ResourceTag/${keys.role}`]: TRAEFIK_ROLE, [`aws:ResourceTag/${keys.environment}`]: environment } };
        const berth = hostEbsPolicy({ region: args.region, accountId: account, environment, cluster: hostId, hostId });
        return JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            { Sid: 'TakeOverElasticIp', Effect: 'Allow', Action: ['ec2:AssociateAddress'], Resource: [ec2(`elastic-ip/${allocation}`), ec2('instance/*'), ec2('network-interface/*')], Condition: traefikOnly },
            { Sid: 'NatSourceDestCheck', Effect: 'Allow', Action: ['ec2:ModifyInstanceAttribute'], Resource: ec2('instance/*'), Condition: ownTraefikInstance },
            { Sid: 'PrivateDefaultRoute', Effect: 'Allow', Action: ['ec2:CreateRoute', 'ec2:ReplaceRoute'], Resource: tables.map((t) => ec2(`route-table/${t}`)) },
            { Sid: 'ReadRelease', Effect: 'Allow', Action: ['s3:GetObject'], Resource: artifact.replace(/^s3:\/\//, 'arn:aws:s3:::') },
            { Sid: 'ReadCertificate', Effect: 'Allow', Action: ['s3:GetObject'], Resource: `arn:aws:s3:::${bucket}/tls/*` },
            ...(bucketKey ? [{ Sid: 'DecryptBucketObjects', Effect: 'Allow', Action: ['kms:Decrypt'], Resource: bucketKey }] : []),
            ...berth.Statement,
            ...ec2ScheduleStatements({ bucket, bucketRegion, region: args.region, ...(bucketKey ? { kmsKeyArn: bucketKey } : {}) }),
            cloudWatchAgentStatement({ region: args.region, accountId: account, environment, cluster: hostId }),
          ],
        });
      });

    const { group } = singleInstanceGroup(name, {
      amiId: args.amiId ?? ecsAmiId(this),
      instanceType: args.instanceType ?? 't3.small',
      subnetId: args.publicSubnetId,
      securityGroupIds: [args.securityGroupId],
      userData,
      tags: { ...role, ...hostInstanceTags({ environment: args.environment, cluster: hostId, host: hostId }) },
      attachedResourceTags: role,
      policy,
      publicIp: true,
      refreshOnChange: true,
    }, this);

    this.fqdn = traefikHostFqdn(hostId, args.zoneName);
    new aws.route53.Record(`${name}-dns`, { zoneId: args.zoneId, name: this.fqdn, type: 'A', ttl: 60, records: [eip.publicIp] }, { parent: this });
    this.publicIp = eip.publicIp;
    this.allocationId = eip.id; // an EIP's id is its allocation id
    this.hostId = hostId;
    this.groupName = group.name;
    this.registerOutputs({ publicIp: this.publicIp, allocationId: this.allocationId, fqdn: this.fqdn, groupName: this.groupName });
  }
}
