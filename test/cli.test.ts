import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { CONFIG_DEFAULTS, pluginSocketPath, type Config } from '../agent/config.js';
import { run, table, type CliEnv } from '../agent/cli.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { noLoopReason, noRootReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';

const repoRoot = join(import.meta.dirname, '..');
/** This process's environment without BERTH_* settings a developer may have exported. */
const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BERTH_')));
const cli = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'agent/cli.ts'), ...args], {
    cwd: repoRoot,
    env: { ...cleanEnv(), BERTH_HEALTH_ADDR: '127.0.0.1:1', BERTH_ENV_FILE: '/nonexistent/berth.env', ...env },
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
    [['status', 'extra'], 2, /^berth: status: unexpected argument "extra"; usage: berth status \[--json\]\n$/],
    [['ls', '--dry-run'], 2, /^berth: ls takes no --dry-run; usage: berth ls \[--json\]\n$/],
    [['inspect', 'a', 'b'], 2, /^berth: inspect: unexpected argument "b"; usage: berth inspect NAME/],
    [['retained', 'purge'], 2, /^berth: retained purge needs the name of the volume to delete \(there is no purge-all\)/],
    [['retained', 'purge', '../etc'], 2, /^berth: invalid volume name "..\/etc"/],
    [['wait', '--timeout', 'soon'], 2, /^berth: --timeout must be a positive number/],
    [['resize'], 2, /^berth: resize needs a volume name; usage: berth resize NAME \[SIZE\] \[--type T\] \[--iops N\] \[--throughput N\]/],
    [['resize', 'pg'], 2, /^berth: resize needs a new size \(e\.g\. 20GiB\) or --type\/--iops\/--throughput/],
    [['resize', 'pg', 'big'], 2, /^berth: invalid size "big": use a number with a unit/],
    [['resize', 'pg', '20GiB'], 3, /^berth: the agent is not running \(nothing answers on 127\.0\.0\.1:1\)/],
  ])('berth %j exits %i with one line and no stack trace', (args, code, message) => {
    const res = cli(args);
    expect(res.status).toBe(code);
    expect(res.stderr).toMatch(message);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stdout).toBe('');
  });

  it('with --json, an agent that is down is a JSON error object on stdout and exit 3', () => {
    const res = cli(['status', '--json']);
    expect(res.status).toBe(3);
    expect(JSON.parse(res.stdout)).toEqual({ error: expect.stringMatching(/^the agent is not running \(nothing answers on 127\.0\.0\.1:1\)/), exitCode: 3 });
    expect(res.stderr).toBe('');
    const usage = cli(['ls', 'x', '--json']);
    expect(usage.status).toBe(2);
    expect(JSON.parse(usage.stdout)).toMatchObject({ exitCode: 2, error: expect.stringMatching(/unexpected argument "x"/) });
  });

  it('reads the settings the agent runs with: the env file, BERTH_CONFIG_FILE, and its defaults', () => {
    const dir = tempDir('berth-cli-config');
    try {
      const envFile = join(dir.path, 'berth.env');
      writeFileSync(envFile, '# comment\nBERTH_HEALTH_ADDR="127.0.0.1:2"\n');
      expect(cli(['status'], { BERTH_HEALTH_ADDR: '', BERTH_ENV_FILE: envFile }).stderr).toMatch(/nothing answers on 127\.0\.0\.1:2\)/);
      const json = join(dir.path, 'berth.json');
      writeFileSync(json, JSON.stringify({ healthAddr: '127.0.0.1:3' }));
      expect(cli(['status'], { BERTH_HEALTH_ADDR: '', BERTH_CONFIG_FILE: json }).stderr).toMatch(/nothing answers on 127\.0\.0\.1:3\)/);
      // The default comes from the agent's schema (agent/config.ts), not a copy in the CLI.
      expect(cli(['status'], { BERTH_HEALTH_ADDR: '' }).stderr).toContain(`nothing answers on ${CONFIG_DEFAULTS.BERTH_HEALTH_ADDR})`);
      const bad = cli(['status'], { BERTH_BACKEND: 'nfs' });
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/^berth: invalid configuration: BERTH_BACKEND: .*"nfs"/);
      writeFileSync(envFile, 'BERTH_BACKEND loop\n');
      const check = cli(['config', 'check'], { BERTH_ENV_FILE: envFile });
      expect(check.status).toBe(1);
      expect(check.stdout).toMatch(/^FAIL .*berth\.env line 1: not KEY=VALUE/);
    } finally {
      dir.cleanup();
    }
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
  let config: Config;
  let env: CliEnv;
  let lines: string[];
  const plugin = uniquePluginName('berth-cli');

  beforeAll(async () => {
    dir = tempDir('berth-cli');
    ({ agent, config } = await startInProcessAgent(plugin, join(dir.path, 'state')));
    await agent.docker.create('pg', { size: '64MiB' });
    await agent.docker.create('idle', {});
    await agent.docker.mount('pg', 'c'.repeat(64));
  });
  afterAll(async () => {
    await agent.docker.unmount('pg', 'c'.repeat(64));
    await agent.stop();
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });
  const cliEnv = (): CliEnv => {
    lines = [];
    env = { config: { ...config, BERTH_HEALTH_ADDR: `127.0.0.1:${agent.healthPort}` }, out: (l) => lines.push(l) };
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
    await expect(run(['inspect', 'nope'], cliEnv())).rejects.toMatchObject({ exitCode: 1, message: expect.stringMatching(/no volume named nope/) });
  });

  it('doctor checks the host and names a fix for each failure', async () => {
    const progress: string[] = [];
    const code = await run(['doctor', '--json'], cliEnv(), (m) => progress.push(m));
    const checks = JSON.parse(lines.join('\n')) as Array<{ name: string; result: string; detail: string; fix?: string }>;
    const byName = Object.fromEntries(checks.map((c) => [c.name, c.result]));
    expect(byName).toMatchObject({ 'plugin socket': 'ok', 'agent ready': 'ok' });
    expect(['ok', 'warn']).toContain(byName.tools);
    expect(checks.find((c) => c.name === 'tools')?.detail).toMatch(/resize2fs.*e2fsck|e2fsck.*resize2fs/);
    expect(checks.filter((c) => c.result === 'fail').every((c) => c.fix)).toBe(true);
    expect(code).toBe(checks.some((c) => c.result === 'fail') ? 1 : 0);
    expect(progress).toContain('checking tools…');
  });

  it('doctor probes a stale socket once and says it is stale, not both OK and FAIL', async () => {
    const stale = uniquePluginName('berth-stale');
    const sock = pluginSocketPath({ ...config, BERTH_PLUGIN_NAME: stale });
    const res = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(res.signal).toBe('SIGKILL');
    try {
      lines = [];
      await run(['doctor', '--json'], { config: { ...config, BERTH_PLUGIN_NAME: stale, BERTH_HEALTH_ADDR: `127.0.0.1:${agent.healthPort}` }, out: (l) => lines.push(l) });
      const checks = JSON.parse(lines.join('\n')) as Array<{ name: string; result: string; detail: string }>;
      const socketChecks = checks.filter((c) => /socket|plugin answers/.test(c.name));
      expect(socketChecks).toEqual([expect.objectContaining({ name: 'plugin socket', result: 'fail', detail: expect.stringMatching(/is stale: a socket file nothing answers on/) })]);
    } finally {
      rmSync(sock, { force: true });
    }
  });

  it('wait returns once the agent answers, and names the stale socket when it never does', async () => {
    expect(await run(['wait', '--timeout', '5'], cliEnv())).toBe(0);
    expect(lines[0]).toMatch(/^berth answers on \/run\/docker\/plugins\/berth-cli-.*\.sock/);
    const res = cli(['wait', '--timeout', '0.5'], { BERTH_PLUGIN_NAME: uniquePluginName('berth-none') });
    expect(res.status).toBe(3);
    expect(res.stderr).toMatch(/^berth: the agent did not answer within 0\.5 s: \/run\/docker\/plugins\/berth-none-.*\.sock does not exist\n$/);
  });

  it('berth status | head -1 ends quietly when the reader goes away (no EPIPE stack)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'agent/cli.ts'), 'status'], {
      cwd: repoRoot,
      env: { ...cleanEnv(), BERTH_ENV_FILE: '/nonexistent/berth.env', BERTH_HEALTH_ADDR: `127.0.0.1:${agent.healthPort}`, BERTH_PLUGIN_NAME: plugin },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy(); // the reader exits before the first line is written
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('lists retained loop volumes and purges one only when asked by name, never one in use', async () => {
    await agent.docker.create('kept', { size: '32MiB' });
    await agent.docker.remove('kept'); // onRemove=retain: leaves Docker's list, the image stays
    expect(await run(['retained', '--json'], cliEnv())).toBe(0);
    const listed = JSON.parse(lines.join('\n')) as Array<{ name: string; image: string; sizeBytes: number }>;
    expect(listed).toEqual([expect.objectContaining({ name: 'kept', sizeBytes: 32 * 2 ** 20 })]);
    const image = listed[0]!.image;
    expect(existsSync(image)).toBe(true);
    expect(await run(['retained'], cliEnv())).toBe(0);
    expect(lines[1]).toMatch(/^kept\s+32MiB\s+\S+\s+\d{4}-/);

    // Known to the agent (listed): refused.
    await expect(run(['retained', 'purge', 'pg', '--yes'], cliEnv())).rejects.toMatchObject({ exitCode: 1, message: expect.stringMatching(/no retained volume named pg/) });
    // No terminal and no --yes: refused; a wrong name typed: refused.
    await expect(run(['retained', 'purge', 'kept'], cliEnv())).rejects.toMatchObject({ exitCode: 2, message: expect.stringMatching(/give --yes/) });
    await expect(run(['retained', 'purge', 'kept'], { ...cliEnv(), ask: async () => 'kep' })).rejects.toMatchObject({ exitCode: 1 });
    // Its image attached to a loop device: in use, refused.
    const device = execFileSync('losetup', ['--find', '--show', '--', image], { encoding: 'utf8' }).trim();
    try {
      await expect(run(['retained', 'purge', 'kept', '--yes'], cliEnv())).rejects.toMatchObject({ message: expect.stringContaining(`attached to ${device}`) });
    } finally {
      execFileSync('losetup', ['--detach', device]);
    }
    expect(existsSync(image)).toBe(true);

    expect(await run(['retained', 'purge', 'kept'], { ...cliEnv(), ask: async () => 'kept' })).toBe(0);
    expect(lines).toEqual([`purged kept: deleted ${image} and its metadata`]);
    expect(existsSync(image)).toBe(false);
    expect(await run(['retained'], cliEnv())).toBe(0);
    expect(lines).toEqual(['no retained volumes']);
  });

  it('reconcile --dry-run on a loop host says there is nothing to reconcile', async () => {
    expect(await run(['reconcile', '--dry-run'], cliEnv())).toBe(0);
    expect(lines).toEqual(['the loop backend has no host tags: nothing to reconcile']);
  });

  it.skipIf(noRootReason)('says permission denied, in one line and exit 4, to a user who may not use the socket', async () => {
    // Asynchronous: the agent answering the CLI lives in this process.
    const res = await execa(process.execPath, ['--import', 'tsx', join(repoRoot, 'agent/cli.ts'), 'inspect', 'pg'], {
      cwd: repoRoot,
      env: { BERTH_HEALTH_ADDR: `127.0.0.1:${agent.healthPort}`, BERTH_PLUGIN_NAME: plugin, BERTH_ENV_FILE: '/nonexistent/berth.env', HOME: '/tmp' },
      uid: 65534,
      gid: 65534,
      reject: false,
    });
    expect(res.stderr).toMatch(/^berth: permission denied on \/run\/docker\/plugins\/.*\.sock: the plugin socket is root-only; run with sudo$/);
    expect(res.exitCode).toBe(4);
  });
});
