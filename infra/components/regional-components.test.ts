import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allows, type PolicyDocument } from '../../test/aws/iam-policy.js';
import { ofType, recordResources, settled, userdataParts, type Declared } from '../test/pulumi-mocks.js';
import { metricsLogGroupName } from './monitoring-specs.js';

let declared: Declared[] = [];
const amiQueries: string[] = [];
beforeAll(() => {
  declared = recordResources({
    calls: {
      'aws:ssm/getParameter:getParameter': (inputs) => {
        amiQueries.push(String(inputs['name']));
        return { name: inputs['name'], value: 'ami-0ecs2023', type: 'String' };
      },
    },
  });
});
const sandbox = mkdtempSync(join(tmpdir(), 'berth-regional-'));
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

interface Statement { Sid: string; Action: string[]; Resource: string | string[]; Condition?: Record<string, Record<string, unknown>> }
const statements = (d: Declared) => (JSON.parse(d.inputs['policy'] as string) as { Statement: Statement[] }).Statement;
const named = (type: string, name: string) => ofType(declared, type).find((d) => d.name === name)!;

describe('KmsKeys', () => {
  it('declares the EBS, SSM and secrets keys with rotation on and an alias each', async () => {
    const { KmsKeys } = await import('./kms-keys.js');
    const keys = new KmsKeys('kms', { aliasPrefix: 'staging' });
    await new Promise<void>((r) => pulumi.all(Object.values(keys.keyArns)).apply(() => r()));
    await settled(declared);
    const created = ofType(declared, 'aws:kms/key:Key').filter((k) => k.name.startsWith('kms-'));
    expect(created.map((k) => k.name).sort()).toEqual(['kms-ebs', 'kms-secrets', 'kms-ssm']);
    for (const k of created) expect(k.inputs).toMatchObject({ enableKeyRotation: true, deletionWindowInDays: 30 });
    expect(ofType(declared, 'aws:kms/alias:Alias').map((a) => a.inputs['name']).sort()).toEqual(['alias/staging/ebs', 'alias/staging/secrets', 'alias/staging/ssm']);
    expect(() => new KmsKeys('bad', { aliasPrefix: 'staging', deletionWindowDays: 3 })).toThrow(/deletionWindowDays/);
  });
});

describe('SnapshotPolicy', () => {
  it('snapshots every node volume of its environment (tag berth:environment) on a schedule, keeping a bounded number', async () => {
    const { SnapshotPolicy } = await import('./snapshot-policy.js');
    const p = new SnapshotPolicy('snap', { environment: 'prod', retain: 7 });
    await new Promise<void>((r) => p.policyArn.apply(() => r()));
    await settled(declared);
    const dlm = ofType(declared, 'aws:dlm/lifecyclePolicy:LifecyclePolicy')[0]!;
    expect(dlm.inputs).toMatchObject({
      state: 'ENABLED', executionRoleArn: 'arn:aws:mock:::snap-dlm',
      policyDetails: { resourceTypes: ['VOLUME'], targetTags: { 'berth:environment': 'prod' }, schedules: [{ createRule: { interval: 24, intervalUnit: 'HOURS', times: '03:00' }, retainRule: { count: 7 }, copyTags: true }] },
    });
  });
  it('refuses schedules DLM does not accept', async () => {
    const { validateSnapshotArgs } = await import('./snapshot-policy.js');
    expect(() => validateSnapshotArgs({ intervalHours: 5 })).toThrow(/one of 1, 2, 3, 4, 6, 8, 12, 24/);
    expect(() => validateSnapshotArgs({ time: '3am' })).toThrow(/HH:MM/);
    expect(() => validateSnapshotArgs({ retain: 0 })).toThrow(/retain/);
  });
});

describe('EcsCluster', () => {
  it('runs one Traefik task in bridge network mode with its ports published one to one, pinned to the Traefik host, with read-only discovery rights', async () => {
    const { EcsCluster } = await import('./ecs-cluster.js');
    const c = new EcsCluster('ecs', { environment: 'prod', region: 'eu-west-1', clusterName: 'berth-eu-west-1', traefikImage: 'repo/berth/traefik:build-3', traefikHostId: 'traefik-eu-west-1' });
    await new Promise<void>((r) => pulumi.all([c.clusterName, c.traefikServiceName]).apply(() => r()));
    await settled(declared);
    const svc = named('aws:ecs/service:Service', 'ecs-traefik');
    expect(svc.inputs).toMatchObject({ desiredCount: 1, launchType: 'EC2', deploymentMinimumHealthyPercent: 0, deploymentMaximumPercent: 100 });
    expect(svc.inputs['placementConstraints']).toEqual([{ type: 'memberOf', expression: 'attribute:berth.host == traefik-eu-west-1' }]);
    const td = named('aws:ecs/taskDefinition:TaskDefinition', 'ecs-traefik');
    // Not host: with host networking IMDS answers the container, hop limit 1 or not (docs/deploy.md).
    expect(td.inputs['networkMode']).toBe('bridge');
    const [container] = JSON.parse(td.inputs['containerDefinitions'] as string) as Array<{ image: string; portMappings: Array<{ hostPort: number; containerPort: number }>; environment: Array<{ name: string; value: string }>; mountPoints: Array<{ containerPath: string }> }>;
    expect(container!.image).toBe('repo/berth/traefik:build-3');
    expect(container!.portMappings.map((p) => [p.containerPort, p.hostPort])).toEqual([[8090, 8090], [8860, 8860], [4000, 4000], [9860, 9860]]);
    expect(container!.environment).toEqual([{ name: 'AWS_REGION', value: 'eu-west-1' }, { name: 'BERTH_ENVIRONMENT', value: 'prod' }]);
    expect(container!.mountPoints.map((m) => m.containerPath)).toEqual(['/etc/traefik/certs', '/etc/traefik/dynamic']);
    const task = statements(named('aws:iam/rolePolicy:RolePolicy', 'ecs-traefik-task'));
    expect(task.flatMap((s) => s.Action).every((a) => /^(ecs|ec2):(List|Describe)/.test(a))).toBe(true);
  });
});

