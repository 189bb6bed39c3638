import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseEnvFile } from '../agent/config.js';
import { startImdsServer, type ImdsServer } from '../test/aws/imds-server.js';
import { fakeRelease, hostStubs, S3RVER_CREDENTIALS, startS3 } from '../test/helpers/boot.js';
import { renderBootstrap } from './render.js';

const values = {
  ENVIRONMENT: 'prod', CLUSTER: 'shop', HOST_ID: 'shop-h1', REGION: 'eu-west-1', ARTIFACT_URI: 's3://artifacts/berth.tgz', SWAP_MIB: 0,
  SCHEDULE_BUCKET: 'berth-environment-x', SCHEDULE_REGION: 'us-east-1',
};
const sandbox = mkdtempSync(join(tmpdir(), 'berth-infra-userdata-'));
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

function snapshot(dir: string, out: Record<string, string> = {}): Record<string, string> {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    const st = statSync(p);
    if (st.isDirectory()) snapshot(p, out);
    else out[p] = `${(st.mode & 0o777).toString(8)} ${st.mtimeMs} ${st.isFile() ? readFileSync(p, 'utf8') : 'special'}`;
  }
  return out;
}

describe('bootstrap.sh', () => {
  const script = renderBootstrap(values);
  it('renders with no unresolved placeholders and refuses unsafe values', () => {
    expect(script).not.toMatch(/@@/);
    expect(script).toContain("HOST_ID='shop-h1'");
    expect(() => renderBootstrap({ ...values, CLUSTER: "x'; rm -rf /" })).toThrow(/not allowed/);
  });
  it('passes shellcheck', () => {
    const file = join(sandbox, 'rendered.sh');
    writeFileSync(file, script);
    expect(() => execFileSync('/usr/bin/shellcheck', ['-s', 'bash', file], { encoding: 'utf8' })).not.toThrow();
  });
  // No EC2 host here: IMDS and S3 are local servers (s3rver checks the request's SigV4
  // signature), systemctl and shutdown are stand-ins on PATH; curl, tar and sha256sum are real.
  let s3: { endpoint: string; close: () => Promise<void> } | undefined;
  let imds: ImdsServer | undefined;
  let strangerImds: ImdsServer | undefined;
  beforeAll(async () => {
    s3 = await startS3(sandbox, '127.0.0.1', 'artifacts', { 'berth.tgz': fakeRelease(sandbox), 'damaged.tgz': fakeRelease(sandbox, { damage: true }) });
    imds = await startImdsServer({ instanceId: 'i-0boot', az: 'eu-west-1a', region: 'eu-west-1', credentials: S3RVER_CREDENTIALS });
    // An instance profile S3 does not know: every signed GET is refused (403).
    strangerImds = await startImdsServer({ instanceId: 'i-0stranger', az: 'eu-west-1a', region: 'eu-west-1' });
  });
  afterAll(async () => {
    await s3?.close();
    await imds?.close();
    await strangerImds?.close();
  });
  const boot = (name: string, rendered: string, imdsEndpoint = imds!.endpoint) => {
    const dir = join(sandbox, name);
    const root = join(dir, 'root');
    const bin = join(dir, 'bin');
    const calls = join(dir, 'calls.log');
    mkdirSync(join(root, 'run/docker/plugins'), { recursive: true });
    hostStubs(bin, calls, root);
    const file = join(dir, 'rendered.sh');
    writeFileSync(file, rendered);
    const env = { ...process.env, BERTH_ROOT: root, PATH: `${bin}:${process.env['PATH'] ?? ''}`, BERTH_IMDS_ENDPOINT: imdsEndpoint, BERTH_S3_ENDPOINT: s3!.endpoint, BERTH_RETRY_BUDGET_SECONDS: '2' };
    // Not spawnSync: the IMDS and S3 servers answer from this process's event loop.
    const run = async () => { const r = await execa('bash', [file], { env, extendEnv: false, reject: false }); return { status: r.exitCode, stderr: r.stderr }; };
    const callLog = () => (existsSync(calls) ? readFileSync(calls, 'utf8') : '');
    return { root, run, callLog };
  };

  it('installs the release read from S3 with a signed GET before starting ECS, and a second run changes nothing', async () => {
    const { root, run, callLog } = boot('good', script);
    const res = await run();
    expect(res.stderr).toContain('installed berth');
    expect(res.status).toBe(0);
    const first = snapshot(root);
    expect(readFileSync(join(root, 'opt/berth/userdata/berth.service'), 'utf8')).toContain('/opt/berth/bin/node');
    const env = readFileSync(join(root, 'etc/berth/berth.env'), 'utf8');
    // The file the agent reads, through the agent's own schema: a setting it refuses would stop berth at boot.
    const config = loadConfig(parseEnvFile(env));
    expect(config.BERTH_HOST_ID).toBe('shop-h1');
    expect(config.BERTH_ENVIRONMENT).toBe('prod');
    expect(config.BERTH_BACKEND).toBe('ebs');
    // References a killed dockerd never Unmounts are dropped by asking the engine (docs/volumes.md, "References after a crash").
    expect(config.BERTH_DOCKER_HOST).toBe('unix:///var/run/docker.sock');
    // The account's EC2 schedule in the environment bucket, read with an S3 client in the bucket's Region.
    expect(config.BERTH_EC2_SCHEDULE_BUCKET).toBe('berth-environment-x');
    expect(config.BERTH_AWS_REGION).toBe('us-east-1');
    expect((statSync(join(root, 'etc/berth/berth.env')).mode & 0o777).toString(8)).toBe('600');
    expect(readFileSync(join(root, 'etc/ecs/ecs.config'), 'utf8')).toContain('ECS_INSTANCE_ATTRIBUTES={"berth.host":"shop-h1"}');
    const log = callLog().split('\n');
    expect(log.findIndex((l) => l.includes('berth.service'))).toBeLessThan(log.findIndex((l) => l.includes('ecs.service')));
    expect(callLog()).not.toContain('shutdown');
    expect((await run()).status).toBe(0);
    expect(snapshot(root)).toEqual(first);
  });

  it('without a schedule bucket (an older regional stack) the agent is configured to pace its EC2 calls alone', async () => {
    const { SCHEDULE_BUCKET: _b, SCHEDULE_REGION: _r, ...older } = values;
    const { root, run } = boot('no-schedule', renderBootstrap(older));
    expect((await run()).status).toBe(0);
    const config = loadConfig(parseEnvFile(readFileSync(join(root, 'etc/berth/berth.env'), 'utf8')));
    expect(config.BERTH_EC2_SCHEDULE_BUCKET).toBeUndefined();
    expect(config.BERTH_AWS_REGION).toBeUndefined();
    expect(config.BERTH_HOST_ID).toBe('shop-h1');
  });

  it('a release that does not match its own SHA256SUMS is not installed: ECS is not started and the instance powers off', async () => {
    const { root, run, callLog } = boot('damaged', renderBootstrap({ ...values, ARTIFACT_URI: 's3://artifacts/damaged.tgz' }));
    const res = await run();
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/files differ from its SHA256SUMS/);
    expect(res.stderr).toMatch(/powering off; the Auto Scaling group replaces this instance/);
    expect(existsSync(join(root, 'opt/berth'))).toBe(false);
    expect(existsSync(join(root, 'etc/ecs/ecs.config'))).toBe(false);
    expect(callLog()).toMatch(/^shutdown -P \+2 /m);
    expect(callLog()).not.toContain('ecs.service');
  });

  it('credentials S3 refuses are retried, then the instance powers off; keep-failed-host keeps it', async () => {
    const { root, run, callLog } = boot('refused', script, strangerImds!.endpoint);
    const res = await run();
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/returned error: 403/);
    expect(res.stderr).toMatch(/GET s3:\/\/artifacts\/berth\.tgz: failed \(try 1\); again in 1s/);
    expect(res.stderr).toMatch(/GET s3:\/\/artifacts\/berth\.tgz: failed \d+ times in \d+s; giving up/);
    expect(callLog()).toMatch(/^shutdown -P \+2 /m);
    mkdirSync(join(root, 'etc/berth'), { recursive: true });
    writeFileSync(join(root, 'etc/berth/keep-failed-host'), '');
    const kept = await run();
    expect(kept.status).not.toBe(0);
    expect(kept.stderr).toMatch(/keep-failed-host exists: this instance stays/);
    expect(callLog().match(/^shutdown /gm)).toHaveLength(1);
  });
});
