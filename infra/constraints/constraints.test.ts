import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { recordResources, settled, type Declared } from '../test/pulumi-mocks.js';
import { resolveAll } from '../test/program-checks.js';
import { checkShape, inputShape, loadService, newestBotocore } from './botocore.js';
import { crossFieldProblems, type DeclaredCall } from './cross-field.js';
import { certificateProblems, publishedRecordNames } from './published-names.js';
import { LAMBDA_RUNTIMES, READ_ON, runtimeNotices, runtimeProblems } from './lambda-runtimes.js';
import { documentedProblems, NO_API_CALL, RESOURCE_CALLS, type ApiCall } from './resource-shapes.js';

/**
 * Every resource the three programs declare, turned into the API call that creates it and
 * checked against AWS's own model of that call (names, patterns, lengths, enums), with the
 * longest names the programs can produce: a 63-character host id and node name.
 */
const botocore = newestBotocore(); // none on the machine: the file fails here, it does not skip
const dataDir = botocore.dataDir;
/** Runtimes the model may predate (Debian's 1.29 has no nodejs20.x): the dated table speaks for them. */
const RUNTIMES_BY_TABLE = { 'lambda Runtime': Object.keys(LAMBDA_RUNTIMES) };

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

describe(`declared resources against AWS's API models (botocore ${botocore.version}, ${botocore.packageDir})`, () => {
  let declared: Declared[] = [];
  beforeAll(async () => {
    declared = await declareAll();
  }, 120_000);

  const callsOf = (d: Declared): ApiCall[] => RESOURCE_CALLS[d.type]!(d, declared);

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
        const model = loadService(dataDir, c.service);
        problems.push(...checkShape(model, inputShape(model, c.operation), c.input, `${d.type} ${d.name} → ${c.service}:${c.operation}`, skip, RUNTIMES_BY_TABLE), ...documentedProblems(c));
      }
    }
    expect(problems).toEqual([]);
  });

  it('keeps to the rules AWS enforces across fields and requests (VPC and subnet blocks, Route 53 routing policies)', () => {
    const calls: DeclaredCall[] = declared.filter((d) => RESOURCE_CALLS[d.type]).flatMap((d) => callsOf(d).map((call) => ({ resource: `${d.type} ${d.name}`, name: d.name, call })));
    expect(calls.filter((c) => c.call.service === 'route53').length).toBeGreaterThan(2);
    expect(crossFieldProblems(calls)).toEqual([]);
  });

  it('publishes only names the regional certificate covers (published names vs berth:certDomains)', () => {
    const calls: DeclaredCall[] = declared.filter((d) => RESOURCE_CALLS[d.type]).flatMap((d) => callsOf(d).map((call) => ({ resource: `${d.type} ${d.name}`, name: d.name, call })));
    const certDomains = JSON.parse(programs.regional['berth:certDomains']) as string[];
    expect(publishedRecordNames(calls).length).toBeGreaterThan(2);
    expect(certificateProblems(calls, certDomains)).toEqual([]);
    expect(certificateProblems(calls, ['example.com'])).not.toEqual([]);
  });

  it('runs every Lambda on a runtime Lambda still creates, by the dated table and this test\'s clock', () => {
    const runtimes = declared.filter((d) => d.type === 'aws:lambda/function:Function').map((d) => String(d.inputs['runtime']));
    expect(runtimes.length).toBeGreaterThanOrEqual(3); // the state-backup cleanup, the agent update, the renewer
    const now = new Date();
    expect(runtimes.flatMap((r) => [...runtimeProblems(r, now), ...runtimeNotices(r, now)])).toEqual([]);
  });

  it('reads the models AWS publishes, whole-value patterns included', async () => {
    const model = loadService(dataDir, 'dlm');
    // What the snapshot policy used to name its schedule: DLM refuses the comma.
    expect(checkShape(model, 'ScheduleName', 'every 24h, keep 14', 'name')).toEqual([expect.stringMatching(/does not match \[0-9A-Za-z _-\]\+/)]);
    expect(checkShape(loadService(dataDir, 'iam'), 'roleNameType', `${LONG}-role-0000000`, 'role')).toEqual([expect.stringMatching(/over 64/)]);
  });
});

