import { createHash } from 'node:crypto';
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { checkTransition, type ClusterSpec } from '../../cluster-api/invariants.js';
import { Cluster } from '../../components/cluster.js';
import { Host } from '../../components/host.js';
import { Node } from '../../components/node.js';
import { uncoveredNames } from '../../constraints/published-names.js';
import { accountId, config, stackOutput, stackRegion } from '../shared.js';
import { DEFAULT_HOST_INSTANCE_TYPE } from '../../components/host-defaults.js';
import { clusterAlarms, Monitoring } from '../../components/monitoring.js';
import { zoneMovePolicy } from '../../components/move-policy.js';
import { fitName } from '../../components/naming.js';

/**
 * Which private subnet (of `count`) a host lives in: a hash of its id, so a host never
 * changes AZ when others are added or removed (its volumes are bound to that AZ).
 */
export function subnetIndexFor(hostId: string, count: number): number {
  if (!Number.isInteger(count) || count < 1) throw new Error(`no private subnets to place host ${hostId} in`);
  return createHash('sha256').update(hostId).digest().readUInt32BE(0) % count;
}

/** Resolves each node's image, port and size from its spec and the program's defaults; names what is missing. */
export function resolveNodes(spec: ClusterSpec, defaults: { image?: string; port?: number; sizeGiB?: number }) {
  return spec.nodes.map((n) => {
    const image = n.image ?? defaults.image;
    const port = n.port ?? defaults.port;
    if (!image) throw new Error(`node ${n.name}: no image (set it in the cluster spec or berth:nodeImage)`);
    if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`node ${n.name}: port must be 1-65535 (cluster spec or berth:nodePort), not ${String(port)}`);
    return { ...n, image, port, sizeGiB: n.sizeGiB ?? defaults.sizeGiB ?? 20 };
  });
}

/**
 * One unit stack per cluster, applied by the dynamic API (cluster-api). Config:
 * - `berth:cluster` — the ClusterSpec (name, region, hosts, nodes); checked by the same invariants as the API
 * - `berth:regionalStack` — this region's regional stack (`org/berth-regional/regional-eu-west-1`)
 * - `berth:regions` — designated regions; `berth:zone` — the Route 53 zone name (the regional stack's)
 * - `berth:nodeImage`, `berth:nodePort`, `berth:nodeSizeGiB` — node defaults
 * - `berth:instanceType` (default t3.medium), `berth:swapMiB` (default 2048)
 */
