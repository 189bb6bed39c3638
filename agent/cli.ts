#!/usr/bin/env node
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { VolumeStatus } from '../volume-plugin/manager.js';
import { parseArgs } from 'node:util';

/**
 * Operator CLI. Talks to the running agent over its local health endpoint
 * (BERTH_HEALTH_ADDR) and plugin socket. Exit codes: 0 ok, 1 a problem was
 * found (not ready, check failed, no such volume), 2 usage error, 3 the agent
 * does not answer, 4 permission denied.
 */

const USAGE = `usage: berth <command> [--json]

commands:
  status            agent health, backend, readiness and volumes
  ls                volumes with their mount state
  inspect NAME      one volume in full
  doctor            check this host for what berth needs
  reconcile --dry-run
                    what the agent's next reconcile pass would attach,
                    mount, release or detach, and why

options:
  --json            machine-readable output
  -h, --help        this help
  --version         berth's version`;

export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

interface AgentStatus {
  backend: string;
  plugin: string;
  socket: string;
  volumes: VolumeStatus[];
  readiness: { ready: boolean; checks: Record<string, true | string> };
}

export interface CliEnv {
  healthAddr: string;
  pluginDir: string;
  pluginName: string;
  out: (line: string) => void;
}

function envFromProcess(): CliEnv {
  return {
    healthAddr: process.env.BERTH_HEALTH_ADDR ?? '127.0.0.1:9470',
    pluginDir: process.env.BERTH_PLUGIN_DIR ?? '/run/docker/plugins',
    pluginName: process.env.BERTH_PLUGIN_NAME ?? 'berth',
    out: (line) => process.stdout.write(`${line}\n`),
  };
}

