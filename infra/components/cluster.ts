import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { tagKeys } from '../../lib/node-contract.js';
import { clusterPublishedNames } from './dns-names.js';
import { unitEcsClusterName } from './naming.js';

export interface ClusterArgs {
  /** The environment (the regional stack's `environment`): it prefixes the ECS cluster and the log group. */
  readonly environment: pulumi.Input<string>;
  readonly cluster: string;
  readonly region: string;
  readonly zoneId: pulumi.Input<string>;
  readonly zoneName: string;
  /** The region's Traefik Elastic IP; every name of the cluster resolves to it. */
  readonly traefikIp: pulumi.Input<string>;
  /** Node names; each gets `<node>-<cluster>.<zone>` (Traefik routes it by Host; `*.<zone>` covers it). */
  readonly nodes: readonly string[];
  readonly logRetentionDays?: number;
}

export { unitEcsClusterName };

/**
 * Cluster-wide resources of a unit: its own ECS cluster (host ids need only be unique within
 * it, since ECS places node tasks by the berth.host attribute), the hosts' log group, the
 * latency-routed `<cluster>.<zone>` (this region as its set identifier) and one plain record per
 * node, `<node>-<cluster>.<zone>` (dns-names.ts), all at the region's Traefik IP.
 */
export class Cluster extends pulumi.ComponentResource {
  readonly logGroupName: pulumi.Output<string>;
  readonly ecsClusterName: pulumi.Output<string>;
  readonly ecsClusterArn: pulumi.Output<string>;
  readonly fqdns: string[];

  constructor(name: string, args: ClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:unit:Cluster', name, {}, opts);
    const ecs = new aws.ecs.Cluster(`${name}-ecs`, {
      name: pulumi.output(args.environment).apply((env) => unitEcsClusterName(env, args.cluster)), settings: [{ name: 'containerInsights', value: 'enabled' }], tags: { [tagKeys().cluster]: args.cluster, [tagKeys().environment]: args.environment },
    }, { parent: this });
    const logs = new aws.cloudwatch.LogGroup(`${name}-logs`, { name: pulumi.interpolate`/${args.environment}/hosts/${args.cluster}`, retentionInDays: args.logRetentionDays ?? 30 }, { parent: this });
    // One list of names, the cluster's own then one per node: the labels the cluster API checks
    // against every other cluster of the environment before anything is applied.
    const names = clusterPublishedNames(args.cluster, args.nodes, args.zoneName);
    for (const { fqdn, node } of names) {
      new aws.route53.Record(`${name}-${fqdn}`, node === undefined
        ? { zoneId: args.zoneId, name: fqdn, type: 'A', ttl: 60, records: [args.traefikIp], setIdentifier: args.region, latencyRoutingPolicies: [{ region: args.region }] }
        : { zoneId: args.zoneId, name: fqdn, type: 'A', ttl: 60, records: [args.traefikIp] }, { parent: this });
    }
    this.fqdns = names.map((n) => n.fqdn);
    this.logGroupName = logs.name;
    this.ecsClusterName = ecs.name;
    this.ecsClusterArn = ecs.arn;
    this.registerOutputs({ logGroupName: this.logGroupName, ecsClusterName: this.ecsClusterName, ecsClusterArn: this.ecsClusterArn, fqdns: this.fqdns });
  }
}