export function unitProgram() {
  const c = config();
  const spec = c.requireObject<ClusterSpec>('cluster');
  const region = stackRegion();
  const regions = c.requireObject<string[]>('regions');
  checkTransition(undefined, spec, regions);
  if (spec.region !== region) throw new Error(`cluster ${spec.name} is in ${spec.region}, but this stack deploys to ${region}`);
  const nodes = resolveNodes(spec, { image: c.get('nodeImage'), port: c.getNumber('nodePort'), sizeGiB: c.getNumber('nodeSizeGiB') });

  const regional = new pulumi.StackReference(c.require('regionalStack'));
  const zone = c.require('zone');
  const out = <T>(name: string) => stackOutput<T>(regional, name);
  const privateSubnetIds = out<string[]>('privateSubnetIds');
  const privateSubnetAzs = out<string[]>('privateSubnetAzs');
  // An older regional stack has no `environment` output: say so instead of waiting for it.
  const environment = regional.getOutput('environment').apply((e: unknown) => {
    if (typeof e !== 'string' || e === '') throw new Error(`regional stack ${c.require('regionalStack')} has no "environment" output: update it (pulumi up) before this unit stack`);
    return e;
  });

  const cluster = new Cluster(spec.name, {
    environment, cluster: spec.name, region, zoneId: out<string>('zoneId'), zoneName: zone, traefikIp: out<string>('traefikIp'), nodes: nodes.map((n) => n.name),
  });
  // The names this cluster publishes against the certificate the regional Traefik serves (an older
  // regional stack has no `certDomains` output: its own preview checked the zone's wildcard then).
  // An output of the stack, so the update waits for the check and fails with its sentence.
  const certificateCovers = regional.getOutput('certDomains').apply((domains: unknown) => {
    if (!Array.isArray(domains)) return undefined;
    const uncovered = uncoveredNames(cluster.fqdns, domains as string[]);
    if (uncovered.length > 0) throw new Error(`cluster ${spec.name}: ${uncovered.join('; ')}`);
    return domains as string[];
  });
  // The account's EC2 schedule in the environment bucket; an older regional stack has no such output: its hosts pace alone.
  const scheduleBucket = pulumi.all([regional.getOutput('environmentBucket'), regional.getOutput('environmentBucketRegion')]).apply(([bucket, bucketRegion]: unknown[]) =>
    typeof bucket === 'string' && bucket !== '' && typeof bucketRegion === 'string' && bucketRegion !== '' ? { bucket, region: bucketRegion } : undefined);
  const hosts = new Map<string, { host: Host; az: pulumi.Output<string> }>();
  for (const hostId of spec.hosts) {
    const pick = <T>(list: pulumi.Output<T[]>) => list.apply((l) => l[subnetIndexFor(hostId, l.length)]!);
    const host = new Host(hostId, {
      environment, cluster: spec.name, hostId, region, accountId: accountId(), ecsClusterName: cluster.ecsClusterName,
      subnetId: pick(privateSubnetIds), securityGroupId: out<string>('securityGroupId'), artifactUri: out<string>('artifactUri'),
      logGroupName: cluster.logGroupName, ebsKmsKeyArn: out<string>('ebsKeyArn'), bucketKmsKeyArn: out<string>('bucketKeyArn'), scheduleBucket,
      instanceType: spec.instanceType ?? c.get('instanceType') ?? DEFAULT_HOST_INSTANCE_TYPE, swapMiB: c.getNumber('swapMiB') ?? 2048,
    }, { dependsOn: [cluster] });
    hosts.set(hostId, { host, az: pick(privateSubnetAzs) });
  }
  // Who may move this cluster's nodes to another zone (`berth move`): a managed policy the operators'
  // role is given, nothing attached here (docs/deploy.md, "Who may move a node").
  const movePolicy = new aws.iam.Policy(`${spec.name}-move`, {
    name: environment.apply((env) => fitName(`${env}-${spec.name}-berth-move`, 128)),
    description: `berth move: zone moves of the volumes of berth cluster ${spec.name}`,
    policy: pulumi.all([environment, accountId(), out<string>('ebsKeyArn')]).apply(([env, account, ebsKmsKeyArn]) =>
      JSON.stringify(zoneMovePolicy({ region, accountId: account, environment: env, cluster: spec.name, ebsKmsKeyArn }))),
  });
  // Dashboard and alarms of the cluster (docs/operations.md, "Watch the fleet").
  new Monitoring(`${spec.name}-monitoring`, { environment, cluster: spec.name, region, alarms: clusterAlarms(spec.name) });
  const volumes: Record<string, pulumi.Output<string>> = {};
  for (const n of nodes) {
    const { host, az } = hosts.get(n.host)!;
    // dependsOn: the node goes before its host on delete, and never outlives it.
    const node = new Node(`${spec.name}-${n.name}`, {
      environment, node: n.name, host: n.host, cluster: spec.name, image: n.image, port: n.port, sizeGiB: n.sizeGiB, zone, routes: n.routes, healthCheck: n.healthCheck, volume: n.volume, stopped: n.stopped,
      ecsCluster: cluster.ecsClusterArn, availabilityZone: az, kmsKeyId: out<string>('ebsKeyArn'),
    }, { dependsOn: [host] });
    volumes[n.name] = node.volumeId;
  }
  return {
    cluster: spec.name,
    region,
    spec: JSON.stringify(spec),
    hosts: Object.fromEntries([...hosts].map(([id, h]) => [id, { group: h.host.groupName, availabilityZone: h.az }])),
    volumes,
    /** The region's private subnet zones in order: with subnetIndexFor, the zone of any host (the cluster API's moveNode). */
    zones: privateSubnetAzs,
    fqdns: cluster.fqdns,
    /** The managed policy that lets an operator run `berth move` on this cluster's nodes (docs/deploy.md). */
    movePolicyArn: movePolicy.arn,
    /** The certificate names the published names were checked against (none for an older regional stack). */
    certificateCovers,
  };
}
