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

/** The only ingress the regional stack opens (DESIGN.md §8); anything else open to 0.0.0.0/0 is a bug. */
export const INGRESS_RULES: readonly IngressRule[] = [
  { description: 'internal traffic across peered VPCs', protocol: '-1', fromPort: 0, toPort: 0, cidr: INTERNAL_CIDR },
  { description: 'public 8090', protocol: 'tcp', fromPort: 8090, toPort: 8090, cidr: '0.0.0.0/0' },
  { description: 'public 8860', protocol: 'tcp', fromPort: 8860, toPort: 8860, cidr: '0.0.0.0/0' },
  { description: 'public 4000', protocol: 'tcp', fromPort: 4000, toPort: 4000, cidr: '0.0.0.0/0' },
  { description: 'internal 9860', protocol: 'tcp', fromPort: 9860, toPort: 9860, cidr: INTERNAL_CIDR },
];

export interface SecurityGroupsArgs {
  readonly vpcId: pulumi.Input<string>;
  readonly rules?: readonly IngressRule[];
}

export class SecurityGroups extends pulumi.ComponentResource {
  readonly groupId: pulumi.Output<string>;

  constructor(name: string, args: SecurityGroupsArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:network:SecurityGroups', name, {}, opts);
    const rules = args.rules ?? INGRESS_RULES;
    const group = new aws.ec2.SecurityGroup(`${name}-sg`, {
      vpcId: args.vpcId,
      description: 'berth hosts',
      ingress: rules.map((r) => ({ description: r.description, protocol: r.protocol, fromPort: r.fromPort, toPort: r.toPort, cidrBlocks: [r.cidr] })),
      egress: [{ description: 'all egress', protocol: '-1', fromPort: 0, toPort: 0, cidrBlocks: ['0.0.0.0/0'] }],
    }, { parent: this });
    this.groupId = group.id;
    this.registerOutputs({ groupId: this.groupId });
  }
}
