import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fakeRelease } from '../test/helpers/boot.js';
import { renderBootstrap, renderHostPrep, renderTemplate } from './render.js';

/**
 * The userdata parts run in order on a machine that has only what the AL2023 ECS-optimized AMI
 * has: it is built from al2023-minimal (amazon-ecs-ami `release-al2023.auto.pkrvars.hcl`),
 * whose packages give bash, coreutils, util-linux, tar, gzip, grep, sed, curl, dnf, rpm,
 * systemd and iproute; the ECS AMI adds docker and iptables. No AWS CLI, no Node.js. A command
 * the scripts call that is neither there nor installed by an earlier `dnf install` is recorded by
 * bash's command_not_found_handle and fails the test.
 */
const BASE = [
  'bash', 'sh', 'cat', 'chmod', 'cp', 'cut', 'echo', 'env', 'ln', 'mkdir', 'mktemp', 'mv', 'rm', 'seq', 'sha256sum', 'sleep',
  'tar', 'gzip', 'basename', 'dirname', 'grep', 'sed', 'printf', 'test', 'true', 'false', 'stat', 'touch', 'date', 'head', 'tr', 'wc', 'sort', 'fallocate', 'mkswap', 'swapon', 'base64',
  'shutdown',
];
/** Host services the sandbox cannot run (and coreutils' install, whose -o/-g need users this machine lacks): stand-ins recording their calls. */
const HOST_STUBS = ['systemctl', 'shutdown', 'curl', 'dnf', 'rpm', 'ip', 'iptables', 'sysctl', 'install'];
/** What each package a script installs puts on PATH (AL2023 package names). */
const PACKAGES: Readonly<Record<string, readonly string[]>> = { 'awscli-2': ['aws'], 'amazon-cloudwatch-agent': [] };

const sandbox = mkdtempSync(join(tmpdir(), 'berth-ami-'));
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

