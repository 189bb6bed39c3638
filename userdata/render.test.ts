import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLOUDWATCH_PROMETHEUS_CONFIG_PATH, multipartUserdata, renderBootstrap, renderHostPrep, renderTemplate } from './render.js';

const sandbox = mkdtempSync(join(tmpdir(), 'berth-render-'));
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

const shellcheck = (name: string, script: string) => {
  const file = join(sandbox, name);
  writeFileSync(file, script);
  execFileSync('/usr/bin/shellcheck', ['-s', 'bash', file], { encoding: 'utf8' });
};

// Content with what a shell would act on ($, quotes, backslash, newlines): it must arrive byte for byte.
const cloudWatch = {
  agentJson: JSON.stringify({ logs: { metrics_collected: { prometheus: { log_group_name: '/prod/metrics/shop', prometheus_config_path: CLOUDWATCH_PROMETHEUS_CONFIG_PATH, x: "it's $HOME `id` \\" } } } }, null, 2),
  prometheusYaml: "scrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['127.0.0.1:9470']\n",
};
const prepValues = { LOG_GROUP: '/berth/hosts/shop', cloudWatch };

const traefikValues = {
  REGION: 'eu-west-1', ALLOCATION_ID: 'eipalloc-0abc', ROUTE_TABLE_IDS: 'rtb-1,rtb-2', VPC_CIDR: '10.1.0.0/16',
  CERT_BUCKET: 'berth-environment-x', CERT_REGION: 'us-east-1', CERT_DOMAINS: 'example.com,*.example.com',
};

describe('renderBootstrap', () => {
  it('joins the ECS cluster given, or the berth cluster when none is', () => {
    const base = { ENVIRONMENT: 'prod', CLUSTER: 'shop', HOST_ID: 'shop-h1', REGION: 'eu-west-1', ARTIFACT_URI: 's3://a/berth.tgz', SWAP_MIB: 1024 };
    expect(renderBootstrap(base)).toContain("ECS_CLUSTER_NAME='shop'");
    expect(renderBootstrap({ ...base, ECS_CLUSTER: 'berth-eu-west-1' })).toContain("ECS_CLUSTER_NAME='berth-eu-west-1'");
  });
});

describe('renderTemplate', () => {
  it('renders host-prep.sh and traefik-host.sh with no placeholder left, and both pass shellcheck', () => {
    const prep = renderHostPrep(prepValues);
    const traefik = renderTemplate('traefik-host.sh', traefikValues);
    for (const s of [prep, traefik]) expect(s).not.toMatch(/@@/);
    shellcheck('host-prep.sh', prep);
    shellcheck('traefik-host.sh', traefik);
  });
  it('names a missing value and refuses values that could escape their quotes', () => {
    expect(() => renderTemplate('traefik-host.sh', { ...traefikValues, VPC_CIDR: undefined as unknown as string })).toThrow(/@@VPC_CIDR@@ has no value/);
    expect(() => renderHostPrep({ ...prepValues, LOG_GROUP: "x' ; curl evil" })).toThrow(/not allowed/);
  });
});

describe('multipartUserdata', () => {
  it('orders shell parts by name in one MIME document cloud-init can split', () => {
    const doc = multipartUserdata([{ filename: '20-b.sh', content: '#!/bin/bash\necho b\n' }, { filename: '10-a.sh', content: '#!/bin/bash\necho a\n' }]);
    const boundary = /boundary="([^"]+)"/.exec(doc)![1]!;
    const parts = doc.split(`--${boundary}`).slice(1, -1);
    expect(parts).toHaveLength(2);
    expect(parts[0]).toContain('filename="10-a.sh"');
    expect(parts[0]).toContain('Content-Type: text/x-shellscript');
    expect(parts[0]!.split('\n\n')[1]!.trim()).toBe('#!/bin/bash\necho a');
    expect(doc.trimEnd().endsWith(`--${boundary}--`)).toBe(true);
    expect(() => multipartUserdata([{ filename: 'A b', content: '' }])).toThrow(/part name/);
  });
});

