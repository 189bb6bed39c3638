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

/**
 * Cluster-wide resources of a unit: the hosts' log group, and latency-routed A records
 * (`<cluster>.<zone>` and `<node>.<zone>`) with this region as their set identifier, so the
 * same name in another region's stack adds a latency alternative instead of a conflict.
 */
export class Cluster extends pulumi.ComponentResource {
  readonly logGroupName: pulumi.Output<string>;
  readonly fqdns: string[];

  constructor(name: string, args: ClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:unit:Cluster', name, {}, opts);
    const logs = new aws.cloudwatch.LogGroup(`${name}-logs`, { name: `/berth/hosts/${args.cluster}`, retentionInDays: args.logRetentionDays ?? 30 }, { parent: this });
    this.fqdns = [args.cluster, ...args.nodes].map((label) => `${label}.${args.zoneName}`);
    for (const fqdn of this.fqdns) {
      new aws.route53.Record(`${name}-${fqdn}`, {
        zoneId: args.zoneId, name: fqdn, type: 'A', ttl: 60, records: [args.traefikIp],
        setIdentifier: args.region, latencyRoutingPolicies: [{ region: args.region }],
      }, { parent: this });
    }
    this.logGroupName = logs.name;
    this.registerOutputs({ logGroupName: this.logGroupName, fqdns: this.fqdns });
  }
}
