import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeDebianRootfs, noDebianRootfsReason } from './helpers/debian-rootfs.js';
import { tempDir } from './helpers/loop.js';
import { RELEASE_NODE_VERSION, stageRelease } from './helpers/release.js';
import { step } from './helpers/step.js';

const skipReason = noDebianRootfsReason;

/**
 * The unit and the installer's systemd path under a real systemd as PID 1: a Debian 12 rootfs
 * made with debootstrap from this machine's apt mirror (no node in it), booted with
 * systemd-nspawn (own PID, mount and network namespaces), the release installed in it with
 * userdata/install-local.sh. Nothing is kept between runs (test/helpers/debian-rootfs.ts).
 */
describe.skipIf(skipReason)(`berth.service under systemd as PID 1${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const tmp = tempDir('berth-systemd');
  const rootfs = join(tmp.path, 'rootfs');
  const machine = `berth-sd-${process.pid}`;
  let boot: ResultPromise | undefined;
  let leader = 0;
  let console = '';
  /** Runs a command inside the container, in all of its namespaces and its root, with a PATH that holds no node. */
  const inside = (cmd: string[], timeout = 120_000) =>
    execa('nsenter', ['-t', String(leader), '-a', '-r', '-w', '--', '/usr/bin/env', '-i', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...cmd], { reject: false, timeout });
  const mainPid = async () => Number((await inside(['systemctl', 'show', '-p', 'MainPID', '--value', 'berth.service'])).stdout);

  beforeAll(async () => {
    // Made with the run (npm test), or BERTH_TEST_DEBIAN_ROOTFS copied (local runs), or made now.
    await step('the Debian rootfs', () => makeDebianRootfs(rootfs, inject('earlyDebootstrap')), 600_000);
    await step('release into the rootfs', () => stageRelease(join(rootfs, 'root/berth-release')));
    mkdirSync(join(rootfs, 'etc/berth'), { recursive: true });
    writeFileSync(join(rootfs, 'etc/berth/berth.env'), 'BERTH_BACKEND=loop\nBERTH_DEFAULT_SIZE=64MiB\nBERTH_SHUTDOWN_GRACE_SECONDS=5\n', { mode: 0o600 });
    await step('boot', async () => {
      boot = execa('systemd-nspawn', ['--keep-unit', '--register=no', '--quiet', '--private-network', '--console=passive', `--machine=${machine}`, '-D', rootfs, '--boot'], { reject: false, all: true });
      boot.all!.on('data', (d: Buffer) => (console += d.toString()));
      for (let i = 0; i < 200 && !leader; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const children = (await execa('ps', ['-o', 'pid=,comm=', '--ppid', String(boot.pid)], { reject: false })).stdout.trim().split('\n');
        leader = Number(children.find((l) => l.trim().endsWith('systemd'))?.trim().split(/\s+/)[0] ?? 0);
      }
      expect(leader, `no systemd under systemd-nspawn: ${console}`).toBeGreaterThan(0);
      // PID 1's bus socket appears a moment after it starts.
      let state = await inside(['systemctl', 'is-system-running', '--wait'], 120_000);
      for (let i = 0; i < 100 && /Failed to connect to bus/.test(state.stderr); i++) {
        await new Promise((r) => setTimeout(r, 100));
        state = await inside(['systemctl', 'is-system-running', '--wait'], 120_000);
      }
      expect(['running', 'degraded'], `${state.stdout} ${state.stderr}`).toContain(state.stdout.trim());
    }, 150_000);
  }, 900_000);

  afterAll(async () => {
    if (leader) await inside(['systemctl', 'poweroff'], 30_000);
    if (boot) {
      const stopped = await Promise.race([boot.then(() => true), new Promise((r) => setTimeout(() => r(false), 30_000))]);
      if (!stopped) boot.kill('SIGKILL');
    }
    tmp.cleanup();
  }, 90_000);

  it('the installer, on a host with no node, installs the unit, which systemd starts on the release\'s own Node.js', async () => {
    expect((await inside(['sh', '-c', 'command -v node || echo none'])).stdout.trim()).toBe('none');
    const res = await step('install-local.sh', () => inside(['/root/berth-release/userdata/install-local.sh']));
    expect(res.stderr, 'install').toBe('');
    expect(res.exitCode).toBe(0);
    expect(res.stdout).toMatch(/berth is ready \(systemd; logs: journalctl -u berth\)/);
    expect((await inside(['systemctl', 'is-active', 'berth.service'])).stdout).toBe('active');
    expect((await inside(['systemctl', 'is-enabled', 'berth.service'])).stdout).toBe('enabled');
    const pid = await mainPid();
    expect((await inside(['readlink', `/proc/${pid}/exe`])).stdout).toBe('/opt/berth/bin/node');
    expect((await inside(['/opt/berth/bin/node', '--version'])).stdout).toBe(`v${RELEASE_NODE_VERSION}`);
    // The CLI link works without a node on PATH too.
    const status = await inside(['berth', 'status', '--json']);
    expect(status.exitCode, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ backend: 'loop', socket: '/run/docker/plugins/berth.sock' });
  }, 180_000);

  it('systemd-analyze verify accepts the installed unit', async () => {
    const res = await inside(['systemd-analyze', 'verify', '/etc/systemd/system/berth.service']);
    expect(`${res.stdout}${res.stderr}`).toBe('');
    expect(res.exitCode).toBe(0);
  });

  it('an agent killed with SIGKILL is restarted by systemd, and the start counts only once the socket answers again', async () => {
    const before = await mainPid();
    // From outside systemd (as the OOM killer would), with the shell's kill: no procps in a minbase rootfs.
    await inside(['sh', '-c', `kill -KILL ${before}`]);
    let after = 0;
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await mainPid();
      if (after && after !== before && (await inside(['systemctl', 'is-active', 'berth.service'])).stdout === 'active') break;
    }
    expect(after).not.toBe(before);
    expect((await inside(['systemctl', 'is-active', 'berth.service'])).stdout).toBe('active');
    expect((await inside(['/opt/berth/bin/berth', 'wait', '--timeout', '5'])).exitCode).toBe(0);
    expect(Number((await inside(['systemctl', 'show', '-p', 'NRestarts', '--value', 'berth.service'])).stdout)).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('--uninstall stops and disables the unit and removes it', async () => {
    const res = await inside(['/root/berth-release/userdata/install-local.sh', '--uninstall']);
    expect(res.exitCode, res.stderr).toBe(0);
    expect((await inside(['systemctl', 'is-active', 'berth.service'])).stdout).not.toBe('active');
    expect(existsSync(join(rootfs, 'etc/systemd/system/berth.service'))).toBe(false);
    expect(existsSync(join(rootfs, 'opt/berth'))).toBe(false);
  }, 90_000);
});
