import * as pulumi from '@pulumi/pulumi';
import type { ClusterSpec } from '../cluster-api/invariants.js';
import { ofType, recordResources, settled, type Declared } from './pulumi-mocks.js';
import { resolveAll } from './program-checks.js';

/**
 * One deployment configuration, rendered as `pulumi up` would run it under setMocks: the
 * regional program of one region (its `berth:zone` and `berth:certDomains`), then the unit
 * program of each cluster against that regional stack's outputs. Everything both declare in
 * Route 53 is what berth publishes; `certDomains` is what the renewer is asked to issue.
 */
export interface Deployment {
  readonly zone: string;
  readonly certDomains: readonly string[];
  readonly region: string;
  readonly clusters: readonly ClusterSpec[];
  readonly environment?: string;
}

const GLOBAL_STACK = 'acme/berth-global/prod';
const regionalStack = (region: string) => `acme/berth-regional/regional-${region}`;

/** The regional stack's outputs the unit program reads, for this deployment. */
export function regionalOutputs(d: Deployment): Record<string, unknown> {
  return {
    environment: d.environment ?? 'prod', zone: d.zone, zoneId: 'Z0EXAMPLE', privateSubnetIds: ['subnet-a', 'subnet-b', 'subnet-c'],
    privateSubnetAzs: [`${d.region}a`, `${d.region}b`, `${d.region}c`], securityGroupId: 'sg-1', artifactUri: 's3://berth-artifacts-0001/berth/src-1.tar.gz',
    ebsKeyArn: `arn:aws:kms:${d.region}:111122223333:key/ebs`, bucketKeyArn: `arn:aws:kms:${d.region}:111122223333:key/buckets`, traefikIp: '203.0.113.10',
    certDomains: d.certDomains,
  };
}

/** Installs the mocks (once per process: call before anything else declares resources). */
export function deploymentMocks(d: Deployment): Declared[] {
  return recordResources({
    stacks: {
      [GLOBAL_STACK]: {
        environment: d.environment ?? 'prod', region: d.region, artifactsBucket: 'berth-artifacts-0001', environmentBucket: 'berth-environment-0001',
        bucketKeyArn: `arn:aws:kms:${d.region}:111122223333:key/buckets`, traefikRepositoryUrl: `111122223333.dkr.ecr.${d.region}.amazonaws.com/prod/traefik`,
      },
      [regionalStack(d.region)]: regionalOutputs(d),
    },
    calls: {
      'aws:index/getCallerIdentity:getCallerIdentity': () => ({ accountId: '111122223333', arn: 'arn', userId: 'u', id: '111122223333' }),
      'aws:index/getAvailabilityZones:getAvailabilityZones': () => ({ names: [`${d.region}a`, `${d.region}b`, `${d.region}c`], zoneIds: [], id: d.region }),
      'aws:ssm/getParameter:getParameter': (i) => ({ name: i['name'], value: 'ami-0ecs2023', type: 'String' }),
    },
  });
}

/** Runs the regional program, then every cluster's unit program; returns every Route 53 record name they declared. */
/** Runs one cluster's unit program against `regional` (a stack reference the mocks know): its outputs, or the program's error. */
export async function runUnit(spec: ClusterSpec, d: Deployment, regional = regionalStack(d.region)): Promise<Record<string, unknown>> {
  pulumi.runtime.setAllConfig({
    'aws:region': d.region, 'berth:cluster': JSON.stringify(spec), 'berth:regionalStack': regional,
    'berth:regions': JSON.stringify([d.region]), 'berth:zone': d.zone, 'berth:nodeImage': 'app:1', 'berth:nodePort': '8080',
  });
  const { unitProgram } = await import('../programs/unit/index.js');
  // Awaited through the output's own promise: a check that throws (certificateCovers) fails this call instead of hanging it.
  return (await (pulumi.output(unitProgram()) as unknown as { promise(): Promise<unknown> }).promise()) as Record<string, unknown>;
}

export async function publishedNames(declared: Declared[], d: Deployment): Promise<string[]> {
  const from = declared.length;
  pulumi.runtime.setAllConfig({
    'aws:region': d.region, 'berth:globalStack': GLOBAL_STACK, 'berth:regions': JSON.stringify([d.region]),
    'berth:cidrs': JSON.stringify({ [d.region]: '10.1.0.0/16' }), 'berth:zone': d.zone, 'berth:zoneId': 'Z0EXAMPLE',
    'berth:release': 'src-0123456789abcdef', 'berth:certDomains': JSON.stringify(d.certDomains),
  });
  const { regionalProgram } = await import('../programs/regional/index.js');
  await resolveAll(regionalProgram());
  await settled(declared);
  for (const spec of d.clusters) {
    await runUnit(spec, d);
    await settled(declared);
  }
  return ofType(declared.slice(from), 'aws:route53/record:Record').map((r) => String(r.inputs['name']));
}
