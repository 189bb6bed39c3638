import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { probeSocket } from '../volume-plugin/server.js';
import { socketOf, uniquePluginName } from './helpers/agent.js';
import { freePort, noRootReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';
import { oldNodeDir, stageRelease } from './helpers/release.js';
import { step } from './helpers/step.js';

const standin = join(import.meta.dirname, 'helpers', 'bin', 'systemctl');

/**
 * The installer's systemd path: no systemd runs here, so systemctl is the
 * stand-in in test/helpers/bin (systemctl(1)'s verbs as the installer uses
 * them; it runs the unit's ExecStart= as a real process and its
 * ExecStartPost= as the start job's check). Same checkout, prefix and env file
 * layout as the background-mode test (test/install-local.test.ts).
 */
describe.skipIf(noRootReason)(`install-local.sh under systemd (systemctl stand-in)${noRootReason ? ` (skipped: ${noRootReason})` : ''}`, () => {
  const tmp = tempDir('berth-install-sd');
  const src = join(tmp.path, 'src');
  const prefix = join(tmp.path, 'opt', 'berth');
  const envFile = join(tmp.path, 'etc', 'berth.env');
  const bin = join(tmp.path, 'bin');
  const state = join(tmp.path, 'state');
  const unitDir = join(tmp.path, 'systemd', 'system');
  const unitFile = join(unitDir, 'berth.service');
  const plugin = uniquePluginName('berth-insd');
  const socket = socketOf(plugin);
  const env = {
    PATH: `${join(import.meta.dirname, 'helpers', 'bin')}:${oldNodeDir(tmp.path)}:${process.env.PATH!}`,
    BERTH_PREFIX: prefix,
    BERTH_ENV_FILE: envFile,
    BERTH_BIN_DIR: bin,
    BERTH_INIT: 'systemd',
    BERTH_SYSTEMD_UNIT_DIR: unitDir,
    SYSTEMCTL_UNIT_DIR: unitDir,
    SYSTEMCTL_STATE_DIR: join(tmp.path, 'systemd', 'state'),
  };
  let goodEnv = '';
  let healthPort = 0;

  const install = (...args: string[]) =>
    execa('bash', [join(src, 'userdata/install-local.sh'), ...(args.includes('--uninstall') ? [] : ['--no-build']), ...args], { env, extendEnv: false, reject: false, timeout: 180_000 });
  const systemctl = (...args: string[]) => execa(standin, args, { env, extendEnv: false, reject: false, timeout: 60_000 });
  const mainPid = async () => Number((await systemctl('show', '-p', 'MainPID', '--value', 'berth.service')).stdout);
  const isActive = async () => (await systemctl('is-active', 'berth.service')).stdout;
  const cmdline = (pid: number) => (existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ') : '');
  // a file, or a link (even a dangling one)
  const present = (path: string) => {
    try {
      lstatSync(path);
      return true;
    } catch {
      return false;
    }
  };
  const healthz = async (port = healthPort) => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status;

  beforeAll(async () => {
    await step('release', () => stageRelease(src));
    mkdirSync(join(tmp.path, 'etc'));
    mkdirSync(unitDir, { recursive: true });
    healthPort = await freePort();
    goodEnv = `# test host\nBERTH_BACKEND=loop\nBERTH_PLUGIN_NAME=${plugin}\nBERTH_STATE_DIR=${state}\nBERTH_HEALTH_ADDR=127.0.0.1:${healthPort}\nBERTH_DEFAULT_SIZE=64MiB\nBERTH_SHUTDOWN_GRACE_SECONDS=5\n`;
    writeFileSync(envFile, goodEnv, { mode: 0o600 });
  }, 180_000);

  afterAll(async () => {
    const pid = await mainPid().catch(() => 0);
    await systemctl('stop', 'berth.service');
    if (pid > 0 && cmdline(pid)) process.kill(pid, 'SIGKILL');
    detachLoopDevicesUnder(tmp.path);
    await execa('chattr', ['-R', '-i', state], { reject: false });
    tmp.cleanup();
  }, 120_000);

  it('installs the unit with this prefix and env file, enables and starts it; the main process is the agent', async () => {
    const res = await step('install', () => install());
    expect(res.stderr, 'install').toBe('');
    expect(res.exitCode).toBe(0);
    expect(res.stdout).toMatch(/berth is ready \(systemd; logs: journalctl -u berth\)/);
    const unit = readFileSync(unitFile, 'utf8');
    expect(unit).toContain(`EnvironmentFile=-${envFile}\n`);
    expect(unit).toContain(`ExecStart=${prefix}/bin/node ${AGENT_NODE_FLAGS.join(' ')} ${prefix}/dist/agent/main.js\n`);
    expect(unit).not.toMatch(/[ =]\/opt\/berth|[ =]\/etc\/berth/);
    for (const target of ['multi-user.target', 'docker.service']) expect(lstatSync(join(unitDir, `${target}.wants`, 'berth.service')).isSymbolicLink(), target).toBe(true);
    expect(await isActive()).toBe('active');
    expect(cmdline(await mainPid())).toContain(`${prefix}/dist/agent/main.js`);
    expect(await probeSocket(socket)).toBe('answers');
    expect(await healthz()).toBe(200);
  }, 180_000);

  it('a typo in berth.env stops the upgrade before the running unit is touched', async () => {
    const running = await mainPid();
    writeFileSync(envFile, goodEnv.replace('BERTH_BACKEND=loop', 'BERTH_BACKEND=lopo'));
    try {
      const res = await step('install with a typo', () => install());
      expect(res.exitCode).not.toBe(0);
      expect(res.stderr).toMatch(/BERTH_BACKEND: .*"lopo"/);
      expect(res.stderr).toMatch(/nothing changed, the running agent was not touched/);
      expect(await mainPid()).toBe(running);
      expect(await isActive()).toBe('active');
      expect(await probeSocket(socket)).toBe('answers');
    } finally {
      writeFileSync(envFile, goodEnv);
    }
  }, 120_000);

  it('rolls back to the previous install and its configuration when the new unit does not start', async () => {
    const squatter: Server = createServer();
    const busy = await freePort();
    await new Promise<void>((r) => squatter.listen(busy, '127.0.0.1', r));
    const edited = goodEnv.replace(`127.0.0.1:${healthPort}`, `127.0.0.1:${busy}`);
    writeFileSync(envFile, edited);
    try {
      const before = await mainPid();
      const res = await step('install that cannot start', () => install());
      expect(res.exitCode).toBe(1);
      expect(res.stderr).toMatch(/Job for berth\.service failed/);
      expect(res.stderr).toMatch(/the new agent did not become healthy: systemctl start berth\.service failed/);
      expect(res.stderr).toMatch(/rolled back to the previous install and .*berth\.env \(yours is kept as .*berth\.env\.rejected\), which is serving again/);
      expect(readFileSync(envFile, 'utf8')).toBe(goodEnv);
      expect(readFileSync(`${envFile}.rejected`, 'utf8')).toBe(edited);
      expect(await isActive()).toBe('active');
      const after = await mainPid();
      expect(after).not.toBe(before);
      expect(cmdline(after)).toContain(`${prefix}/dist/agent/main.js`);
      expect(cmdline(before)).toBe('');
      expect(await probeSocket(socket)).toBe('answers');
      expect(await healthz()).toBe(200);
      expect(existsSync(join(`${prefix}.failed`, 'dist/agent/main.js'))).toBe(true);
    } finally {
      squatter.close();
    }
  }, 180_000);

  it('--uninstall stops and disables the unit and removes it, socket, prefix and CLI link; --purge removes the state too', async () => {
    const running = await mainPid();
    const res = await step('uninstall', () => install('--uninstall'));
    expect(res.stderr).toBe('');
    expect(res.exitCode).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`kept: ${state} \\(state file; loop volumes' images, i\\.e\\. their data\\), ${envFile}`));
    expect(await isActive()).toBe('inactive');
    expect(cmdline(running)).toBe('');
    for (const gone of [unitFile, join(unitDir, 'multi-user.target.wants', 'berth.service'), join(unitDir, 'docker.service.wants', 'berth.service'), prefix, join(bin, 'berth')]) {
      expect(present(gone), gone).toBe(false);
    }
    expect(await probeSocket(socket)).toBe('missing');
    expect(existsSync(join(state, 'state.json'))).toBe(true);

    expect((await step('install again', () => install())).exitCode).toBe(0);
    expect(await isActive()).toBe('active');
    const purge = await step('uninstall --purge', () => install('--uninstall', '--purge'));
    expect(purge.exitCode).toBe(0);
    expect(await isActive()).toBe('inactive');
    expect(existsSync(state)).toBe(false);
    expect(existsSync(envFile)).toBe(false);
  }, 240_000);
});
