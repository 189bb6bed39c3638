import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { CertificateRenewer } from '../../components/certificate-renewer.js';
import { regionalCertificateProblems } from '../../constraints/published-names.js';
import { validateCidrMap, type CidrMap } from '../../components/cidr-map.js';
import { EcsCluster } from '../../components/ecs-cluster.js';
import { KmsKeys } from '../../components/kms-keys.js';
import { PeeringMesh, type RegionNetwork } from '../../components/peering-mesh.js';
import { agentUpdatePolicy, ScheduledJob } from '../../components/scheduled-job.js';
import { SecurityGroups } from '../../components/security-groups.js';
import { SnapshotPolicy, type SnapshotPolicyArgs } from '../../components/snapshot-policy.js';
import { Monitoring, traefikAlarms } from '../../components/monitoring.js';
import { TraefikHost, traefikHostFqdn, traefikHostId } from '../../components/traefik-host.js';
import { environmentEcsClusterPrefixes, traefikEcsClusterName } from '../../components/naming.js';
import { Vpc, VPC_LAYOUTS } from '../../components/vpc.js';
import { accountId, availabilityZones, config, configKey, stackOutput, stackRegion, stringList } from '../shared.js';

export interface RenewerConfig {
  readonly email: string;
  /** Directory staged by traefik/renewer/stage.sh. */
  readonly codePath: string;
  readonly directoryUrl?: string;
}

/** Name of the regional stack of a region, as other stacks reference it. */
export const regionalStackName = (prefix: string, region: string) => `${prefix}${region}`;

/**
 * One regional stack per designated region. Config:
 * - `berth:globalStack` — the global stack (`org/berth-global/prod`)
 * - `berth:regions` — designated regions in deployment order; this stack peers with those before it
 * - `berth:cidrs` — region→CIDR map (validated: every region, no overlap, inside 10.0.0.0/8)
 * - `berth:regionalStackPrefix` — how the other regional stacks are named (default `regional-`)
 * - `berth:zone`, `berth:zoneId` — Route 53 zone of `traefik-<region>.<zone>` and the cluster names
 * - `berth:release` — berth release in the artifacts bucket (`src-<hash>`, the source tag both builds use), also the Traefik image tag
 *   unless `berth:traefikTag` is set
 * - `berth:certDomains` — names the Traefik certificate covers
 * - `berth:renewer` — `{email, codePath}`: deploy the ACME renewer in this stack (set it on one region only)
 * - `berth:snapshots` — `{retain, intervalHours, time}` for the DLM policy
 * - `berth:operations` — `{codePath}` of infra/lambdas/stage.sh: the daily ECS agent update of this region
 * - `berth:traefikInstanceType`, `berth:availabilityZones`
 */
