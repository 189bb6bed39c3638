import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/agent.js';
import { loadConfig } from '../agent/config.js';
import { silentLogger } from '../lib/logger.js';
import { processRunner, type Runner } from '../lib/exec.js';
import { agentEnv, uniquePluginName } from './helpers/agent.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const NOBODY = 65534;

/** GETs each path as another user (nobody), the way any local user could. */
async function fetchAs(uid: number, base: string, paths: string[]): Promise<Record<string, { status: number; body: string }>> {
  const script = `(async () => { const out = {}; for (const p of ${JSON.stringify(paths)}) { const r = await fetch(${JSON.stringify(base)} + p); out[p] = { status: r.status, body: await r.text() }; } process.stdout.write(JSON.stringify(out)); })()`;
  const { stdout } = await run(process.execPath, ['-e', script], { uid, gid: uid, cwd: '/', env: { PATH: process.env.PATH ?? '' } });
  return JSON.parse(stdout) as Record<string, { status: number; body: string }>;
}

describe('health endpoint address', () => {
  it('refuses a non-loopback BERTH_HEALTH_ADDR unless BERTH_HEALTH_ALLOW_REMOTE=true says so', () => {
    expect(() => loadConfig({ BERTH_HEALTH_ADDR: '0.0.0.0:9470' })).toThrow(
      /BERTH_HEALTH_ADDR: is not a loopback address, so other hosts could reach the health endpoint; .*BERTH_HEALTH_ALLOW_REMOTE=true.*\(got "0\.0\.0\.0:9470"\)/,
    );
    expect(() => loadConfig({ BERTH_HEALTH_ADDR: '10.1.2.3:9470', BERTH_BACKEND: 'nfs' })).toThrow(/BERTH_BACKEND[\s\S]*BERTH_HEALTH_ADDR: is not a loopback address/);
    expect(loadConfig({ BERTH_HEALTH_ADDR: '0.0.0.0:9470', BERTH_HEALTH_ALLOW_REMOTE: 'true' }).BERTH_HEALTH_ADDR).toBe('0.0.0.0:9470');
    expect(loadConfig({ BERTH_HEALTH_ADDR: '127.0.0.2:1' }).BERTH_HEALTH_ALLOW_REMOTE).toBe(false);
  });

  it('stops the agent at start with exit code 2 and the sentence', async () => {
    const dir = tempDir('berth-health-cfg');
    const env = { ...process.env, ...agentEnv(uniquePluginName('berth-health'), join(dir.path, 'state')), BERTH_HEALTH_ADDR: '0.0.0.0:0' };
    // Bounded: an agent that wrongly starts is stopped (SIGTERM) rather than left running.
    const err = (await run(process.execPath, ['--import', 'tsx', join(repoRoot, 'agent/main.ts')], { cwd: repoRoot, env, timeout: 20_000 }).catch(
      (e: unknown) => e,
    )) as { code?: number; stderr?: string };
    dir.cleanup();
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/berth: invalid configuration:\n {2}BERTH_HEALTH_ADDR: is not a loopback address/);
  });
});

describe.skipIf(noLoopReason)(`health endpoint access${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let agent: Agent;
  let base: string;

  beforeAll(async () => {
    dir = tempDir('berth-health');
    // mount(8) is given /dev/null instead of the loop device: a real mount failure, with the real mount command line.
    const failingMount: Runner = (file, args, options) =>
      processRunner(file, file === 'mount' ? args.map((a) => (a.startsWith('/dev/loop') ? '/dev/null' : a)) : args, options);
    const config = loadConfig(agentEnv(uniquePluginName('berth-health'), join(dir.path, 'state')));
    agent = await startAgent(config, silentLogger, { runner: failingMount });
    base = `http://127.0.0.1:${agent.healthPort}`;
    await agent.docker.create('secretive', { size: '16MiB', mountOptions: 'noatime,commit=17' });
    await expect(agent.docker.mount('secretive', 'c1')).rejects.toThrow(/could not mount/);
  });
  afterAll(async () => {
    await agent?.stop();
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  it('gives root /status, /metrics and the readiness reasons; lastError names the failure without the mount options', async () => {
    const status = (await (await fetch(`${base}/status`)).json()) as { volumes: Array<{ name: string; lastError?: string }> };
    const lastError = status.volumes.find((v) => v.name === 'secretive')?.lastError;
    expect(lastError).toMatch(/^could not mount \/dev\/loop\d+ \(ext4\) at .*\/mounts\/secretive: mount exited 32/);
    expect(lastError).not.toMatch(/commit=17|noatime|nosuid|\/proc\//);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
    expect(await (await fetch(`${base}/readyz`)).json()).toEqual({ ready: true, checks: { plugin: true } });
  });

  it('gives another local user only /healthz and the /readyz verdict; the details are 403', async () => {
    const got = await fetchAs(NOBODY, base, ['/healthz', '/readyz', '/status', '/metrics', '/reconcile/plan']);
    expect(got['/healthz']!.status).toBe(200);
    expect(got['/readyz']!.status).toBe(200);
    expect(JSON.parse(got['/readyz']!.body)).toEqual({ ready: true, checks: { plugin: true }, note: 'the reasons are for root on this host only' });
    for (const path of ['/status', '/metrics', '/reconcile/plan']) {
      expect(got[path]!.status, path).toBe(403);
      expect(JSON.parse(got[path]!.body)).toEqual({ error: `${path} is for root on this host only (run it with sudo; /healthz and /readyz are open)` });
      expect(got[path]!.body).not.toContain('secretive');
    }
  });

  it('makes berth status, run as another user, say permission denied in one line and exit 4', async () => {
    const err = (await run(process.execPath, ['--import', 'tsx', join(repoRoot, 'agent/cli.ts'), 'status'], {
      cwd: repoRoot,
      uid: NOBODY,
      gid: NOBODY,
      env: { PATH: process.env.PATH ?? '', HOME: '/tmp', BERTH_HEALTH_ADDR: `127.0.0.1:${agent.healthPort}` },
    }).catch((e: unknown) => e)) as { code?: number; stderr?: string };
    expect(err.code).toBe(4);
    expect(err.stderr).toBe(`berth: permission denied on 127.0.0.1:${agent.healthPort}/status: the agent's details are root-only; run with sudo\n`);
  });
});
