import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { run, table, type CliEnv } from '../agent/cli.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { noLoopReason, noRootReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';

const repoRoot = join(import.meta.dirname, '..');
const cli = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'agent/cli.ts'), ...args], {
    cwd: repoRoot,
    env: { ...process.env, BERTH_HEALTH_ADDR: '127.0.0.1:1', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });

describe('berth CLI errors', () => {
  it.each([
    [['frob'], 2, /^berth: unknown command "frob"; see berth --help\n$/],
    [['ls', '--frob'], 2, /^berth: Unknown option '--frob'/],
    [[], 2, /^berth: no command given/],
    [['inspect'], 2, /^berth: inspect needs a volume name/],
    [['status'], 3, /^berth: the agent is not running \(nothing answers on 127\.0\.0\.1:1\)/],
    [['reconcile'], 2, /^berth: the agent reconciles by itself .* use berth reconcile --dry-run/],
    [['reconcile', '--dry-run'], 3, /^berth: the agent is not running/],
  ])('berth %j exits %i with one line and no stack trace', (args, code, message) => {
    const res = cli(args);
    expect(res.status).toBe(code);
    expect(res.stderr).toMatch(message);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stdout).toBe('');
  });

  it('prints usage for --help and exits 0', () => {
    const res = cli(['--help']);
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/usage: berth <command>/);
  });

  it('formats tables with aligned columns', () => {
    expect(table(['A', 'LONGER'], [['x', '1'], ['yyyy', '2']])).toEqual(['A      LONGER', 'x      1', 'yyyy   2']);
  });
});

describe.skipIf(noLoopReason)(`berth CLI against a running agent${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let agent: Agent;
  let env: CliEnv;
  let lines: string[];
  const plugin = uniquePluginName('berth-cli');

  beforeAll(async () => {
    dir = tempDir('berth-cli');
    ({ agent } = await startInProcessAgent(plugin, join(dir.path, 'state')));
    await agent.manager.create('pg', { size: '64MiB' });
    await agent.manager.create('idle', {});
    await agent.manager.mount('pg', 'c'.repeat(64));
  });
  afterAll(async () => {
    await agent.manager.unmount('pg', 'c'.repeat(64));
    await agent.stop();
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });
  const cliEnv = (): CliEnv => {
    lines = [];
    env = { healthAddr: `127.0.0.1:${agent.healthPort}`, pluginDir: '/run/docker/plugins', pluginName: plugin, out: (l) => lines.push(l) };
    return env;
  };

  it('status shows backend, readiness and each volume, and exits 0 when ready', async () => {
    expect(await run(['status'], cliEnv())).toBe(0);
    const text = lines.join('\n');
    expect(text).toMatch(/^backend\s+loop$/m);
    expect(text).toMatch(/^ready\s+yes$/m);
    expect(text).toMatch(/^NAME\s+STATE\s+CONTAINERS\s+DEVICE/m);
    expect(text).toMatch(/^pg\s+mounted\s+1\s+\/dev\/loop\d+/m);
    expect(text).toMatch(/^idle\s+-\s+0\s+-/m);
  });

  it('ls --json and inspect --json are machine-readable', async () => {
    expect(await run(['ls', '--json'], cliEnv())).toBe(0);
    const vols = JSON.parse(lines.join('\n')) as Array<{ name: string; mounted: boolean }>;
    expect(vols.map((v) => [v.name, v.mounted]).sort()).toEqual([['idle', false], ['pg', true]]);
    expect(await run(['inspect', 'pg', '--json'], cliEnv())).toBe(0);
    expect(JSON.parse(lines.join('\n'))).toMatchObject({ Name: 'pg', Status: { size: '64MiB', mounted: true }, local: { refs: 1 } });
    expect(await run(['inspect', 'nope'], cliEnv())).toBe(1);
    expect(lines.join('\n')).toMatch(/no volume named nope/);
  });

  it('doctor checks the host and names a fix for each failure', async () => {
    const progress: string[] = [];
    const code = await run(['doctor', '--json'], cliEnv(), (m) => progress.push(m));
    const checks = JSON.parse(lines.join('\n')) as Array<{ name: string; result: string; fix?: string }>;
    const byName = Object.fromEntries(checks.map((c) => [c.name, c.result]));
    expect(byName).toMatchObject({ tools: 'ok', 'plugin socket': 'ok', 'plugin answers': 'ok', 'agent ready': 'ok' });
    expect(checks.filter((c) => c.result === 'fail').every((c) => c.fix)).toBe(true);
    expect(code).toBe(checks.some((c) => c.result === 'fail') ? 1 : 0);
    expect(progress).toContain('checking tools…');
  });

  it('reconcile --dry-run on a loop host says there is nothing to reconcile', async () => {
    expect(await run(['reconcile', '--dry-run'], cliEnv())).toBe(0);
    expect(lines).toEqual(['the loop backend has no host tags: nothing to reconcile']);
  });

  it.skipIf(noRootReason)('says permission denied, in one line and exit 4, to a user who may not use the socket', async () => {
    // Asynchronous: the agent answering the CLI lives in this process.
    const res = await execa(process.execPath, ['--import', 'tsx', join(repoRoot, 'agent/cli.ts'), 'inspect', 'pg'], {
      cwd: repoRoot,
      env: { BERTH_HEALTH_ADDR: `127.0.0.1:${agent.healthPort}`, BERTH_PLUGIN_NAME: plugin, HOME: '/tmp' },
      uid: 65534,
      gid: 65534,
      reject: false,
    });
    expect(res.stderr).toMatch(/^berth: permission denied on \/run\/docker\/plugins\/.*\.sock: the plugin socket is root-only; run with sudo$/);
    expect(res.exitCode).toBe(4);
  });
});
