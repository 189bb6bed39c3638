import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { assertVpcCidr, parseCidr } from './cidr-map.js';
import { tagKeys } from '../../lib/node-contract.js';

/** How many subnets a VPC has and how its private subnets reach the internet. */
export interface VpcLayout {
  readonly publicSubnets: number;
  readonly privateSubnets: number;
  readonly availabilityZones: number;
  /** `gateway`: a NAT gateway with its EIP; `instance`: the Traefik host adds the default route at boot. */
  readonly nat: 'gateway' | 'instance';
  /**
   * An S3 gateway endpoint on the VPC's route tables: hosts in private subnets read their
   * release (and the AL2023 package repositories, S3 buckets in the region) without the
   * NAT path, which with `nat: instance` is down while the Traefik host is replaced
   * (docs/deploy.md, "How a host boots"). Gateway endpoints cost nothing.
   */
  readonly s3Endpoint: boolean;
}

export const VPC_LAYOUTS = {
  global: { publicSubnets: 2, privateSubnets: 2, availabilityZones: 2, nat: 'gateway', s3Endpoint: false },
  regional: { publicSubnets: 2, privateSubnets: 3, availabilityZones: 3, nat: 'instance', s3Endpoint: true },
} as const satisfies Record<string, VpcLayout>;

const formatIp = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

/**
 * Carves subnets out of a VPC range, always the same way for the same range: private
 * subnets are the first quarters (a /16 gives /18s, room for many hosts), public subnets
 * sixteenths of the last quarter (a /16 gives /20s; they hold only NAT/Traefik hosts).
 */
export function carveSubnets(cidr: string, publicCount: number, privateCount: number): { public: string[]; private: string[] } {
  const range = parseCidr(cidr);
  assertVpcCidr(cidr);
  const prefix = Number(cidr.split('/')[1]);
  if (prefix > 24) throw new Error(`VPC CIDR ${cidr} is too small: use /24 or larger (public subnets are 1/16 of it)`);
  if (privateCount < 1 || privateCount > 3) throw new Error(`a VPC has 1 to 3 private subnets, not ${privateCount}`);
  if (publicCount < 1 || publicCount > 4) throw new Error(`a VPC has 1 to 4 public subnets, not ${publicCount}`);
  const quarter = 2 ** (32 - prefix - 2);
  const sixteenth = 2 ** (32 - prefix - 4);
  return {
    private: Array.from({ length: privateCount }, (_, i) => `${formatIp(range.start + i * quarter)}/${prefix + 2}`),
    public: Array.from({ length: publicCount }, (_, i) => `${formatIp(range.start + 3 * quarter + i * sixteenth)}/${prefix + 4}`),
  };
}

export interface VpcArgs {
  /** The VPC range; regional ranges come from the validated region→CIDR map. */
  readonly cidr: string;
  readonly layout: VpcLayout;
  /** At least `layout.availabilityZones` zone names; subnet i goes to zone i mod that count. */
  readonly availabilityZones: pulumi.Input<readonly string[]>;
  readonly tags?: Readonly<Record<string, string>>;
  /** The VPC's region: the S3 endpoint's service is `com.amazonaws.<region>.s3` (needed with `layout.s3Endpoint`). */
  readonly region?: string;
}

/** A VPC with public and private subnets over several AZs, an internet gateway and, for `nat: gateway`, a NAT gateway. */
export class Vpc extends pulumi.ComponentResource {
  readonly vpcId: pulumi.Output<string>;
  readonly cidr: string;
  readonly publicSubnetIds: pulumi.Output<string>[];
  readonly privateSubnetIds: pulumi.Output<string>[];
  /** Zone of each private subnet, in the order of privateSubnetIds. */
  readonly privateSubnetAzs: pulumi.Output<string>[];
  readonly publicRouteTableId: pulumi.Output<string>;
  readonly privateRouteTableId: pulumi.Output<string>;
  readonly natPublicIp: pulumi.Output<string> | undefined;
  /** The S3 gateway endpoint, with `layout.s3Endpoint`. */
  readonly s3EndpointId: pulumi.Output<string> | undefined;

