import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';

export interface IngressRule {
  readonly description: string;
  readonly protocol: 'tcp' | '-1';
  readonly fromPort: number;
  readonly toPort: number;
  readonly cidr: string;
}

export const INTERNAL_CIDR = '10.0.0.0/8';

/**
 * Host ports ECS gives a bridge-mode container without a hostPort: the ephemeral range, 49153-65535
 * by Docker's default or the host's ip_local_port_range (32768-60999 on AL2023) (ECS API reference,
 * PortMapping `hostPort`). Traefik reaches node containers there.
 */
export const NODE_HOST_PORTS = { fromPort: 32768, toPort: 65535 } as const;

/** What the Traefik host accepts from the internet: its three entry points (docs/design.md §8). */
export const PUBLIC_RULES: readonly IngressRule[] = [
  { description: 'public 8090 (HTTP API)', protocol: 'tcp', fromPort: 8090, toPort: 8090, cidr: '0.0.0.0/0' },
  { description: 'public 8860 (TCP)', protocol: 'tcp', fromPort: 8860, toPort: 8860, cidr: '0.0.0.0/0' },
  { description: 'public 4000 (WebSocket)', protocol: 'tcp', fromPort: 4000, toPort: 4000, cidr: '0.0.0.0/0' },
];

export interface SecurityGroupsArgs {
  readonly vpcId: pulumi.Input<string>;
  /** The region's VPC range: the private subnets' traffic the Traefik host NATs comes from it. */
  readonly vpcCidr: string;
}

/**
 * Two groups, each opening only what its side needs. The edge group (the Traefik/NAT host): the
 * public entry points, Traefik's internal 9860 (ping, metrics) from the peered ranges, and
 * everything from its own VPC, which it forwards as the private subnets' NAT. The host group
 * (berth hosts): only the node containers' host ports, and only from the edge group. berth and
 * the ECS agent take no inbound connections.
 */
export class SecurityGroups extends pulumi.ComponentResource {
  readonly edgeGroupId: pulumi.Output<string>;
  readonly hostGroupId: pulumi.Output<string>;

  constructor(name: string, args: SecurityGroupsArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:network:SecurityGroups', name, {}, opts);
    const egress = [{ description: 'all egress', protocol: '-1', fromPort: 0, toPort: 0, cidrBlocks: ['0.0.0.0/0'] }];
    const edgeRules: IngressRule[] = [
      ...PUBLIC_RULES,
      { description: 'Traefik ping and metrics from the peered VPCs', protocol: 'tcp', fromPort: 9860, toPort: 9860, cidr: INTERNAL_CIDR },
      { description: 'NAT: what the private subnets send out', protocol: '-1', fromPort: 0, toPort: 0, cidr: args.vpcCidr },
    ];
    const edge = new aws.ec2.SecurityGroup(`${name}-edge`, {
      vpcId: args.vpcId,
      description: 'berth Traefik and NAT host',
      ingress: edgeRules.map((r) => ({ description: r.description, protocol: r.protocol, fromPort: r.fromPort, toPort: r.toPort, cidrBlocks: [r.cidr] })),
      egress,
    }, { parent: this });
    const hosts = new aws.ec2.SecurityGroup(`${name}-hosts`, {
      vpcId: args.vpcId,
      description: 'berth hosts',
      ingress: [{ description: 'node containers, from Traefik only', protocol: 'tcp', ...NODE_HOST_PORTS, securityGroups: [edge.id] }],
      egress,
    }, { parent: this });
    this.edgeGroupId = edge.id;
    this.hostGroupId = hosts.id;
    this.registerOutputs({ edgeGroupId: this.edgeGroupId, hostGroupId: this.hostGroupId });
  }
}