describe('two environments in one account and region', () => {
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

describe('the conformance checker itself', () => {
  const model = () => loadService(dataDir, 'lambda');

  it('flags a missing required member and a member the API does not have', () => {
    const problems = checkShape(model(), 'CreateFunctionRequest', { FunctionName: 'f', Code: { ZipFile: 'z' }, Handler: 'x.handler', Tmeout: 3 }, 'fn');
    expect(problems).toEqual([
      expect.stringMatching(/unknown member "Tmeout"/),
      expect.stringMatching(/required member "Role" is missing/),
    ]);
  });

  it('flags a runtime the model does not list, with no runtime allow-listed', () => {
    expect(checkShape(model(), 'Runtime', 'nodejs99.x', 'fn.Runtime')).toEqual([expect.stringMatching(/"nodejs99.x" is not one of/)]);
    expect(runtimeProblems('nodejs99.x', new Date())).toEqual([expect.stringMatching(/not in infra\/constraints\/lambda-runtimes.ts/)]);
  });

  it('dates each runtime: nodejs20.x deploys in December 2026 as a deprecated runtime, then CreateFunction and later updates refuse it', () => {
    expect(READ_ON).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    const at = (iso: string) => new Date(`${iso}T12:00:00Z`);
    expect(runtimeProblems('nodejs20.x', at('2026-12-06'))).toEqual([]);
    expect(runtimeNotices('nodejs20.x', at('2026-12-06'))).toEqual([expect.stringMatching(/deprecated since 2026-04-30: CreateFunction refuses it from 2027-02-01/)]);
    expect(runtimeProblems('nodejs20.x', at('2027-02-01'))).toEqual([expect.stringMatching(/CreateFunction refuses it since 2027-02-01/)]);
    expect(runtimeProblems('nodejs20.x', at('2027-03-03'))).toEqual([expect.stringMatching(/neither created nor updated since 2027-03-03/)]);
    expect(runtimeProblems('nodejs24.x', at('2028-05-31'))).toEqual([]);
    expect(runtimeProblems('nodejs24.x', at('2028-06-01'))).not.toEqual([]);
    for (const [runtime, d] of Object.entries(LAMBDA_RUNTIMES)) expect(d.deprecated <= d.blockCreate && d.blockCreate <= d.blockUpdate, runtime).toBe(true);
  });

  it('flags VPC and subnet blocks outside /16–/28 or outside their VPC, and Route 53 routing-policy conflicts', () => {
    const c = (name: string, service: string, operation: string, input: Record<string, unknown>): DeclaredCall => ({ resource: `r ${name}`, name, call: { service, operation, input } });
    const rr = (name: string, set: Record<string, unknown>) => c(name, 'route53', 'ChangeResourceRecordSets', { HostedZoneId: 'Z1', ChangeBatch: { Changes: [{ Action: 'CREATE', ResourceRecordSet: { Name: 'db.example.com', Type: 'A', TTL: 60, ResourceRecords: [{ Value: '192.0.2.1' }], ...set } }] } });
    expect(crossFieldProblems([
      c('big', 'ec2', 'CreateVpc', { CidrBlock: '10.0.0.0/15' }),
      c('v', 'ec2', 'CreateVpc', { CidrBlock: '10.1.0.0/16' }),
      c('s', 'ec2', 'CreateSubnet', { VpcId: 'v-id', CidrBlock: '10.2.0.0/20' }),
      c('tiny', 'ec2', 'CreateSubnet', { VpcId: 'v-id', CidrBlock: '10.1.0.0/29' }),
    ])).toEqual([
      expect.stringMatching(/r big: VPC block 10\.0\.0\.0\/15 is outside \/16–\/28/),
      expect.stringMatching(/r tiny: subnet block 10\.1\.0\.0\/29 is outside/),
      expect.stringMatching(/r s: subnet block 10\.2\.0\.0\/20 is not inside its VPC's 10\.1\.0\.0\/16/),
    ]);
    expect(crossFieldProblems([rr('both', { SetIdentifier: 'a', Region: 'eu-west-1', Weight: 10 })])).toEqual([expect.stringMatching(/Weight and Region routing at once/)]);
    expect(crossFieldProblems([rr('id', { SetIdentifier: 'a' })])).toEqual([expect.stringMatching(/SetIdentifier but no routing policy/)]);
    expect(crossFieldProblems([rr('noid', { Region: 'eu-west-1' })])).toEqual([expect.stringMatching(/Region routing but no SetIdentifier/)]);
    expect(crossFieldProblems([rr('a', { SetIdentifier: 'eu', Region: 'eu-west-1' }), rr('b', { SetIdentifier: 'w', Weight: 1 })])).toEqual([expect.stringMatching(/mix Region and Weight routing/)]);
    expect(crossFieldProblems([rr('a', {}), rr('b', { SetIdentifier: 'eu', Region: 'eu-west-1' })])).toEqual([expect.stringMatching(/a simple record set cannot share its name and type/)]);
    expect(crossFieldProblems([rr('a', { SetIdentifier: 'eu', Region: 'eu-west-1' }), rr('b', { SetIdentifier: 'eu', Region: 'eu-west-2' })])).toEqual([expect.stringMatching(/SetIdentifier "eu" is used twice/)]);
    expect(crossFieldProblems([rr('alias', { AliasTarget: { HostedZoneId: 'Z2', DNSName: 'lb.example.com', EvaluateTargetHealth: false } })])).toEqual([expect.stringMatching(/is an alias and also has TTL or values/)]);
    expect(crossFieldProblems([rr('a', { SetIdentifier: 'eu', Region: 'eu-west-1' }), rr('b', { SetIdentifier: 'us', Region: 'us-east-1' })])).toEqual([]);
  });

  it('uses the newest botocore on the machine and fails, naming where it looked, when there is none', () => {
    const root = mkdtempSync(join(tmpdir(), 'berth-botocore-'));
    try {
      const fake = (dir: string, version: string) => {
        mkdirSync(join(root, dir, 'data'), { recursive: true });
        writeFileSync(join(root, dir, '__init__.py'), `import os\n__version__ = '${version}'\n`);
        return join(root, dir);
      };
      const debian = fake('debian', '1.29.27');
      const pyenv = fake('pyenv', '1.43.11');
      const older = fake('older', '1.9.99');
      expect(newestBotocore([debian, join(root, 'missing'), older, pyenv]).version).toBe('1.43.11');
      expect(() => newestBotocore([join(root, 'missing')])).toThrow(/no botocore API models on this machine \(looked in: .*missing\)/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