// No EC2 host here: aws, curl and systemctl are stubs on PATH (the one place host commands are stubbed).
describe('traefik-host.sh', () => {
  it('takes the EIP, turns the source/dest check off, routes every private table here and writes NAT and certificate settings', () => {
    const root = join(sandbox, 'root');
    const bin = join(sandbox, 'bin');
    const calls = join(sandbox, 'calls.log');
    mkdirSync(bin, { recursive: true });
    mkdirSync(root, { recursive: true });
    const stub = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/bin/bash\necho "${name} $*" >>${calls}\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    };
    stub('curl', 'if [[ "$*" == *api/token* ]]; then echo tok; else echo i-0123; fi');
    // replace-route fails on a table without a default route yet: create-route follows.
    stub('aws', 'if [[ "$*" == *replace-route*rtb-2* ]]; then exit 1; fi');
    stub('systemctl', '');
    stub('install', 'args=(); while [[ $# -gt 0 ]]; do case "$1" in -o|-g) shift 2;; *) args+=("$1"); shift;; esac; done; /usr/bin/install "${args[@]}"');
    const file = join(sandbox, 'traefik.sh');
    writeFileSync(file, renderTemplate('traefik-host.sh', traefikValues));
    execFileSync('bash', [file], { env: { ...process.env, BERTH_ROOT: root, PATH: `${bin}:${process.env['PATH'] ?? ''}` }, encoding: 'utf8' });
    const log = readFileSync(calls, 'utf8');
    expect(log).toContain('aws ec2 associate-address --region eu-west-1 --allocation-id eipalloc-0abc --instance-id i-0123 --allow-reassociation');
    expect(log).toContain('aws ec2 modify-instance-attribute --region eu-west-1 --instance-id i-0123 --no-source-dest-check');
    expect(log).toContain('replace-route --region eu-west-1 --route-table-id rtb-1 --destination-cidr-block 0.0.0.0/0 --instance-id i-0123');
    expect(log).toContain('create-route --region eu-west-1 --route-table-id rtb-2 --destination-cidr-block 0.0.0.0/0 --instance-id i-0123');
    expect(log).not.toContain('create-route --region eu-west-1 --route-table-id rtb-1');
    expect(log).toContain('systemctl enable --now berth-nat.service');
    const nat = readFileSync(join(root, 'usr/local/sbin/berth-nat'), 'utf8');
    expect(nat).toContain("-s '10.1.0.0/16' -o \"$iface\" -j MASQUERADE");
    shellcheck('berth-nat', nat);
    expect(readFileSync(join(root, 'etc/berth/certificates.env'), 'utf8')).toBe('BERTH_CERT_BUCKET=berth-environment-x\nBERTH_AWS_REGION=us-east-1\nBERTH_CERT_DOMAINS=example.com,*.example.com\nBERTH_CERT_FILE_OWNER=65532:65532\n');
    expect((statSync(join(root, 'etc/berth/certificates.env')).mode & 0o777).toString(8)).toBe('600');
    expect(readFileSync(join(root, 'etc/systemd/system/berth.service.d/certificates.conf'), 'utf8')).toContain('EnvironmentFile=/etc/berth/certificates.env');
  });
  it('powers the instance off when a step fails for good (the EIP cannot be taken), and keep-failed-host keeps it', () => {
    const root = join(sandbox, 'fail-root');
    const bin = join(sandbox, 'fail-bin');
    const calls = join(sandbox, 'fail-calls.log');
    mkdirSync(bin, { recursive: true });
    mkdirSync(join(root, 'etc/berth'), { recursive: true });
    const stub = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/bin/bash\necho "${name} $*" >>${calls}\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    };
    stub('curl', 'if [[ "$*" == *api/token* ]]; then echo tok; else echo i-0123; fi');
    stub('aws', 'if [[ "$*" == *associate-address* ]]; then exit 255; fi');
    stub('shutdown', '');
    stub('systemctl', '');
    const file = join(sandbox, 'traefik-fail.sh');
    writeFileSync(file, renderTemplate('traefik-host.sh', traefikValues));
    const run = () => spawnSync('bash', [file], { env: { ...process.env, BERTH_ROOT: root, BERTH_RETRY_BUDGET_SECONDS: '2', PATH: `${bin}:${process.env['PATH'] ?? ''}` }, encoding: 'utf8' });
    const first = run();
    expect(first.status).not.toBe(0);
    expect(first.stderr).toMatch(/associate eipalloc-0abc: failed \d+ times/);
    expect(first.stderr).toMatch(/powering off; the Auto Scaling group replaces this instance/);
    expect(readFileSync(calls, 'utf8')).toMatch(/^shutdown -P \+2 /m);
    expect(readFileSync(calls, 'utf8')).not.toContain('modify-instance-attribute');
    writeFileSync(calls, '');
    writeFileSync(join(root, 'etc/berth/keep-failed-host'), '');
    const kept = run();
    expect(kept.status).not.toBe(0);
    expect(kept.stderr).toMatch(/keep-failed-host exists: this instance stays/);
    expect(readFileSync(calls, 'utf8')).not.toContain('shutdown');
  });
});

