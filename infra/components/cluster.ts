import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';

export interface ClusterArgs {
  readonly cluster: string;
  readonly region: string;
  readonly zoneId: pulumi.Input<string>;
  readonly zoneName: string;
  /** The region's Traefik Elastic IP; every name of the cluster resolves to it. */
  readonly traefikIp: pulumi.Input<string>;
  /** Node names; each gets `<node>.<zone>` (Traefik routes it by Host). */
  readonly nodes: readonly string[];
  readonly logRetentionDays?: number;
}

/** ECS cluster name of a berth cluster; the prefix keeps unit clusters apart from the regional Traefik one. */
export const unitEcsClusterName = (cluster: string) => `berth-unit-${cluster}`;

/**
 * Cluster-wide resources of a unit: its own ECS cluster (host ids need only be unique within
 * it, since ECS places node tasks by the berth.host attribute), the hosts' log group, and latency-routed A records
 * (`<cluster>.<zone>` and `<node>.<zone>`) with this region as their set identifier, so the
 * same name in another region's stack adds a latency alternative instead of a conflict.
 */
export class Cluster extends pulumi.ComponentResource {
  readonly logGroupName: pulumi.Output<string>;
  readonly ecsClusterName: pulumi.Output<string>;
  readonly ecsClusterArn: pulumi.Output<string>;
  readonly fqdns: string[];

  constructor(name: string, args: ClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:unit:Cluster', name, {}, opts);
    const ecs = new aws.ecs.Cluster(`${name}-ecs`, {
      name: unitEcsClusterName(args.cluster), settings: [{ name: 'containerInsights', value: 'enabled' }], tags: { 'berth:cluster': args.cluster },
    }, { parent: this });
    const logs = new aws.cloudwatch.LogGroup(`${name}-logs`, { name: `/berth/hosts/${args.cluster}`, retentionInDays: args.logRetentionDays ?? 30 }, { parent: this });
    this.fqdns = [args.cluster, ...args.nodes].map((label) => `${label}.${args.zoneName}`);
    for (const fqdn of this.fqdns) {
      new aws.route53.Record(`${name}-${fqdn}`, {
        zoneId: args.zoneId, name: fqdn, type: 'A', ttl: 60, records: [args.traefikIp],
        setIdentifier: args.region, latencyRoutingPolicies: [{ region: args.region }],
      }, { parent: this });
    }
    this.logGroupName = logs.name;
    this.ecsClusterName = ecs.name;
    this.ecsClusterArn = ecs.arn;
    this.registerOutputs({ logGroupName: this.logGroupName, ecsClusterName: this.ecsClusterName, ecsClusterArn: this.ecsClusterArn, fqdns: this.fqdns });
  }
}
