import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, parseEnvFile } from '../agent/config.js';
import { renderBootstrap } from './render.js';

const values = { CLUSTER: 'shop', HOST_ID: 'shop-h1', REGION: 'eu-west-1', ARTIFACT_URI: 's3://artifacts/berth.tgz', SWAP_MIB: 0 };
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
  // No EC2 host here: aws/systemctl are stubs on PATH (the one place host commands are stubbed).
  it('installs berth before starting ECS, and a second run changes nothing', () => {
    const root = join(sandbox, 'root');
    const bin = join(sandbox, 'bin');
    const pkg = join(sandbox, 'pkg');
    mkdirSync(join(pkg, 'userdata'), { recursive: true });
    writeFileSync(join(pkg, 'userdata', 'berth.service'), '[Service]\nExecStart=/opt/berth/bin/berth\n');
    const tarball = join(sandbox, 'berth.tar.gz');
    execFileSync('tar', ['-czf', tarball, '-C', pkg, '.']);
    mkdirSync(bin);
    mkdirSync(join(root, 'run/docker/plugins'), { recursive: true });
    const calls = join(sandbox, 'calls.log');
    writeFileSync(join(bin, 'aws'), `#!/bin/bash\necho "aws $*" >>${calls}\ncp ${tarball} "\${@: -1}"\n`);
    writeFileSync(join(bin, 'systemctl'), `#!/bin/bash\necho "systemctl $*" >>${calls}\nif [[ "$*" == *berth.service* ]]; then python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' ${root}/run/docker/plugins/berth.sock 2>/dev/null || true; fi\n`);
    chmodSync(join(bin, 'aws'), 0o755);
    chmodSync(join(bin, 'systemctl'), 0o755);
    const file = join(sandbox, 'rendered.sh');
    writeFileSync(file, script);
    const run = () => execFileSync('bash', [file], { env: { ...process.env, BERTH_ROOT: root, PATH: `${bin}:${process.env['PATH'] ?? ''}` }, encoding: 'utf8' });
    run();
    const first = snapshot(root);
    const env = readFileSync(join(root, 'etc/berth/berth.env'), 'utf8');
    // The file the agent reads, through the agent's own schema: a setting it refuses would stop berth at boot.
    const config = loadConfig(parseEnvFile(env));
    expect(config.BERTH_HOST_ID).toBe('shop-h1');
    expect(config.BERTH_BACKEND).toBe('ebs');
    // References a killed dockerd never Unmounts are dropped by asking the engine (docs/volumes.md, "References after a crash").
    expect(config.BERTH_DOCKER_HOST).toBe('unix:///var/run/docker.sock');
    expect((statSync(join(root, 'etc/berth/berth.env')).mode & 0o777).toString(8)).toBe('600');
    expect(readFileSync(join(root, 'etc/ecs/ecs.config'), 'utf8')).toContain('ECS_INSTANCE_ATTRIBUTES={"berth.host":"shop-h1"}');
    const log = readFileSync(calls, 'utf8').split('\n');
    expect(log.findIndex((l) => l.includes('berth.service'))).toBeLessThan(log.findIndex((l) => l.includes('ecs.service')));
    run();
    expect(snapshot(root)).toEqual(first);
  });
});