describe('TraefikHost', () => {
  it('launches one instance from the ECS AL2023 AMI, owns the EIP and its DNS name, and may only touch its own EIP, routes and tags', async () => {
    const { TraefikHost } = await import('./traefik-host.js');
    const t = new TraefikHost('edge', {
      environment: 'staging', region: 'eu-west-1', accountId: '111122223333', vpcCidr: '10.1.0.0/16', publicSubnetId: 'subnet-pub0', securityGroupId: 'sg-1',
      privateRouteTableIds: ['rtb-priv'], ecsClusterName: 'berth-eu-west-1', zoneId: 'Z1', zoneName: 'example.com', logGroupName: '/staging/hosts/traefik-eu-west-1',
      artifactUri: 's3://berth-artifacts/berth/build-7.tar.gz', certBucket: 'berth-environment', certBucketRegion: 'eu-west-1', certDomains: ['example.com', '*.example.com'],
    });
    await new Promise<void>((r) => pulumi.all([t.publicIp, t.groupName]).apply(() => r()));
    await settled(declared);
    expect(amiQueries).toContain('/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id');
    const asg = named('aws:autoscaling/group:Group', 'edge-asg');
    expect(asg.inputs).toMatchObject({ minSize: 1, maxSize: 1, desiredCapacity: 1, vpcZoneIdentifiers: ['subnet-pub0'] });
    expect(asg.inputs['tags']).toContainEqual({ key: 'berth:host', value: 'traefik-eu-west-1', propagateAtLaunch: true });
    expect(asg.inputs['instanceRefresh']).toMatchObject({ strategy: 'Rolling' });
    const lt = named('aws:ec2/launchTemplate:LaunchTemplate', 'edge-lt');
    expect(lt.inputs).toMatchObject({ imageId: 'ami-0ecs2023', metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1 } });
    const parts = userdataParts(lt.inputs['userData'] as string);
    expect(parts.map((p) => p.filename)).toEqual(['10-host-prep.sh', '20-traefik-host.sh', '30-berth.sh']);
    for (const p of parts) {
      expect(p.body, p.filename).not.toMatch(/@@/);
      writeFileSync(join(sandbox, p.filename), p.body);
      execFileSync('/usr/bin/shellcheck', ['-s', 'bash', join(sandbox, p.filename)]);
    }
    expect(parts[1]!.body).toContain("ALLOCATION_ID='edge-eip-id'");
    expect(parts[2]!.body).toContain("ECS_CLUSTER_NAME='berth-eu-west-1'");
    expect(parts[2]!.body).toContain("HOST_ID='traefik-eu-west-1'");
    const dns = named('aws:route53/record:Record', 'edge-dns');
    expect(dns.inputs).toMatchObject({ name: 'traefik-eu-west-1.example.com', type: 'A', zoneId: 'Z1' });

    const policy = statements(named('aws:iam/rolePolicy:RolePolicy', 'edge-policy'));
    const eip = policy.find((s) => s.Sid === 'TakeOverElasticIp')!;
    expect(eip.Resource).toContain('arn:aws:ec2:eu-west-1:111122223333:elastic-ip/edge-eip-id');
    expect(eip.Condition).toEqual({ StringEquals: { 'aws:ResourceTag/berth:role': 'traefik' } });
    expect(policy.find((s) => s.Sid === 'PrivateDefaultRoute')!.Resource).toEqual(['arn:aws:ec2:eu-west-1:111122223333:route-table/rtb-priv']);
    expect(policy.find((s) => s.Sid === 'ReadCertificate')!.Resource).toBe('arn:aws:s3:::berth-environment/tls/*');
    // berth here runs the EBS backend too: it shares the account's EC2 schedule, its Region's object only.
    expect(parts[2]!.body).toContain("SCHEDULE_BUCKET='berth-environment'");
    expect(parts[2]!.body).toContain("SCHEDULE_REGION='eu-west-1'");
    expect(policy.find((s) => s.Sid === 'Ec2ScheduleReadWrite')!.Resource).toEqual(['arn:aws:s3:::berth-environment/ec2-schedule/eu-west-1.json', 'arn:aws:s3:::berth-environment/ec2-schedule/eu-west-1.json.check']);
    // berth here publishes the certificate's expiry into the log group its alarm reads (Monitoring with cluster = the host id).
    const metricsGroup = metricsLogGroupName('staging', 'traefik-eu-west-1');
    expect(Buffer.from(/'([A-Za-z0-9+/]+)' \| base64 -d >"\$ROOT\$PROMETHEUS_AGENT_CONFIG"/.exec(parts[0]!.body)![1]!, 'base64').toString('utf8')).toContain(`"log_group_name": "${metricsGroup}"`);
    expect(policy.find((s) => s.Sid === 'MetricsAsEmfLogEvents')!.Resource).toBe(`arn:aws:logs:eu-west-1:111122223333:log-group:${metricsGroup}:*`);
    for (const s of policy) expect(s.Action.filter((a) => a.includes('*')), s.Sid).toEqual([]);
  });
});

