import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONFIG_DEFAULTS } from '../../agent/config.js';
import { allows, type PolicyDocument } from '../../test/aws/iam-policy.js';
import { ofType, recordResources, settled, userdataParts, type Declared } from '../test/pulumi-mocks.js';
import { metricsLogGroupName } from './monitoring-specs.js';

let declared: Declared[] = [];
beforeAll(() => {
  declared = recordResources({ calls: { 'aws:ssm/getParameter:getParameter': (i) => ({ name: i['name'], value: 'ami-0ecs2023', type: 'String' }) } });
});
const sandbox = mkdtempSync(join(tmpdir(), 'berth-unit-'));
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

interface Statement { Sid: string; Action: string[]; Resource: string | string[]; Condition?: Record<string, Record<string, unknown>> }
const named = (type: string, name: string) => ofType(declared, type).find((d) => d.name === name)!;

describe('Host', () => {
  it('launches one tagged instance whose userdata starts berth before the ECS agent with a unique attribute', async () => {
    const { Host } = await import('./host.js');
    const h = new Host('shop-h1', {
      environment: 'prod', cluster: 'shop', hostId: 'shop-h1', region: 'eu-west-1', accountId: '111122223333', ecsClusterName: 'berth-eu-west-1',
      subnetId: 'subnet-priv1', securityGroupId: 'sg-1', artifactUri: 's3://berth-artifacts/berth/build-7.tar.gz', logGroupName: '/prod/hosts/shop',
      ebsKmsKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/ebs', swapMiB: 1024,
    });
    await new Promise<void>((r) => h.groupName.apply(() => r()));
    await settled(declared);
    const asg = named('aws:autoscaling/group:Group', 'shop-h1-asg');
    expect(asg.inputs).toMatchObject({ minSize: 1, maxSize: 1, desiredCapacity: 1, vpcZoneIdentifiers: ['subnet-priv1'] });
    expect(asg.inputs['instanceRefresh']).toBeUndefined(); // a release bump must not replace every host of a cluster at once
    expect(asg.inputs['tags']).toEqual(expect.arrayContaining([
      { key: 'berth:cluster', value: 'shop', propagateAtLaunch: true },
      { key: 'berth:host', value: 'shop-h1', propagateAtLaunch: true },
    ]));
    const lt = named('aws:ec2/launchTemplate:LaunchTemplate', 'shop-h1-lt');
    expect(lt.inputs['imageId']).toBe('ami-0ecs2023');
    expect(lt.inputs['networkInterfaces']).toMatchObject([{ associatePublicIpAddress: 'false' }]);
    // A bootstrap that gives up powers off (userdata/bootstrap.sh): the instance terminates and its group replaces it.
    expect(lt.inputs['instanceInitiatedShutdownBehavior']).toBe('terminate');
    const rootTags = (lt.inputs['tagSpecifications'] as Array<{ tags: Record<string, string> }>).map((t) => Object.keys(t.tags));
    for (const keys of rootTags) expect(keys).not.toContain('berth:host');

    const parts = userdataParts(lt.inputs['userData'] as string);
    expect(parts.map((p) => p.filename)).toEqual(['10-host-prep.sh', '20-berth.sh']);
    for (const p of parts) {
      expect(p.body, p.filename).not.toMatch(/@@/);
      writeFileSync(join(sandbox, p.filename), p.body);
      execFileSync('/usr/bin/shellcheck', ['-s', 'bash', join(sandbox, p.filename)]);
    }
    const berth = parts[1]!.body;
    expect(berth).toContain("SWAP_MIB='1024'");
    expect(berth).toContain('ECS_INSTANCE_ATTRIBUTES={"berth.host":"$HOST_ID"}');
    expect(berth).toContain("HOST_ID='shop-h1'");
    expect(berth.indexOf('systemctl enable --now berth.service')).toBeLessThan(berth.indexOf('ecs.service'));
    expect(parts[0]!.body).toContain("LOG_GROUP='/prod/hosts/shop'");
    // The CloudWatch agent scrapes berth's /metrics into the log group the cluster's alarms read (monitoring-specs.ts).
    const encoded = (name: string) => Buffer.from(new RegExp(`^printf '%s' '([A-Za-z0-9+/]+)' \\| base64 -d >"\\$ROOT\\$${name}"$`, 'm').exec(parts[0]!.body)![1]!, 'base64').toString('utf8');
    const agent = JSON.parse(encoded('PROMETHEUS_AGENT_CONFIG')) as { logs: { metrics_collected: { prometheus: { log_group_name: string; prometheus_config_path: string } } } };
    expect(agent.logs.metrics_collected.prometheus.log_group_name).toBe(metricsLogGroupName('prod', 'shop'));
    expect(parts[0]!.body).toContain(`PROMETHEUS_CONFIG='${agent.logs.metrics_collected.prometheus.prometheus_config_path}'`);
    const scrape = encoded('PROMETHEUS_CONFIG');
    expect(scrape).toContain(`- targets: ['${CONFIG_DEFAULTS.BERTH_HEALTH_ADDR}']`);
    expect(scrape).toContain("host: 'shop-h1'");

    const policy = (JSON.parse(named('aws:iam/rolePolicy:RolePolicy', 'shop-h1-policy').inputs['policy'] as string) as { Statement: Statement[] }).Statement;
    const mutating = /^ec2:(Attach|Detach|Modify|Create|Delete)/;
    for (const s of policy.filter((st) => st.Action.some((a) => mutating.test(a)))) {
      expect(JSON.stringify(s.Condition), s.Sid).toMatch(/berth:|ec2:CreateAction/);
    }
    expect(policy.find((s) => s.Sid === 'DeleteOnlyVolumesOfThisHost')!.Condition!['StringEquals']).toMatchObject({ 'aws:ResourceTag/berth:host': 'shop-h1' });
    expect(policy.find((s) => s.Sid === 'EbsKeyThroughEc2')!.Condition).toEqual({ StringEquals: { 'kms:ViaService': 'ec2.eu-west-1.amazonaws.com' } });
    expect(policy.find((s) => s.Sid === 'ReadRelease')!.Resource).toBe('arn:aws:s3:::berth-artifacts/berth/build-7.tar.gz');
    // The agent may write its metrics' log events into that group only: not the host log group, not another cluster's or environment's.
    const doc = JSON.parse(named('aws:iam/rolePolicy:RolePolicy', 'shop-h1-policy').inputs['policy'] as string) as PolicyDocument;
    const stream = (group: string) => `arn:aws:logs:eu-west-1:111122223333:log-group:${group}:log-stream:i-0123`;
    expect(allows([doc], 'logs:PutLogEvents', stream(metricsLogGroupName('prod', 'shop')), {})).toBe(true);
    expect(allows([doc], 'logs:CreateLogStream', stream(metricsLogGroupName('prod', 'shop')), {})).toBe(true);
    for (const other of ['/prod/hosts/shop', metricsLogGroupName('prod', 'other'), metricsLogGroupName('staging', 'shop')]) {
      expect(allows([doc], 'logs:PutLogEvents', stream(other), {}), other).toBe(false);
    }
    expect(allows([doc], 'cloudwatch:PutMetricData', '*', {})).toBe(false);
  });
  it('refuses a negative swap size', async () => {
    const { Host } = await import('./host.js');
    expect(() => new Host('bad', {
      environment: 'prod', cluster: 'c', hostId: 'h', region: 'eu-west-1', accountId: '1', ecsClusterName: 'e', subnetId: 's', securityGroupId: 'g', artifactUri: 's3://a/b', logGroupName: '/l', swapMiB: -1,
    })).toThrow(/swapMiB/);
  });
});