  constructor(name: string, args: VpcArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:network:Vpc', name, {}, opts);
    const { layout } = args;
    const blocks = carveSubnets(args.cidr, layout.publicSubnets, layout.privateSubnets);
    if (layout.s3Endpoint && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(args.region ?? '')) throw new Error(`VPC ${name} has an S3 gateway endpoint: give its region (e.g. eu-west-1), not "${args.region ?? ''}"`);
    const tags = args.tags ?? {};
    const parent = { parent: this };
    const zoneOf = (i: number) => pulumi.output(args.availabilityZones).apply((zones) => {
      if (zones.length < layout.availabilityZones) {
        throw new Error(`VPC ${name} needs ${layout.availabilityZones} availability zones, got ${zones.length} (${zones.join(', ')})`);
      }
      return zones[i % layout.availabilityZones]!;
    });

    const vpc = new aws.ec2.Vpc(`${name}-vpc`, {
      cidrBlock: args.cidr, enableDnsHostnames: true, enableDnsSupport: true, tags: { ...tags, Name: name },
    }, parent);
    const igw = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags: { ...tags, Name: name } }, parent);
    // Routes are separate resources, never inline: the peering mesh adds its own to these tables.
    const publicRt = new aws.ec2.RouteTable(`${name}-public`, { vpcId: vpc.id, tags: { ...tags, Name: `${name}-public` } }, parent);
    new aws.ec2.Route(`${name}-public-default`, { routeTableId: publicRt.id, destinationCidrBlock: '0.0.0.0/0', gatewayId: igw.id }, parent);

    const subnet = (tier: 'public' | 'private', cidrBlock: string, i: number) => {
      const az = zoneOf(i);
      const s = new aws.ec2.Subnet(`${name}-${tier}-${i}`, {
        vpcId: vpc.id, cidrBlock, availabilityZone: az, mapPublicIpOnLaunch: tier === 'public',
        tags: { ...tags, Name: `${name}-${tier}-${i}`, [tagKeys().tier]: tier },
      }, parent);
      return { id: s.id, az };
    };
    const publics = blocks.public.map((b, i) => subnet('public', b, i));
    const privates = blocks.private.map((b, i) => subnet('private', b, i));
    publics.forEach((s, i) => new aws.ec2.RouteTableAssociation(`${name}-public-${i}`, { subnetId: s.id, routeTableId: publicRt.id }, parent));

    // With `nat: instance` the default route belongs to the Traefik host, which replaces it at
    // boot; Pulumi must not own it, or every `up` would fight the host over it.
    const privateRt = new aws.ec2.RouteTable(`${name}-private`, { vpcId: vpc.id, tags: { ...tags, Name: `${name}-private` } }, parent);
    privates.forEach((s, i) => new aws.ec2.RouteTableAssociation(`${name}-private-${i}`, { subnetId: s.id, routeTableId: privateRt.id }, parent));
    let natPublicIp: pulumi.Output<string> | undefined;
    if (layout.nat === 'gateway') {
      const eip = new aws.ec2.Eip(`${name}-nat`, { domain: 'vpc', tags: { ...tags, Name: `${name}-nat` } }, parent);
      const nat = new aws.ec2.NatGateway(`${name}-nat`, {
        allocationId: eip.id, subnetId: publics[0]!.id, tags: { ...tags, Name: name },
      }, { parent: this, dependsOn: [igw] });
      new aws.ec2.Route(`${name}-private-default`, { routeTableId: privateRt.id, destinationCidrBlock: '0.0.0.0/0', natGatewayId: nat.id }, parent);
      natPublicIp = eip.publicIp;
    }

    // Both route tables: the private one (berth hosts) and the public one (the Traefik host,
    // whose certificates come from S3). No endpoint policy: the default allows every bucket,
    // which the hosts' IAM policies narrow; the AL2023 repositories are buckets too.
    let s3EndpointId: pulumi.Output<string> | undefined;
    if (layout.s3Endpoint) {
      s3EndpointId = new aws.ec2.VpcEndpoint(`${name}-s3`, {
        vpcId: vpc.id, serviceName: `com.amazonaws.${args.region!}.s3`, vpcEndpointType: 'Gateway',
        routeTableIds: [privateRt.id, publicRt.id], tags: { ...tags, Name: `${name}-s3` },
      }, parent).id;
    }

    this.vpcId = vpc.id;
    this.cidr = args.cidr;
    this.publicSubnetIds = publics.map((s) => s.id);
    this.privateSubnetIds = privates.map((s) => s.id);
    this.privateSubnetAzs = privates.map((s) => s.az);
    this.publicRouteTableId = publicRt.id;
    this.privateRouteTableId = privateRt.id;
    this.natPublicIp = natPublicIp;
    this.s3EndpointId = s3EndpointId;
    this.registerOutputs({
      vpcId: this.vpcId, publicSubnetIds: this.publicSubnetIds, privateSubnetIds: this.privateSubnetIds,
      privateSubnetAzs: this.privateSubnetAzs, publicRouteTableId: this.publicRouteTableId,
      privateRouteTableId: this.privateRouteTableId, natPublicIp: this.natPublicIp, s3EndpointId: this.s3EndpointId,
    });
  }
}
