import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { recordResources, settled, type Declared } from '../test/pulumi-mocks.js';
import { resolveAll } from '../test/program-checks.js';
import { botocoreDataDir, checkShape, inputShape, loadService } from './botocore.js';
import { documentedProblems, NEWER_THAN_MODEL, NO_API_CALL, RESOURCE_CALLS, type ApiCall } from './resource-shapes.js';

/**
 * Every resource the three programs declare, turned into the API call that creates it and
 * checked against AWS's own model of that call (names, patterns, lengths, enums), with the
 * longest names the programs can produce: a 63-character host id and node name.
 */
const dataDir = botocoreDataDir();
const skipReason = dataDir ? undefined : 'needs AWS\'s API models: apt-get install python3-botocore';

const LONG = 'h'.repeat(62) + '1'; // the longest host id the cluster invariants allow
// The longest node name cluster `shop` allows: `<node>-shop` is one DNS label of at most 63 (lib/node-contract.ts).
const spec = { name: 'shop', region: 'eu-west-1', hosts: [LONG, 'shop-h2'], nodes: [{ name: 'n'.repeat(58), host: LONG }, { name: 'db2', host: 'shop-h2' }] };

const programs = {
  global: { 'aws:region': 'eu-west-1', 'berth:operations': JSON.stringify({ codePath: '.build/lambdas', stateBucket: 'acme-pulumi-state' }) },
  regional: {
    'aws:region': 'us-east-1', 'berth:globalStack': 'acme/berth-global/prod', 'berth:regions': JSON.stringify(['eu-west-1', 'us-east-1']),
    'berth:cidrs': JSON.stringify({ 'eu-west-1': '10.1.0.0/16', 'us-east-1': '10.2.0.0/16' }), 'berth:zone': 'example.com', 'berth:zoneId': 'Z0EXAMPLE',
    'berth:release': 'src-0123456789ab', 'berth:certDomains': JSON.stringify(['example.com', '*.example.com']),
    'berth:renewer': JSON.stringify({ email: 'ops@example.com', codePath: '.build/renewer' }), 'berth:operations': JSON.stringify({ codePath: '.build/lambdas' }),
  },
  unit: {
    'aws:region': 'eu-west-1', 'berth:cluster': JSON.stringify(spec), 'berth:regionalStack': 'acme/berth-regional/regional-eu-west-1',
    'berth:regions': JSON.stringify(['eu-west-1', 'us-east-1']), 'berth:zone': 'example.com', 'berth:nodeImage': 'app:1', 'berth:nodePort': '8080',
  },
} as const;

/** Runs each program under mocks and returns what it declared, program by program. */
export async function declareAll(environment = 'prod'): Promise<Declared[]> {
  const declared = recordResources({
    stacks: {
      'acme/berth-global/prod': {
        environment, region: 'eu-west-1', artifactsBucket: 'berth-artifacts-0001', environmentBucket: 'berth-environment-0001',
        bucketKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/buckets', traefikRepositoryUrl: `111122223333.dkr.ecr.eu-west-1.amazonaws.com/${environment}/traefik`,
      },
      'regional-eu-west-1': { vpcId: 'vpc-eu', routeTableIds: ['rtb-eu-public', 'rtb-eu-private'] },
      'acme/berth-regional/regional-eu-west-1': {
        environment, zone: 'example.com', zoneId: 'Z0EXAMPLE', privateSubnetIds: ['subnet-a', 'subnet-b', 'subnet-c'], privateSubnetAzs: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
        securityGroupId: 'sg-eu', artifactUri: 's3://berth-artifacts-0001/berth/src-0123456789ab.tar.gz', ebsKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/ebs',
        bucketKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/buckets', traefikIp: '203.0.113.10',
      },
    },
    calls: {
      'aws:index/getCallerIdentity:getCallerIdentity': () => ({ accountId: '111122223333', arn: 'arn:aws:iam::111122223333:root', userId: 'u', id: '111122223333' }),
      'aws:index/getAvailabilityZones:getAvailabilityZones': (i) => ({ names: ['a', 'b', 'c'].map((z) => `${String(i['region'] ?? 'us-east-1')}${z}`), zoneIds: [], id: 'r' }),
      'aws:ssm/getParameter:getParameter': (i) => ({ name: i['name'], value: 'ami-0ecs2023', type: 'String' }),
    },
  });
  const { globalProgram } = await import('../programs/global/index.js');
  const { regionalProgram } = await import('../programs/regional/index.js');
  const { unitProgram } = await import('../programs/unit/index.js');
  for (const [program, run] of [['global', globalProgram], ['regional', regionalProgram], ['unit', unitProgram]] as const) {
    pulumi.runtime.setAllConfig({ ...programs[program], 'berth:environment': environment });
    await resolveAll(run() as Record<string, unknown>);
    await settled(declared);
  }
  return declared;
}