function httpJson(opts: { socketPath?: string; host?: string; port?: number; path: string; method: 'GET' | 'POST'; body?: unknown; timeoutMs?: number }): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const { timeoutMs = 10_000, ...target } = opts;
    const req = request({ ...target, timeout: timeoutMs, headers: payload ? { 'Content-Length': Buffer.byteLength(payload) } : {} }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(data) });
        } catch {
          reject(new Error(`not a berth answer from ${opts.socketPath ?? `${opts.host}:${opts.port}`}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

async function agentGet(env: CliEnv, path: string, timeoutMs = 10_000): Promise<{ status: number; json: unknown }> {
  const idx = env.healthAddr.lastIndexOf(':');
  let res: { status: number; json: unknown };
  try {
    res = await httpJson({ host: env.healthAddr.slice(0, idx), port: Number(env.healthAddr.slice(idx + 1)), path, method: 'GET', timeoutMs });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') {
      throw new CliError(3, `the agent is not running (nothing answers on ${env.healthAddr}); start it: systemctl start berth`);
    }
    throw new CliError(3, `the agent did not answer on ${env.healthAddr}: ${(err as Error).message}`);
  }
  // The agent's details are root-only (agent/health-server.ts), like its plugin socket.
  if (res.status === 403) throw new CliError(4, `permission denied on ${env.healthAddr}${path}: the agent's details are root-only; run with sudo`);
  return res;
}

async function agentStatus(env: CliEnv): Promise<AgentStatus> {
  return (await agentGet(env, '/status')).json as AgentStatus;
}

interface ReconcilePlan {
  backend: string;
  items: { name: string; volumeId: string; action: string; reason: string }[];
  note?: string;
}

async function reconcilePlan(env: CliEnv): Promise<ReconcilePlan> {
  // Planning asks EC2 about this host's volumes: allow for throttling.
  const res = await agentGet(env, '/reconcile/plan', 60_000);
  const body = res.json as ReconcilePlan & { error?: string };
  if (res.status !== 200) throw new CliError(1, `the agent cannot plan a reconcile now: ${body.error ?? `HTTP ${res.status}`}`);
  return body;
}

async function pluginCall(env: CliEnv, endpoint: string, body: unknown): Promise<Record<string, unknown>> {
  const socketPath = join(env.pluginDir, `${env.pluginName}.sock`);
  try {
    return (await httpJson({ socketPath, path: endpoint, method: 'POST', body })).json as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES') throw new CliError(4, `permission denied on ${socketPath}: the plugin socket is root-only; run with sudo`);
    if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new CliError(3, `the agent is not running (no plugin socket at ${socketPath})`);
    throw new CliError(3, `the plugin socket ${socketPath} did not answer: ${(err as Error).message}`);
  }
}

/** Left-aligned columns, like docker's own tables. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd();
  return [line(header), ...rows.map(line)];
}

const volumeRows = (vols: VolumeStatus[]) =>
  vols.map((v) => [v.name, v.mounted ? 'mounted' : '-', String(v.refs), v.devicePath ?? '-', v.lastError ?? '']);
const VOLUME_HEADER = ['NAME', 'STATE', 'CONTAINERS', 'DEVICE', 'LAST ERROR'];

interface Check {
  name: string;
  result: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

function has(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function doctor(env: CliEnv, progress: (name: string) => void): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (c: Check) => {
    progress(c.name);
    checks.push(c);
  };
  const tools = ['blkid', 'mkfs.ext4', 'mkfs.xfs', 'e2fsck', 'losetup', 'mount', 'umount', 'chattr', 'findmnt'];
  const missing = tools.filter((t) => !has(t));
  add(missing.length === 0
    ? { name: 'tools', result: 'ok', detail: tools.join(', ') }
    : { name: 'tools', result: 'fail', detail: `missing ${missing.join(', ')}`, fix: 'apt-get install util-linux e2fsprogs xfsprogs (dnf install util-linux e2fsprogs xfsprogs)' });

  const filesystems = existsSync('/proc/filesystems') ? readFileSync('/proc/filesystems', 'utf8') : '';
  const fsMissing = ['ext4', 'xfs'].filter((f) => !new RegExp(`\\s${f}$`, 'm').test(filesystems));
  add(fsMissing.length === 0
    ? { name: 'kernel filesystems', result: 'ok', detail: 'ext4, xfs' }
    : { name: 'kernel filesystems', result: 'warn', detail: `${fsMissing.join(', ')} not loaded yet`, fix: `modprobe ${fsMissing.join(' ')}` });
  add(existsSync('/dev/loop-control')
    ? { name: 'loop devices', result: 'ok', detail: '/dev/loop-control present' }
    : { name: 'loop devices', result: 'warn', detail: 'no /dev/loop-control (needed by the loop backend only)', fix: 'modprobe loop' });

  const socketPath = join(env.pluginDir, `${env.pluginName}.sock`);
  if (!existsSync(socketPath)) {
    add({ name: 'plugin socket', result: 'fail', detail: `${socketPath} does not exist`, fix: 'systemctl start berth; journalctl -u berth' });
  } else {
    const mode = statSync(socketPath).mode & 0o777;
    add(mode === 0o600
      ? { name: 'plugin socket', result: 'ok', detail: `${socketPath} (0600)` }
      : { name: 'plugin socket', result: 'fail', detail: `${socketPath} has mode ${mode.toString(8)}, expected 600`, fix: 'restart berth; check its umask' });
    try {
      const res = await pluginCall(env, '/Plugin.Activate', {});
      add(JSON.stringify(res.Implements) === '["VolumeDriver"]'
        ? { name: 'plugin answers', result: 'ok', detail: 'Implements VolumeDriver' }
        : { name: 'plugin answers', result: 'fail', detail: `unexpected answer ${JSON.stringify(res)}` });
    } catch (err) {
      add({ name: 'plugin answers', result: 'fail', detail: (err as Error).message });
    }
  }

  try {
    const status = await agentStatus(env);
    add(status.readiness.ready
      ? { name: 'agent ready', result: 'ok', detail: `backend ${status.backend}, ${status.volumes.length} volume(s)` }
      : { name: 'agent ready', result: 'fail', detail: Object.entries(status.readiness.checks).filter(([, v]) => v !== true).map(([k, v]) => `${k}: ${String(v)}`).join('; ') });
  } catch (err) {
    add({ name: 'agent ready', result: 'fail', detail: (err as Error).message, fix: 'systemctl status berth' });
  }

  if (existsSync('/run/systemd/system')) {
    let before = '';
    try {
      before = execFileSync('systemctl', ['show', 'berth.service', '-p', 'Before', '--value'], { encoding: 'utf8' });
    } catch {
      // not installed as a unit
    }
    add(/\bdocker\.service\b/.test(before)
      ? { name: 'start order', result: 'ok', detail: 'berth.service starts before docker.service' }
      : { name: 'start order', result: 'fail', detail: 'berth.service is not ordered before docker.service', fix: 'install userdata/berth.service; systemctl daemon-reload' });
  } else {
    add({ name: 'start order', result: 'warn', detail: 'systemd is not running here: nothing guarantees berth starts before dockerd' });
  }

  try {
    accessSync('/var/run/docker.sock', constants.W_OK);
    const drivers = execFileSync('docker', ['info', '--format', '{{json .Plugins.Volume}}'], { encoding: 'utf8', timeout: 10_000 });
    add(drivers.includes(`"${env.pluginName}"`)
      ? { name: 'dockerd sees berth', result: 'ok', detail: `volume drivers: ${drivers.trim()}` }
      : { name: 'dockerd sees berth', result: 'warn', detail: `dockerd lists ${drivers.trim()}; it activates a plugin on first use`, fix: `docker volume ls -f driver=${env.pluginName}` });
  } catch {
    add({ name: 'dockerd sees berth', result: 'warn', detail: 'could not ask dockerd (not running, or no access to /var/run/docker.sock)' });
  }
  return checks;
}

/** From package.json: beside the sources (agent/) or two levels up in dist/agent/. */
function version(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    const file = new URL(rel, import.meta.url);
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

export async function run(argv: string[], env: CliEnv = envFromProcess(), progress: (msg: string) => void = () => undefined): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' }, 'dry-run': { type: 'boolean' } } });
  } catch (err) {
    throw new CliError(2, `${(err as Error).message.split('\n')[0]}; see berth --help`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    env.out(USAGE);
    return 0;
  }
  if (values.version) {
    env.out(version());
    return 0;
  }
  const [command, ...rest] = positionals;
  const json = values.json === true;
  const print = (value: unknown, lines: () => string[]) => (json ? env.out(JSON.stringify(value, null, 2)) : lines().forEach((l) => env.out(l)));

  switch (command) {
    case 'status': {
      const s = await agentStatus(env);
      print(s, () => [
        `backend    ${s.backend}`,
        `socket     ${s.socket}`,
        `ready      ${s.readiness.ready ? 'yes' : 'no'}`,
        ...Object.entries(s.readiness.checks).map(([k, v]) => `  ${k.padEnd(12)} ${v === true ? 'ok' : v}`),
        '',
        ...table(VOLUME_HEADER, volumeRows(s.volumes)),
      ]);
      return s.readiness.ready ? 0 : 1;
    }
    case 'ls': {
      const s = await agentStatus(env);
      print(s.volumes, () => table(VOLUME_HEADER, volumeRows(s.volumes)));
      return 0;
    }
    case 'inspect': {
      const name = rest[0];
      if (!name) throw new CliError(2, 'inspect needs a volume name; see berth --help');
      const got = await pluginCall(env, '/VolumeDriver.Get', { Name: name });
      const local = (await agentStatus(env)).volumes.find((v) => v.name === name);
      if (got.Err) {
        env.out(json ? JSON.stringify({ error: got.Err }) : `berth: ${String(got.Err)}`);
        return 1;
      }
      const volume = { ...(got.Volume as object), local };
      print(volume, () => JSON.stringify(volume, null, 2).split('\n'));
      return 0;
    }
    case 'doctor': {
      const checks = await doctor(env, (n) => progress(`checking ${n}…`));
      print(checks, () => checks.map((c) => `${c.result.toUpperCase().padEnd(4)} ${c.name.padEnd(20)} ${c.detail}${c.fix ? `\n     fix: ${c.fix}` : ''}`));
      return checks.some((c) => c.result === 'fail') ? 1 : 0;
    }
    case 'reconcile': {
      if (!values['dry-run']) {
        throw new CliError(2, 'the agent reconciles by itself every BERTH_RECONCILE_INTERVAL_SECONDS; use berth reconcile --dry-run to see what its next pass would do');
      }
      progress('asking the agent what it would reconcile…');
      const plan = await reconcilePlan(env);
      print(plan, () =>
        plan.note
          ? [plan.note]
          : plan.items.length === 0
            ? ['nothing to do: the host matches its tags']
            : table(['NAME', 'VOLUME', 'WOULD', 'WHY'], plan.items.map((i) => [i.name, i.volumeId, i.action, i.reason])),
      );
      return 0;
    }
    case undefined:
      throw new CliError(2, 'no command given; see berth --help');
    default:
      throw new CliError(2, `unknown command "${command}"; see berth --help`);
  }
}

// Run when executed (also through a symlink such as /usr/local/bin/berth), not when imported by tests.
const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isMain) {
  const progress = process.stderr.isTTY ? (msg: string) => process.stderr.write(`\r\x1b[2K${msg}`) : () => undefined;
  run(process.argv.slice(2), undefined, progress).then(
    (code) => {
      if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
      process.exitCode = code;
    },
    (err: unknown) => {
      if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
      process.stderr.write(`berth: ${err instanceof CliError ? err.message : (err as Error).message}\n`);
      process.exitCode = err instanceof CliError ? err.exitCode : 1;
    },
  );
}