describe('TraefikHost policy against its userdata', () => {
  it('allows every AWS CLI call the Traefik host part makes, and its own EC2 actions are all used', () => {
    // Runs after the TraefikHost test above declared `edge`: its rendered part and its policy.
    const lt = named('aws:ec2/launchTemplate:LaunchTemplate', 'edge-lt');
    const part = userdataParts(lt.inputs['userData'] as string).find((p) => p.filename === '20-traefik-host.sh')!;
    const dir = mkdtempSync(join(sandbox, 'edge-cli-'));
    const bin = join(dir, 'bin');
    const calls = join(dir, 'aws.log');
    mkdirSync(bin);
    const stub = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    };
    // replace-route is sent and fails (a table without a default route yet), so create-route follows.
    stub('aws', `echo "$*" >>${calls}; [[ "$2" != replace-route ]]`);
    stub('curl', 'if [[ "$*" == *api/token* ]]; then echo tok; else echo i-0123456789abcdef0; fi');
    stub('systemctl', '');
    stub('install', 'args=(); while [[ $# -gt 0 ]]; do case "$1" in -o|-g) shift 2;; *) args+=("$1"); shift;; esac; done; /usr/bin/install "${args[@]}"');
    writeFileSync(join(dir, 'part.sh'), part.body);
    execFileSync('bash', [join(dir, 'part.sh')], { env: { ...process.env, BERTH_ROOT: join(dir, 'root'), PATH: `${bin}:${process.env['PATH'] ?? ''}` } });

    // CLI call → the IAM requests EC2 authorizes (Service Authorization Reference, Amazon EC2).
    const ec2 = (type: string, id: string) => `arn:aws:ec2:eu-west-1:111122223333:${type}/${id}`;
    const traefik = { 'aws:ResourceTag/berth:role': 'traefik' }; // the EIP and the instance (ASG tags) carry it
    const traefikInstance = { ...traefik, 'aws:ResourceTag/berth:environment': 'staging' }; // the instance also carries its environment
    const arg = (line: string, flag: string) => new RegExp(`${flag} (\\S+)`).exec(line)![1]!;
    const requests = readFileSync(calls, 'utf8').trim().split('\n').flatMap((line) => {
      const [service, op] = line.split(' ');
      if (service !== 'ec2') throw new Error(`no IAM mapping for aws ${line}`);
      switch (op) {
        case 'associate-address': return [
          { action: 'ec2:AssociateAddress', resource: ec2('elastic-ip', arg(line, '--allocation-id')), ctx: traefik },
          { action: 'ec2:AssociateAddress', resource: ec2('instance', arg(line, '--instance-id')), ctx: traefikInstance },
        ];
        case 'modify-instance-attribute': return [{ action: 'ec2:ModifyInstanceAttribute', resource: ec2('instance', arg(line, '--instance-id')), ctx: traefikInstance }];
        case 'replace-route': case 'create-route': return [{ action: op === 'replace-route' ? 'ec2:ReplaceRoute' : 'ec2:CreateRoute', resource: ec2('route-table', arg(line, '--route-table-id')), ctx: {} }];
        default: throw new Error(`no IAM mapping for aws ${line}`);
      }
    });
    const policy = JSON.parse(named('aws:iam/rolePolicy:RolePolicy', 'edge-policy').inputs['policy'] as string) as PolicyDocument;
    expect(requests.filter((r) => !allows([policy], r.action, r.resource, r.ctx)).map((r) => `${r.action} ${r.resource}`)).toEqual([]);
    // The statements of its own (not berth's EBS ones, checked in test/policy-contract.test.ts): each EC2 action is used.
    const own = policy.Statement.filter((st) => ['TakeOverElasticIp', 'NatSourceDestCheck', 'PrivateDefaultRoute'].includes(st.Sid ?? '')).flatMap((st) => [st.Action].flat());
    expect(own.filter((a) => !requests.some((r) => r.action === a))).toEqual([]);
  });
});