describe.skipIf(skipReason)(`declared resources against AWS's API models${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let declared: Declared[] = [];
  beforeAll(async () => {
    declared = await declareAll();
  }, 120_000);

  const callsOf = (d: Declared): ApiCall[] => RESOURCE_CALLS[d.type]!(d);

  it('maps every declared resource type to the API call that creates it', () => {
    const types = new Set(declared.map((d) => d.type).filter((t) => !t.startsWith('berth:') && !NO_API_CALL.has(t)));
    expect(types.size).toBeGreaterThan(30);
    const unmapped = [...types].filter((t) => !RESOURCE_CALLS[t]);
    expect(unmapped, 'declared types with no API mapping in infra/constraints/resource-shapes.ts: add one').toEqual([]);
  });

  it('sends only names and values the API models accept', () => {
    const mockIds = new Set(declared.map((d) => `${d.name}-id`));
    const skip = (v: unknown) => typeof v === 'string' && (v.startsWith('arn:aws:mock:') || mockIds.has(v));
    const problems: string[] = [];
    for (const d of declared) {
      if (!RESOURCE_CALLS[d.type]) continue;
      for (const c of callsOf(d)) {
        const model = loadService(dataDir!, c.service);
        problems.push(...checkShape(model, inputShape(model, c.operation), c.input, `${d.type} ${d.name} → ${c.service}:${c.operation}`, skip, NEWER_THAN_MODEL), ...documentedProblems(c));
      }
    }
    expect(problems).toEqual([]);
  });

  it('reads the models AWS publishes, whole-value patterns included', async () => {
    const model = loadService(dataDir!, 'dlm');
    // What the snapshot policy used to name its schedule: DLM refuses the comma.
    expect(checkShape(model, 'ScheduleName', 'every 24h, keep 14', 'name')).toEqual([expect.stringMatching(/does not match \[0-9A-Za-z _-\]\+/)]);
    expect(checkShape(loadService(dataDir!, 'iam'), 'roleNameType', `${LONG}-role-0000000`, 'role')).toEqual([expect.stringMatching(/over 64/)]);
  });
});

describe.skipIf(skipReason)('two environments in one account and region', () => {
  it('share no name that AWS keeps unique per account and region', async () => {
    const unique = ['aws:ecr/repository:Repository', 'aws:kms/alias:Alias', 'aws:cloudwatch/logGroup:LogGroup', 'aws:ecs/cluster:Cluster', 'aws:ecs/taskDefinition:TaskDefinition'];
    const names = async (env: string) => (await declareAll(env)).filter((d) => unique.includes(d.type) && d.inputs['name'] !== undefined)
      .map((d) => `${d.type} ${String(d.inputs['name'] ?? d.inputs['family'])}`);
    const prod = new Set(await names('prod'));
    const staging = await names('staging');
    expect(staging.length).toBeGreaterThan(5);
    expect(staging.filter((n) => prod.has(n))).toEqual([]);
  }, 120_000);
});
