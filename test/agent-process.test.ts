import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { probeSocket } from '../volume-plugin/server.js';
import { socketOf, startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';

const repoRoot = join(import.meta.dirname, '..');

describe('agent process', () => {
  it('stops at once with exit code 2 and names every bad setting', () => {
    const res = spawnSync(process.execPath, ['--import', 'tsx', 'agent/main.ts'], {
      cwd: repoRoot,
      env: { ...process.env, BERTH_BACKEND: 'nfs', BERTH_DEFAULT_FS: 'ntfs' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/berth: invalid configuration:\n\s+BERTH_BACKEND: .*"nfs"[\s\S]*BERTH_DEFAULT_FS: .*"ntfs"/);
    expect(res.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe.skipIf(noLoopReason)(`agent health endpoint${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  afterEach(() => {
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  it('a second agent with the same plugin name is refused before it touches its state, and the first keeps serving', async () => {
    dir = tempDir('berth-twice');
    const name = uniquePluginName();
    const { agent } = await startInProcessAgent(name, join(dir.path, 'a'));
    try {
      await expect(startInProcessAgent(name, join(dir.path, 'b'))).rejects.toThrow(/another server is listening on \/run\/docker\/plugins\/.*\.sock/);
      expect(existsSync(join(dir.path, 'b'))).toBe(false);
      expect(await probeSocket(socketOf(name))).toBe('answers');
    } finally {
      await agent.stop();
    }
    expect(await probeSocket(socketOf(name))).toBe('missing');
  });

  it('serves /healthz, /readyz, /status and Prometheus /metrics on the local endpoint', async () => {
    dir = tempDir('berth-health');
    const { agent } = await startInProcessAgent(uniquePluginName(), join(dir.path, 'state'));
    try {
      await agent.docker.create('m', {});
      await agent.docker.mount('m', 'x'.repeat(64));
      const base = `http://127.0.0.1:${agent.healthPort}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ ready: true, checks: { plugin: true } });

      const status = (await (await fetch(`${base}/status`)).json()) as { backend: string; volumes: Array<Record<string, unknown>> };
      expect(status.backend).toBe('loop');
      expect(status.volumes).toEqual([expect.objectContaining({ name: 'm', mounted: true, refs: 1, devicePath: expect.stringMatching(/^\/dev\/loop\d+$/) })]);

      agent.health.addReadinessCheck('certificates', () => 'no certificate yet');
      const notReady = await fetch(`${base}/readyz`);
      expect(notReady.status).toBe(503);
      expect(await notReady.json()).toMatchObject({ ready: false, checks: { certificates: 'no certificate yet' } });

      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^berth_volumes_mounted 1$/m);
      expect(metrics).toMatch(/berth_process_resident_memory_bytes \d+/);
      await agent.docker.unmount('m', 'x'.repeat(64));
    } finally {
      await agent.stop();
    }
    expect(() => execFileSync('curl', ['-s', '--max-time', '1', `http://127.0.0.1:${agent.healthPort}/healthz`])).toThrow();
  });
});
