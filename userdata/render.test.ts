import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { multipartUserdata, renderBootstrap, renderTemplate } from './render.js';

const sandbox = mkdtempSync(join(tmpdir(), 'berth-render-'));
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

const shellcheck = (name: string, script: string) => {
  const file = join(sandbox, name);
  writeFileSync(file, script);
  execFileSync('/usr/bin/shellcheck', ['-s', 'bash', file], { encoding: 'utf8' });
};

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
    const prep = renderTemplate('host-prep.sh', { LOG_GROUP: '/berth/hosts/shop' });
    const traefik = renderTemplate('traefik-host.sh', traefikValues);
    for (const s of [prep, traefik]) expect(s).not.toMatch(/@@/);
    shellcheck('host-prep.sh', prep);
    shellcheck('traefik-host.sh', traefik);
  });
  it('names a missing value and refuses values that could escape their quotes', () => {
    expect(() => renderTemplate('traefik-host.sh', { ...traefikValues, VPC_CIDR: undefined as unknown as string })).toThrow(/@@VPC_CIDR@@ has no value/);
    expect(() => renderTemplate('host-prep.sh', { LOG_GROUP: "x' ; curl evil" })).toThrow(/not allowed/);
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
});

describe('host-prep.sh', () => {
  it('writes a CloudWatch agent config that is valid JSON shipping to the log group, and starts the agent with it', () => {
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
    writeFileSync(file, renderTemplate('host-prep.sh', { LOG_GROUP: '/berth/hosts/shop' }));
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
  });
});
