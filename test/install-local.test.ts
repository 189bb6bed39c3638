import { existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeSocket } from '../volume-plugin/server.js';
import { socketOf, uniquePluginName } from './helpers/agent.js';
import { freePort, noLoopReason, noRootReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';
import { unixPoster } from '../bench/lib.js';
import { oldNodeDir, RELEASE_NODE_VERSION, stageRelease } from './helpers/release.js';


/**
 * The installer for real, in background mode (no systemd here): a checkout
 * holding a fresh build, installed under a temporary prefix with its own env
 * file, state dir and plugin name, started and stopped as on a host.
 */
describe.skipIf(noRootReason)(`install-local.sh on a host${noRootReason ? ` (skipped: ${noRootReason})` : ''}`, () => {
  const tmp = tempDir('berth-install');
  const src = join(tmp.path, 'src');
  const prefix = join(tmp.path, 'opt', 'berth');
  const envFile = join(tmp.path, 'etc', 'berth.env');
  const bin = join(tmp.path, 'bin');
  const state = join(tmp.path, 'state');
  const plugin = uniquePluginName('berth-inst');
  const socket = socketOf(plugin);
  let goodEnv = '';
  let healthPort = 0;

  const install = (...args: string[]) =>
    execa('bash', [join(src, 'userdata/install-local.sh'), ...(args.includes('--uninstall') ? [] : ['--no-build']), ...args], {
      env: { PATH: `${oldNodeDir(tmp.path)}:${process.env.PATH!}`, BERTH_PREFIX: prefix, BERTH_ENV_FILE: envFile, BERTH_BIN_DIR: bin, BERTH_INIT: 'background', BERTH_INSTALL_WAIT_SECONDS: '30' },
      extendEnv: false,
      reject: false,
      timeout: 180_000,
    });
  const pid = () => Number(readFileSync(join(state, 'agent.pid'), 'utf8'));
  const alive = (p: number) => {
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  };
  const healthz = async (port = healthPort) => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status;

  beforeAll(async () => {
    await stageRelease(src);
    mkdirSync(join(tmp.path, 'etc'));
    healthPort = await freePort();
    goodEnv = `# test host\nBERTH_BACKEND=loop\nBERTH_PLUGIN_NAME=${plugin}\nBERTH_STATE_DIR=${state}\nBERTH_HEALTH_ADDR=127.0.0.1:${healthPort}\nBERTH_DEFAULT_SIZE=64MiB\nBERTH_SHUTDOWN_GRACE_SECONDS=5\nBERTH_UNMOUNT_GRACE_SECONDS=300\n`;
    writeFileSync(envFile, goodEnv, { mode: 0o600 });
  }, 180_000);

  afterAll(async () => {
    if (existsSync(join(state, 'agent.pid')) && alive(pid())) process.kill(pid(), 'SIGKILL');
    detachLoopDevicesUnder(tmp.path);
    await execa('chattr', ['-R', '-i', join(state, 'mounts')], { reject: false });
    tmp.cleanup();
  });

  it('installs, starts the agent and links the CLI, which reads the same env file', async () => {
    const res = await install();
    expect(res.stderr, 'install').toBe('');
    expect(res.exitCode).toBe(0);
    expect(res.stdout).toMatch(/berth is ready \(background; logs: .*agent\.log\)/);
    expect(await probeSocket(socket)).toBe('answers');
    const status = await execa(join(bin, 'berth'), ['status', '--json'], { env: { BERTH_ENV_FILE: envFile }, reject: false });
    expect(status.exitCode).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ backend: 'loop', socket });
    // The host's node is 18 (first on PATH, and it runs nothing): the agent runs on the release's own.
    expect(readlinkSync(`/proc/${pid()}/exe`)).toBe(join(prefix, 'bin', 'node'));
    expect((await execa(join(prefix, 'bin', 'node'), ['--version'])).stdout).toBe(`v${RELEASE_NODE_VERSION}`);
  }, 120_000);

  it('an agent killed with SIGKILL leaves a stale socket that does not fail the next install', async () => {
    const killed = pid();
    process.kill(killed, 'SIGKILL');
    for (let i = 0; i < 50 && alive(killed); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await probeSocket(socket)).toBe('stale');
    const res = await install();
    expect(res.stderr, 'reinstall').toBe('');
    expect(res.exitCode).toBe(0);
    expect(pid()).not.toBe(killed);
    expect(await probeSocket(socket)).toBe('answers');
  }, 120_000);

  it('a typo in berth.env stops the upgrade before the running agent is touched', async () => {
    const running = pid();
    const installed = readFileSync(join(prefix, 'dist/agent/main.js'));
    writeFileSync(envFile, goodEnv.replace('BERTH_BACKEND=loop', 'BERTH_BACKEND=lopo'));
    try {
      const res = await install();
      expect(res.exitCode).not.toBe(0);
      expect(res.stderr).toMatch(/BERTH_BACKEND: .*"lopo"/);
      expect(res.stderr).toMatch(/nothing changed, the running agent was not touched/);
      expect(pid()).toBe(running);
      expect(alive(running)).toBe(true);
      expect(await probeSocket(socket)).toBe('answers');
      expect(readFileSync(join(prefix, 'dist/agent/main.js')).equals(installed)).toBe(true);
      expect(existsSync(`${prefix}.new`)).toBe(false);
    } finally {
      writeFileSync(envFile, goodEnv);
    }
  }, 120_000);

  it('rolls back to the previous install and its configuration when the new agent does not come up', async () => {
    // A valid setting the new agent cannot start with: its health port is taken.
    const squatter: Server = createServer();
    const busy = await freePort();
    await new Promise<void>((r) => squatter.listen(busy, '127.0.0.1', r));
    const edited = goodEnv.replace(`127.0.0.1:${healthPort}`, `127.0.0.1:${busy}`);
    writeFileSync(envFile, edited);
    try {
      const res = await install();
      expect(res.exitCode).toBe(1);
      expect(res.stderr).toMatch(/the new agent did not become healthy: the agent \(pid \d+\) exited before it answered/);
      expect(res.stderr).toMatch(/rolled back to the previous install and .*berth\.env \(yours is kept as .*berth\.env\.rejected\), which is serving again/);
      expect(readFileSync(envFile, 'utf8')).toBe(goodEnv);
      expect(readFileSync(`${envFile}.rejected`, 'utf8')).toBe(edited);
      expect(await probeSocket(socket)).toBe('answers');
      expect(await healthz()).toBe(200);
      expect(alive(pid())).toBe(true);
      expect(existsSync(join(`${prefix}.failed`, 'dist/agent/main.js'))).toBe(true);
    } finally {
      squatter.close();
    }
  }, 180_000);

  it.skipIf(noLoopReason)('--uninstall refuses while a berth volume is mounted, and removes nothing', async () => {
    const post = unixPoster(socket);
    expect(await post('/VolumeDriver.Create', { Name: 'inst', Opts: {} })).toMatchObject({ json: { Err: '' } });
    expect(await post('/VolumeDriver.Mount', { Name: 'inst', ID: 'i'.repeat(64) })).toMatchObject({ json: { Err: '' } });
    try {
      const res = await install('--uninstall');
      expect(res.exitCode).toBe(1);
      expect(res.stderr).toMatch(/berth volumes are mounted .*nothing removed:\n.*mounts\/inst/);
      expect(await probeSocket(socket)).toBe('answers');
      expect(existsSync(prefix)).toBe(true);
    } finally {
      expect(await post('/VolumeDriver.Unmount', { Name: 'inst', ID: 'i'.repeat(64) })).toMatchObject({ json: { Err: '' } });
    }
  }, 120_000);

  it('--uninstall stops the agent, removes unit, socket, prefix and CLI link, and says what it kept; --purge removes the state too', async () => {
    const running = pid();
    // The last test's volume is in its unmount grace (mounted, no container): not in use, and the agent's stop unmounts it.
    const graceMount = join(state, 'mounts', 'inst');
    if (!noLoopReason) expect(readFileSync('/proc/self/mountinfo', 'utf8')).toContain(` ${graceMount} `);
    const res = await install('--uninstall');
    expect(res.stderr).toBe('');
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${graceMount} `);
    expect(res.exitCode).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`kept: ${state} \\(state file; loop volumes' images, i\\.e\\. their data\\), ${envFile}`));
    expect(alive(running)).toBe(false);
    expect(await probeSocket(socket)).toBe('missing');
    for (const gone of [prefix, `${prefix}.failed`, join(bin, 'berth')]) expect(existsSync(gone), gone).toBe(false);
    expect(existsSync(join(state, 'state.json'))).toBe(true);
    expect(readFileSync(envFile, 'utf8')).toBe(goodEnv);

    expect((await install()).exitCode).toBe(0);
    const purge = await install('--uninstall', '--purge');
    expect(purge.exitCode).toBe(0);
    expect(purge.stdout).toMatch(/purged .*state \(state file, loop volume images: their data is gone\)/);
    expect(existsSync(state)).toBe(false);
    expect(existsSync(envFile)).toBe(false);
  }, 180_000);
});