describe('userdata on the AL2023 ECS-optimized AMI', () => {
  for (const host of ['berth host', 'Traefik host'] as const) {
    it(`${host}: every command the parts call is in the AMI or installed by an earlier part`, () => {
      const dir = mkdtempSync(join(sandbox, 'run-'));
      const bin = join(dir, 'bin');
      const root = join(dir, 'root');
      const calls = join(dir, 'calls.log');
      const missing = join(dir, 'missing.log');
      mkdirSync(bin);
      mkdirSync(join(root, 'run/docker/plugins'), { recursive: true });
      mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
      for (const c of BASE.filter((b) => !HOST_STUBS.includes(b))) {
        const real = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'].map((d) => join(d, c)).find(existsSync);
        if (real) symlinkSync(real, join(bin, c));
      }
      const stub = (path: string, body: string) => {
        // Never write through a symlink to a real binary.
        if (existsSync(path) && lstatSync(path).isSymbolicLink()) throw new Error(`${path} links to a real command: not stubbing it`);
        writeFileSync(path, `#!/bin/bash\necho "$(/usr/bin/basename "$0") $*" >>${calls}\n${body}\n`);
        chmodSync(path, 0o755);
      };
      const tarball = fakeRelease(dir);
      // What installing each package puts on PATH.
      const installed: Record<string, string> = {
        aws: '',
      };
      const installers = Object.entries(PACKAGES).map(([p, cmds]) => `  ${p}) ${[...cmds.map((c) => `/usr/bin/rm -f ${bin}/${c}; /usr/bin/cp ${join(dir, 'pkg-bin', c)} ${bin}/${c};`), p === 'amazon-cloudwatch-agent' ? `/usr/bin/mkdir -p ${root}/opt/aws/amazon-cloudwatch-agent/bin; /usr/bin/cp ${join(dir, 'pkg-bin', 'cwagent-ctl')} ${root}/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl; /usr/bin/touch ${dir}/cwagent-installed;` : ''].join(' ')} ;;`).join('\n');
      mkdirSync(join(dir, 'pkg-bin'));
      for (const [c, body] of Object.entries(installed)) stub(join(dir, 'pkg-bin', c), body);
      stub(join(dir, 'pkg-bin', 'cwagent-ctl'), '');
      stub(join(bin, 'dnf'), `[[ "$1" == install ]] || exit 1\nfor p in "\${@:2}"; do case "$p" in -y) ;;\n${installers}\n  *) echo "no package $p" >&2; exit 1 ;;\nesac; done`);
      stub(join(bin, 'rpm'), `[[ -f ${dir}/cwagent-installed ]]`);
      // IMDS (token, instance id, the instance profile's role and credentials) and S3 (the release, written to -o).
      stub(join(bin, 'curl'), [
        'case "$*" in',
        '  *api/token*) echo tok ;;',
        '  *security-credentials/berth-host*) printf \'{\\n  "AccessKeyId" : "ASIAX",\\n  "SecretAccessKey" : "s",\\n  "Token" : "t"\\n}\\n\' ;;',
        '  *security-credentials/*) echo berth-host ;;',
        '  *instance-id*) echo i-0123 ;;',
        `  *--aws-sigv4*) while [[ "$1" != -o ]]; do shift; done; /usr/bin/cp ${tarball} "$2" ;;`,
        '  *) exit 22 ;;',
        'esac',
      ].join('\n'));
      stub(join(bin, 'systemctl'), `if [[ "$*" == *"--now berth.service"* ]]; then /usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' ${root}/run/docker/plugins/berth.sock; fi`);
      for (const c of ['ip', 'iptables', 'sysctl']) stub(join(bin, c), '');
      // install -o/-g 65532 needs root and that user: drop the owner, keep the rest.
      stub(join(bin, 'install'), 'args=(); while [[ $# -gt 0 ]]; do case "$1" in -o|-g) shift 2;; *) args+=("$1"); shift;; esac; done; /usr/bin/install "${args[@]}"');
      const bashEnv = join(dir, 'bash-env');
      writeFileSync(bashEnv, `command_not_found_handle() { echo "$1" >>${missing}; echo "$1: command not found" >&2; return 127; }\n`);

      const logGroup = '/prod/hosts/shop';
      const parts = host === 'berth host'
        ? [renderHostPrep({ LOG_GROUP: logGroup, cloudWatch: { agentJson: '{}', prometheusYaml: 'scrape_configs: []\n' } }), renderBootstrap({ ENVIRONMENT: 'prod', CLUSTER: 'shop', HOST_ID: 'shop-h1', REGION: 'eu-west-1', ARTIFACT_URI: 's3://a/berth.tgz', SWAP_MIB: 0 })]
        : [
            renderHostPrep({ LOG_GROUP: logGroup, cloudWatch: { agentJson: '{}', prometheusYaml: 'scrape_configs: []\n' } }),
            renderTemplate('traefik-host.sh', { REGION: 'eu-west-1', ALLOCATION_ID: 'eipalloc-1', ROUTE_TABLE_IDS: 'rtb-1', VPC_CIDR: '10.1.0.0/16', CERT_BUCKET: 'b', CERT_REGION: 'eu-west-1', CERT_DOMAINS: 'example.com' }),
            renderBootstrap({ ENVIRONMENT: 'prod', CLUSTER: 'traefik-eu-west-1', HOST_ID: 'traefik-eu-west-1', REGION: 'eu-west-1', ARTIFACT_URI: 's3://a/berth.tgz', SWAP_MIB: 0 }),
          ];
      const env = { PATH: `${bin}:${root}/usr/local/bin`, BERTH_ROOT: root, BASH_ENV: bashEnv, HOME: dir, TMPDIR: dir, BERTH_RETRY_BUDGET_SECONDS: '0' };
      parts.forEach((body, i) => {
        const file = join(dir, `part-${i}.sh`);
        writeFileSync(file, body);
        try {
          execFileSync('/bin/bash', [file], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        } catch (e) {
          throw new Error(`part ${i} failed: ${String((e as { stderr?: string }).stderr ?? e)}`);
        }
      });
      expect(existsSync(missing) ? readFileSync(missing, 'utf8').trim().split('\n') : []).toEqual([]);
      const log = readFileSync(calls, 'utf8');
      // Nothing from a package repository for berth (its release brings its own Node.js); the AWS CLI only where a part calls it, before the first call.
      expect(log).not.toMatch(host === 'berth host' ? /dnf install .*(nodejs|awscli)/ : /dnf install .*nodejs/);
      if (host === 'Traefik host') expect(log.indexOf('dnf install -y awscli-2')).toBeLessThan(log.indexOf('aws '));
      expect(log).toContain('curl -sSf --connect-timeout 5 --max-time 600 -o');
      expect(log).not.toContain('shutdown');
    });
  }
});