describe('Cluster', () => {
  it('declares its own ECS cluster, the latency-routed cluster name and a plain record per node scoped by the cluster, all at the Traefik IP', async () => {
    const { Cluster } = await import('./cluster.js');
    const c = new Cluster('shop', { environment: 'prod', cluster: 'shop', region: 'eu-west-1', zoneId: 'Z1', zoneName: 'example.com', traefikIp: '203.0.113.7', nodes: ['n1', 'n2'] });
    await new Promise<void>((r) => c.logGroupName.apply(() => r()));
    await settled(declared);
    expect(ofType(declared, 'aws:ecs/cluster:Cluster').map((e) => e.inputs['name'])).toEqual(['prod-unit-shop']);
    const records = ofType(declared, 'aws:route53/record:Record').filter((d) => d.name.startsWith('shop-'));
    expect(records.map((r) => r.inputs['name']).sort()).toEqual(['n1-shop.example.com', 'n2-shop.example.com', 'shop.example.com']);
    for (const r of records) expect(r.inputs).toMatchObject({ type: 'A', records: ['203.0.113.7'] });
    expect(records.find((r) => r.inputs['name'] === 'shop.example.com')!.inputs).toMatchObject({ setIdentifier: 'eu-west-1', latencyRoutingPolicies: [{ region: 'eu-west-1' }] });
    // A node lives in one region: no other region's stack may add a latency alternative to its name.
    for (const r of records.filter((x) => x.inputs['name'] !== 'shop.example.com')) {
      expect(r.inputs['setIdentifier'], String(r.inputs['name'])).toBeUndefined();
      expect(r.inputs['latencyRoutingPolicies'], String(r.inputs['name'])).toBeUndefined();
    }
  });
  it('gives the same node name in two clusters two different DNS names', async () => {
    const { Cluster } = await import('./cluster.js');
    const before = ofType(declared, 'aws:route53/record:Record').length;
    for (const cluster of ['blue', 'green']) new Cluster(cluster, { environment: 'prod', cluster, region: 'eu-west-1', zoneId: 'Z1', zoneName: 'example.com', traefikIp: '203.0.113.7', nodes: ['db1'] });
    await settled(declared);
    const names = ofType(declared, 'aws:route53/record:Record').slice(before).map((r) => r.inputs['name']);
    expect(names).toContain('db1-blue.example.com');
    expect(names).toContain('db1-green.example.com');
    expect(new Set(names).size).toBe(names.length);
  });
});
