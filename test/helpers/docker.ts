import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../../lib/sleep.js';
import { step } from './step.js';

/** The image every system test runs: Debian's static busybox, imported (no registry needed). */
export const TEST_IMAGE = 'berth-test/busybox:latest';
const APPLETS = ['sh', 'cat', 'echo', 'true', 'sleep', 'ls', 'sync', 'mkdir', 'rm', 'touch', 'wc', 'dd', 'sha256sum', 'head', 'test', 'nc', 'httpd', 'df', 'stat'];

/**
 * Runs the docker CLI against the shared dockerd, or another one when host is
 * given. Asynchronous on purpose: an agent running in the test process must
 * keep answering dockerd while the CLI waits.
 */
export async function docker(args: string[], opts: { host?: string; timeoutMs?: number } = {}): Promise<string> {
  const hostArgs = opts.host ? ['-H', opts.host] : [];
  // A named step (test/helpers/step.ts): a test that times out says which docker command hung.
  return step(commandStep('docker', args), async () => {
    const res = await execa('docker', [...hostArgs, ...args], { timeout: opts.timeoutMs ?? 120_000, reject: false, stdin: 'ignore' });
    if (res.exitCode !== 0) throw new Error(`docker ${args.join(' ')} failed: ${res.stderr || res.stdout}`);
    return res.stdout.trim();
  });
}

/** A step name for a command line: the command and its arguments, cut short. */
export function commandStep(command: string, args: readonly string[]): string {
  const line = [command, ...args].join(' ');
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}

/** Imports the busybox test image once; safe to call from several test files. */
export async function ensureBusyboxImage(host?: string): Promise<string> {
  return step('import the busybox test image', () => importBusybox(host));
}

async function importBusybox(host?: string): Promise<string> {
  try {
    await docker(['image', 'inspect', TEST_IMAGE], { host });
    return TEST_IMAGE;
  } catch {
    // not there yet
  }
  const root = mkdtempSync(join(tmpdir(), 'berth-rootfs-'));
  try {
    mkdirSync(join(root, 'bin'));
    mkdirSync(join(root, 'tmp'));
    copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'));
    for (const applet of APPLETS) symlinkSync('busybox', join(root, 'bin', applet));
    await execa('tar', ['-C', root, '-c', '.']).pipe('docker', [...(host ? ['-H', host] : []), 'import', '--change', 'ENV PATH=/bin', '-', TEST_IMAGE]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return TEST_IMAGE;
}

/**
 * A directory playing one machine's /run/docker/plugins (`<dir>/plugins`, returned) and
 * berth's state: a shared mount (a bind onto itself), so berth's mounts below it reach the
 * mount namespace of an engine started with `privateDockerd({ pluginDir })`. Such an engine
 * sees only the plugin sockets of its own test: dockerd tries every socket it finds in its
 * plugin directory on each `docker volume ls` and waits ~15-30 s on each one whose agent is
 * gone, which other tests (crash-matrix.test.ts kills agents) leave in the host's. Below a
 * tempDir (test/helpers/loop.ts), whose cleanup unmounts it.
 */
export function makeMachineDir(dir: string): string {
  const plugins = join(dir, 'plugins');
  mkdirSync(plugins, { recursive: true });
  execFileSync('mount', ['--bind', dir, dir]);
  execFileSync('mount', ['--make-shared', dir]);
  return plugins;
}

/** A private dockerd, for tests that restart the engine or change its mode (swarm) without disturbing others. */
export interface PrivateDockerd {
  host: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** SIGKILLs dockerd (its containerd and containers live on), as a crash would. */
  kill(): Promise<void>;
  destroy(): Promise<void>;
}

/**
 * A dockerd of its own (data-root, exec-root, socket) beside the shared one. It
 * gets its own bridge: a dockerd started with --bridge=none deletes the host's
 * docker0, which would break every default-network container of the shared
 * dockerd (and is what happened here before).
 */
export function privateDockerd(opts: { pluginDir?: string } = {}): PrivateDockerd {
  const dir = mkdtempSync(join(tmpdir(), 'berth-dockerd-'));
  const host = `unix://${dir}/docker.sock`;
  let proc: ChildProcess | undefined;
  const pidfile = join(dir, 'pid');
  const salt = randomBytes(2);
  const bridge = `berthbr${salt.toString('hex')}`;
  return {
    host,
    start: () => step('start a private dockerd', async () => {
      if (!existsSync(`/sys/class/net/${bridge}`)) {
        execFileSync('ip', ['link', 'add', bridge, 'type', 'bridge']);
        execFileSync('ip', ['addr', 'add', `10.${200 + (salt[0]! % 50)}.${salt[1]}.1/24`, 'dev', bridge]);
        execFileSync('ip', ['link', 'set', bridge, 'up']);
      }
      const args = [
        '--data-root', join(dir, 'data'),
        '--exec-root', join(dir, 'exec'),
        '--pidfile', pidfile,
        '-H', host,
        `--bridge=${bridge}`, '--iptables=false', '--ip-masq=false',
      ];
      // dockerd finds legacy plugins only in /run/docker/plugins: with pluginDir it runs in a mount
      // namespace of its own where that directory is pluginDir (one "host" per engine on one machine).
      // Slave propagation: mounts made later under shared mounts of this machine still reach it.
      proc = opts.pluginDir
        ? spawn('unshare', ['--mount', '--propagation', 'slave', 'sh', '-c', 'mount --bind "$0" /run/docker/plugins && exec dockerd "$@"', opts.pluginDir, ...args], { stdio: 'ignore' })
        : spawn('dockerd', args, { stdio: 'ignore', detached: false });
      for (let i = 0; i < 120; i++) {
        try {
          await docker(['info', '--format', '{{.ServerVersion}}'], { host, timeoutMs: 5_000 });
          return;
        } catch {
          await sleep(250);
        }
      }
      throw new Error('private dockerd did not start within 30 s');
    }),
    stop: () => step('stop a private dockerd', async () => {
      if (!proc) return;
      const p = proc;
      proc = undefined;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, sleep(30_000)]);
      if (existsSync(pidfile)) {
        const pid = Number(readFileSync(pidfile, 'utf8'));
        if (pid) await sleep(500);
      }
    }),
    async kill() {
      if (!proc) return;
      const p = proc;
      proc = undefined;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    },
    async destroy() {
      await this.stop();
      // containerd-shim mounts under exec-root may linger briefly
      for (const line of execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' }).split('\n').reverse()) {
        if (line.startsWith(dir + '/')) execFileSync('umount', ['-l', line], { stdio: 'ignore' });
      }
      rmSync(dir, { recursive: true, force: true });
      try {
        execFileSync('ip', ['link', 'delete', bridge], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    },
  };
}
