import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { peeringPairs, validateCidrMap } from './cidr-map.js';

export interface RegionNetwork {
  readonly vpcId: pulumi.Input<string>;
  readonly cidr: string;
  readonly routeTableIds: readonly pulumi.Input<string>[];
  /** Provider for that region; omitted in single-provider tests. */
  readonly provider?: pulumi.ProviderResource;
}

export interface PeeringMeshArgs {
  readonly networks: Readonly<Record<string, RegionNetwork>>;
  /** Declare only the pairs that include this region: a regional stack peers with the regions deployed before it. */
  readonly hub?: string;
}

/** Full mesh of VPC peering between designated regions, with routes in both directions. */
export class PeeringMesh extends pulumi.ComponentResource {
  readonly connectionIds: pulumi.Output<string>[];

  constructor(name: string, args: PeeringMeshArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:network:PeeringMesh', name, {}, opts);
    const regions = Object.keys(args.networks);
    validateCidrMap(Object.fromEntries(regions.map((r) => [r, args.networks[r]!.cidr])), regions);
    if (args.hub !== undefined && !regions.includes(args.hub)) throw new Error(`PeeringMesh: hub ${args.hub} is not one of the networks (${regions.join(', ')})`);
    this.connectionIds = [];
    for (const [a, b] of peeringPairs(regions).filter((p) => args.hub === undefined || p.includes(args.hub))) {
      const req = args.networks[a]!;
      const acc = args.networks[b]!;
      const conn = new aws.ec2.VpcPeeringConnection(`${name}-${a}-${b}`, {
        vpcId: req.vpcId, peerVpcId: acc.vpcId, peerRegion: b, tags: { Name: `berth ${a}<->${b}` },
      }, { parent: this, provider: req.provider });
      const accepter = new aws.ec2.VpcPeeringConnectionAccepter(`${name}-${a}-${b}-accept`, {
        vpcPeeringConnectionId: conn.id, autoAccept: true,
      }, { parent: this, provider: acc.provider });
      const route = (from: string, to: string, net: RegionNetwork) => net.routeTableIds.forEach((rt, i) => {
        new aws.ec2.Route(`${name}-${from}-to-${to}-${i}`, {
          routeTableId: rt, destinationCidrBlock: args.networks[to]!.cidr, vpcPeeringConnectionId: conn.id,
        }, { parent: this, provider: net.provider, dependsOn: [accepter] });
      });
      route(a, b, req);
      route(b, a, acc);
      this.connectionIds.push(conn.id);
    }
    this.registerOutputs({ connectionIds: this.connectionIds });
  }
}