export function regionalProgram() {
  const c = config();
  const region = stackRegion();
  const regions = stringList('regions', true);
  const cidrs = c.requireObject<CidrMap>('cidrs');
  validateCidrMap(cidrs, regions);
  const position = regions.indexOf(region);
  if (position < 0) throw new Error(`this stack's region ${region} is not in ${configKey('regions')} (${regions.join(', ')})`);
  const zone = c.require('zone');
  const zoneId = c.require('zoneId');
  const release = c.require('release');
  const certDomains = stringList('certDomains', true);
  const prefix = c.get('regionalStackPrefix') ?? 'regional-';
  // Every router has tls=true with the one certificate: refuse names it would not cover before anything is declared.
  const uncovered = regionalCertificateProblems(zone, [traefikHostFqdn(traefikHostId(region), zone)], certDomains);
  if (uncovered.length > 0) throw new Error(`${configKey('certDomains')}: ${uncovered.join('; ')}`);

  const global = new pulumi.StackReference(c.require('globalStack'));
  const artifactsBucket = stackOutput<string>(global, 'artifactsBucket');
  const environmentBucket = stackOutput<string>(global, 'environmentBucket');
  const bucketKeyArn = stackOutput<string>(global, 'bucketKeyArn');
  // Names carry the environment: a second environment can share the account and region.
  const environment = stackOutput<string>(global, 'environment');
  const artifactUri = pulumi.interpolate`s3://${artifactsBucket}/berth/${release}.tar.gz`;

  const vpc = new Vpc(region, { cidr: cidrs[region]!, layout: VPC_LAYOUTS.regional, availabilityZones: availabilityZones(), region });
  const routeTableIds = [vpc.publicRouteTableId, vpc.privateRouteTableId];

  // Peer with every region deployed before this one; they peer with us from their own stacks never.
  const earlier = regions.slice(0, position);
  let mesh: PeeringMesh | undefined;
  if (earlier.length > 0) {
    const networks: Record<string, RegionNetwork> = { [region]: { vpcId: vpc.vpcId, cidr: cidrs[region]!, routeTableIds } };
    for (const other of earlier) {
      const ref = new pulumi.StackReference(regionalStackName(prefix, other));
      const tables = stackOutput<string[]>(ref, 'routeTableIds');
      networks[other] = {
        vpcId: stackOutput<string>(ref, 'vpcId'),
        cidr: cidrs[other]!,
        routeTableIds: [0, 1].map((i) => tables.apply((t) => t[i]!)),
        provider: new aws.Provider(`aws-${other}`, { region: other as aws.Region }),
      };
    }
    mesh = new PeeringMesh('mesh', { networks, hub: region });
  }

  const keys = new KmsKeys(region, { aliasPrefix: environment });
  const groups = new SecurityGroups(region, { vpcId: vpc.vpcId, vpcCidr: cidrs[region]! });
  const ecsClusterName = environment.apply((env) => traefikEcsClusterName(env, region));
  const hostId = traefikHostId(region);
  const traefikTag = c.get('traefikTag') ?? release;
  const ecs = new EcsCluster(region, {
    environment, region, clusterName: ecsClusterName, traefikHostId: hostId,
    traefikImage: pulumi.interpolate`${stackOutput<string>(global, 'traefikRepositoryUrl')}:${traefikTag}`,
  });
  const traefik = new TraefikHost(`traefik-${region}`, {
    environment, region, accountId: accountId(), vpcCidr: cidrs[region]!, publicSubnetId: vpc.publicSubnetIds[0]!,
    securityGroupId: groups.edgeGroupId, privateRouteTableIds: [vpc.privateRouteTableId], ecsClusterName: ecs.clusterName,
    zoneId, zoneName: zone, logGroupName: pulumi.interpolate`/${environment}/hosts/${hostId}`, artifactUri, certBucket: environmentBucket, certBucketRegion: stackOutput<string>(global, 'region'), certDomains, bucketKmsKeyArn: bucketKeyArn,
    ...(c.get('traefikInstanceType') ? { instanceType: c.require('traefikInstanceType') } : {}),
  });
  // The certificate Traefik serves: an alarm before it expires (docs/operations.md, "Watch the fleet").
  new Monitoring(`traefik-${region}-monitoring`, { environment, cluster: hostId, region, alarms: traefikAlarms(region), dashboard: false });
  new SnapshotPolicy(region, { ...c.getObject<Omit<SnapshotPolicyArgs, 'environment'>>('snapshots'), environment });

  const renewerConfig = c.getObject<RenewerConfig>('renewer');
  let renewer: CertificateRenewer | undefined;
  if (renewerConfig) {
    renewer = new CertificateRenewer(`renewer-${region}`, {
      bucketName: environmentBucket, bucketRegion: stackOutput<string>(global, 'region'), kmsKeyArn: bucketKeyArn, hostedZoneId: zoneId, domains: certDomains, email: renewerConfig.email,
      code: new pulumi.asset.FileArchive(renewerConfig.codePath),
      ...(renewerConfig.directoryUrl ? { directoryUrl: renewerConfig.directoryUrl } : {}),
    });
  }

  const operations = c.getObject<{ codePath: string }>('operations');
  if (operations) {
    new ScheduledJob(`ecs-agent-update-${region}`, {
      description: `berth: daily ECS agent update in ${region}`, code: new pulumi.asset.FileArchive(operations.codePath), handler: 'ecs-agent-update.handler',
      policy: pulumi.all([accountId(), environment]).apply(([account, env]) => JSON.stringify(agentUpdatePolicy(region, account, env))),
      environment: { BERTH_ECS_CLUSTER_PREFIXES: environment.apply((env) => Object.values(environmentEcsClusterPrefixes(env)).join(',')) },
    });
  }

  return {
    environment,
    region,
    zone,
    zoneId,
    vpcId: vpc.vpcId,
    cidr: vpc.cidr,
    publicSubnetIds: pulumi.all(vpc.publicSubnetIds),
    privateSubnetIds: pulumi.all(vpc.privateSubnetIds),
    privateSubnetAzs: pulumi.all(vpc.privateSubnetAzs),
    routeTableIds: pulumi.all(routeTableIds),
    peeringConnectionIds: pulumi.all(mesh?.connectionIds ?? []),
    /** The berth hosts' group (unit stacks put their hosts in it). */
    securityGroupId: groups.hostGroupId,
    edgeSecurityGroupId: groups.edgeGroupId,
    ecsClusterName: ecs.clusterName,
    ebsKeyArn: keys.keyArns.ebs!,
    ssmKeyArn: keys.keyArns.ssm!,
    secretsKeyArn: keys.keyArns.secrets!,
    bucketKeyArn,
    artifactUri,
    /** The environment bucket and its Region: unit stacks' hosts share the account's EC2 schedule there (docs/deploy.md). */
    environmentBucket,
    environmentBucketRegion: stackOutput<string>(global, 'region'),
    traefikIp: traefik.publicIp,
    traefikFqdn: traefik.fqdn,
    /** The names the Traefik certificate covers: unit stacks check the names they publish against them. */
    certDomains,
    renewerFunctionArn: renewer?.functionArn,
  };
}