describe('host-prep.sh', () => {
  it('writes a CloudWatch agent config that is valid JSON shipping to the log group, starts the agent with it, and appends berth\'s metrics config', () => {
    const root = join(sandbox, 'prep-root');
    const bin = join(sandbox, 'prep-bin');
    const calls = join(sandbox, 'prep-calls.log');
    const ctlDir = join(root, 'opt/aws/amazon-cloudwatch-agent/bin');
    mkdirSync(bin, { recursive: true });
    mkdirSync(ctlDir, { recursive: true });
    const stub = (path: string, body: string) => {
      writeFileSync(path, `#!/bin/bash\necho "$(basename "$0") $*" >>${calls}\n${body}\n`);
      chmodSync(path, 0o755);
    };
    stub(join(bin, 'node'), 'if [[ "$1" == "-p" ]]; then echo 20; else echo v20.19.0; fi');
    stub(join(bin, 'rpm'), 'exit 0');
    stub(join(bin, 'dnf'), 'exit 0');
    stub(join(ctlDir, 'amazon-cloudwatch-agent-ctl'), '');
    const file = join(sandbox, 'prep.sh');
    writeFileSync(file, renderHostPrep(prepValues));
    execFileSync('bash', [file], { env: { ...process.env, BERTH_ROOT: root, PATH: `${bin}:${process.env['PATH'] ?? ''}` }, encoding: 'utf8' });
    const config = JSON.parse(readFileSync(join(root, 'opt/aws/amazon-cloudwatch-agent/etc/berth.json'), 'utf8')) as {
      metrics: { append_dimensions: Record<string, string>; metrics_collected: Record<string, unknown> };
      logs: { logs_collected: { files: { collect_list: Array<{ file_path: string; log_group_name: string }> } } };
    };
    expect(config.metrics.append_dimensions['InstanceId']).toBe('${aws:InstanceId}');
    expect(Object.keys(config.metrics.metrics_collected).sort()).toEqual(['disk', 'mem', 'swap']);
    const files = config.logs.logs_collected.files.collect_list;
    expect(files.map((f) => f.file_path)).toContain('/var/log/ecs/ecs-agent.log');
    expect(new Set(files.map((f) => f.log_group_name))).toEqual(new Set(['/berth/hosts/shop']));
    const log = readFileSync(calls, 'utf8');
    expect(log).not.toContain('dnf'); // Node 20 and the agent are there already: nothing installed
    expect(log).toContain(`amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:${root}/opt/aws/amazon-cloudwatch-agent/etc/berth.json`);
    // berth's metrics: both files as given (at most two padding newlines), the second config appended after the first.
    const promAgent = readFileSync(join(root, 'opt/aws/amazon-cloudwatch-agent/etc/berth-prometheus.json'), 'utf8');
    expect(promAgent.trimEnd()).toBe(cloudWatch.agentJson);
    expect(JSON.parse(promAgent)).toEqual(JSON.parse(cloudWatch.agentJson));
    expect(readFileSync(join(root, CLOUDWATCH_PROMETHEUS_CONFIG_PATH), 'utf8').trimEnd()).toBe(cloudWatch.prometheusYaml.trimEnd());
    const append = `amazon-cloudwatch-agent-ctl -a append-config -m ec2 -s -c file:${root}/opt/aws/amazon-cloudwatch-agent/etc/berth-prometheus.json`;
    expect(log).toContain(append);
    expect(log.indexOf('-a fetch-config')).toBeLessThan(log.indexOf(append));
  });
});
