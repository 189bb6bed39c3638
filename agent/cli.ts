#!/usr/bin/env node
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { createInterface } from 'node:readline/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { errorMessage } from '../lib/errors.js';
import { processRunner } from '../lib/exec.js';
import type { Backend, RetainedVolume } from '../volume-plugin/backends/backend.js';
import { createLoopBackend } from '../volume-plugin/backends/loop.js';
import type { VolumeStatus } from '../volume-plugin/service.js';
import { assertVolumeName, formatSize, parseSize } from '../volume-plugin/options.js';
import { probeSocket } from '../volume-plugin/server.js';
import { EC2_CLIENT_SETTINGS, resolveBackendKind } from './backend-factory.js';
import { ConfigError, hostPathsOf, loadInstalledConfig, pluginSocketPath, type Config } from './config.js';
import { checkInstall, missingTools, toolsFor } from './preflight.js';
import { tagKeys } from '../lib/node-contract.js';
import { createZoneMover, formatAge, type ZoneMover } from '../volume-plugin/backends/ebs/zone-move.js';

/**
 * Operator CLI. Talks to the running agent over its local health endpoint
 * (BERTH_HEALTH_ADDR) and plugin socket, with the configuration the installed
 * agent runs with (/etc/berth/berth.env or BERTH_ENV_FILE, BERTH_CONFIG_FILE,
 * BERTH_* variables; config.ts). Exit codes: 0 ok, 1 a problem was found (not
 * ready, check failed, no such volume), 2 usage error, 3 the agent does not
 * answer, 4 permission denied.
 */

interface CommandSpec {
  usage: string;
  help: string;
  /** Positional arguments after the command: exactly these many (or min..max). */
  args: [number, number];
  /** Options this command takes besides --json. */
  options?: string[];
  /** What a missing argument is, for the error. */
  needs?: string;
}

const COMMANDS: Record<string, CommandSpec> = {
  status: { usage: 'status', help: 'agent health, backend, readiness and volumes', args: [0, 0] },
  ls: { usage: 'ls', help: 'volumes with their mount state', args: [0, 0] },
  inspect: { usage: 'inspect NAME', help: 'one volume in full', args: [1, 1], needs: 'a volume name' },
  doctor: { usage: 'doctor', help: 'check this host for what berth needs', args: [0, 0] },
  reconcile: { usage: 'reconcile --dry-run', help: "what the agent's next reconcile pass would attach,\n                    mount, release or detach, and why", args: [0, 0], options: ['dry-run'] },
  wait: { usage: 'wait [--timeout SECONDS] [--pid PID]', help: 'wait until the agent answers on its plugin socket and\n                    health endpoint (exit 3 when it does not in time)', args: [0, 0], options: ['timeout', 'pid'] },
  config: { usage: 'config check', help: 'validate the configuration the agent would start with', args: [1, 1], needs: 'a subcommand' },
  resize: {
    usage: 'resize NAME [SIZE] [--type T] [--iops N] [--throughput N]',
    help: 'grow a volume in place (and change its EBS type, IOPS,\n                    throughput); a mounted one is grown online',
    args: [1, 2],
    options: ['type', 'iops', 'throughput'],
    needs: 'a volume name',
  },
  // Zone moves (issue 22; docs/operations.md, "Move a node to another zone").
  move: {
    usage: 'move NAME --zone ZONE [--host HOST] [--from-snapshot latest|SNAPSHOT] | move NAME --status | move NAME --abort',
    help: "move a stopped node's EBS volume to another zone: snapshot,\n                    restore there, retire the old one; run it again to resume",
    args: [1, 1],
    options: ['zone', 'host', 'from-snapshot', 'abort', 'status'],
    needs: 'a volume name',
  },
  retained: { usage: 'retained [ls | purge NAME [--yes]]', help: 'loop volumes removed with onRemove=retain whose images\n                    are kept; purge deletes one image for good', args: [0, 2], options: ['yes'] },
};

const USAGE = `usage: berth <command> [--json]

commands:
${Object.values(COMMANDS).map((c) => `  ${c.usage.padEnd(16)}${c.usage.length >= 16 ? `\n${' '.repeat(20)}` : '  '}${c.help}`).join('\n')}

options:
  --json            machine-readable output (errors too: {"error", "exitCode"})
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
  config: Config;
  out: (line: string) => void;
  /** Asks the operator a question on a terminal; undefined when there is none. */
  ask?: (question: string) => Promise<string>;
  /** The zone mover `berth move` uses; default: over EC2 with this host's credentials and region (zoneMoverOf). */
  zoneMover?: (progress: (line: string) => void) => Promise<ZoneMover>;
}

function envFromProcess(out: (line: string) => void): CliEnv {
  let config: Config;
  try {
    config = loadInstalledConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(2, err.message.replace(/\n\s*/g, ' '));
    throw err;
  }
  const ask = process.stdin.isTTY
    ? async (question: string) => {
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        try {
          return await rl.question(question);
        } finally {
          rl.close();
        }
      }
    : undefined;
  return { config, out, ...(ask ? { ask } : {}) };
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

async function agentGet(env: CliEnv, path: string, timeoutMs = 10_000, post?: { body: unknown }): Promise<{ status: number; json: unknown }> {
  const addr = env.config.BERTH_HEALTH_ADDR;
  const idx = addr.lastIndexOf(':');
  let res: { status: number; json: unknown };
  try {
    res = await httpJson({ host: addr.slice(0, idx), port: Number(addr.slice(idx + 1)), path, method: post ? 'POST' : 'GET', timeoutMs, ...(post ? { body: post.body } : {}) });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') {
      throw new CliError(3, `the agent is not running (nothing answers on ${addr}); start it: systemctl start berth`);
    }
    throw new CliError(3, `the agent did not answer on ${addr}: ${(err as Error).message}`);
  }
  // The agent's details are root-only (agent/health-server.ts), like its plugin socket.
  if (res.status === 403) throw new CliError(4, `permission denied on ${addr}${path}: the agent's details are root-only; run with sudo`);
  return res;
}

async function agentStatus(env: CliEnv): Promise<AgentStatus> {
  return (await agentGet(env, '/status')).json as AgentStatus;
}

/** What the agent answers to a resize (volume-plugin/service.ts ResizeOutcome). */
interface ResizeAnswer {
  name: string;
  sizeBytes: number;
  state: 'done' | 'optimizing' | 'modifying';
  detail?: string;
  mounted: boolean;
  grown: boolean;
}

async function resize(env: CliEnv, name: string, change: Record<string, string>): Promise<ResizeAnswer> {
  // The agent answers within its own 120 s deadline (volume-plugin/budgets.ts); a little more here.
  const res = await agentGet(env, '/volumes/resize', 130_000, { body: { name, change } });
  const body = res.json as ResizeAnswer & { error?: string };
  if (res.status === 400) throw new CliError(2, body.error ?? 'refused');
  if (res.status !== 200) throw new CliError(1, body.error ?? `HTTP ${res.status}`);
  return body;
}

function resizeLines(r: ResizeAnswer): string[] {
  const size = formatSize(r.sizeBytes);
  const now = r.state === 'modifying' ? `EBS is modifying it${r.detail ? ` (${r.detail})` : ''}` : (r.detail ?? r.state);
  const fs = !r.mounted
    ? 'not mounted: its filesystem grows at its next Mount'
    : r.grown
      ? 'its mounted filesystem was grown online'
      : r.state === 'modifying'
        ? 'the agent grows its mounted filesystem online once the device shows the new size'
        : 'its mounted filesystem already had that size';
  return [`${r.name}: ${size}; ${now}`, fs];
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

const permissionDenied = (socketPath: string) => `permission denied on ${socketPath}: the plugin socket is root-only; run with sudo`;

async function pluginCall(env: CliEnv, endpoint: string, body: unknown): Promise<Record<string, unknown>> {
  const socketPath = pluginSocketPath(env.config);
  try {
    return (await httpJson({ socketPath, path: endpoint, method: 'POST', body, timeoutMs: 10_000 })).json as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES') throw new CliError(4, permissionDenied(socketPath));
    if (code === 'ENOENT') throw new CliError(3, `the agent is not running (no plugin socket at ${socketPath})`);
    if (code === 'ECONNREFUSED') throw new CliError(3, `the agent is not running (${socketPath} is stale: a socket file nothing answers on, left by an agent that was killed)`);
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
  vols.map((v) => [v.name, v.mounted ? (v.unmountPending ? 'mounted, unmount pending' : 'mounted') : '-', String(v.refs), v.devicePath ?? '-', v.lastError ?? '']);
const VOLUME_HEADER = ['NAME', 'STATE', 'CONTAINERS', 'DEVICE', 'LAST ERROR'];

interface Check {
  name: string;
  result: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

/** The plugin socket, probed once: one verdict (missing, stale, wrong mode, wrong answer, or ok). */
async function socketCheck(env: CliEnv): Promise<Check> {
  const name = 'plugin socket';
  const socketPath = pluginSocketPath(env.config);
  let verdict;
  try {
    verdict = await probeSocket(socketPath);
  } catch (err) {
    if ((err as { errno?: string }).errno === 'EACCES') return { name, result: 'fail', detail: permissionDenied(socketPath), fix: 'run berth with sudo' };
    return { name, result: 'fail', detail: errorMessage(err) };
  }
  if (verdict === 'missing') return { name, result: 'fail', detail: `${socketPath} does not exist`, fix: 'systemctl start berth; journalctl -u berth' };
  if (verdict === 'stale') {
    return { name, result: 'fail', detail: `${socketPath} is stale: a socket file nothing answers on (left by an agent that was killed)`, fix: 'systemctl restart berth (the agent replaces a stale socket); journalctl -u berth' };
  }
  const mode = statSync(socketPath).mode & 0o777;
  if (mode !== 0o600) return { name, result: 'fail', detail: `${socketPath} has mode ${mode.toString(8)}, expected 600`, fix: 'restart berth' };
  try {
    const res = await pluginCall(env, '/Plugin.Activate', {});
    return JSON.stringify(res.Implements) === '["VolumeDriver"]'
      ? { name, result: 'ok', detail: `${socketPath} (0600) answers: Implements VolumeDriver` }
      : { name, result: 'fail', detail: `${socketPath} answers something that is not berth: ${JSON.stringify(res).slice(0, 200)}` };
  } catch (err) {
    return { name, result: 'fail', detail: errorMessage(err) };
  }
}

async function doctor(env: CliEnv, progress: (name: string) => void): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (c: Check) => {
    progress(c.name);
    checks.push(c);
  };
  const tools = toolsFor(await resolveBackendKind(env.config), env.config.BERTH_DEFAULT_FS);
  const missing = missingTools(tools.required);
  const missingOptional = missingTools(tools.optional);
  const fix = 'apt-get install util-linux e2fsprogs xfsprogs (dnf install util-linux e2fsprogs xfsprogs)';
  add(missing.length > 0
    ? { name: 'tools', result: 'fail', detail: `missing ${missing.join(', ')}`, fix }
    : missingOptional.length > 0
      ? { name: 'tools', result: 'warn', detail: `missing ${missingOptional.join(', ')}: xfs volumes cannot be made or grown`, fix }
      : { name: 'tools', result: 'ok', detail: [...tools.required, ...tools.optional].join(', ') });

  const filesystems = existsSync('/proc/filesystems') ? readFileSync('/proc/filesystems', 'utf8') : '';
  const fsMissing = ['ext4', 'xfs'].filter((f) => !new RegExp(`\\s${f}$`, 'm').test(filesystems));
  add(fsMissing.length === 0
    ? { name: 'kernel filesystems', result: 'ok', detail: 'ext4, xfs' }
    : { name: 'kernel filesystems', result: 'warn', detail: `${fsMissing.join(', ')} not loaded yet`, fix: `modprobe ${fsMissing.join(' ')}` });
  add(existsSync('/dev/loop-control')
    ? { name: 'loop devices', result: 'ok', detail: '/dev/loop-control present' }
    : { name: 'loop devices', result: 'warn', detail: 'no /dev/loop-control (needed by the loop backend only)', fix: 'modprobe loop' });

  add(await socketCheck(env));

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
    add(drivers.includes(`"${env.config.BERTH_PLUGIN_NAME}"`)
      ? { name: 'dockerd sees berth', result: 'ok', detail: `volume drivers: ${drivers.trim()}` }
      : { name: 'dockerd sees berth', result: 'warn', detail: `dockerd lists ${drivers.trim()}; it activates a plugin on first use`, fix: `docker volume ls -f driver=${env.config.BERTH_PLUGIN_NAME}` });
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

function positiveNumber(value: string | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new CliError(2, `--${option} must be a positive number, got ${JSON.stringify(value)}`);
  return n;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why the agent is not serving yet (socket and health endpoint), or undefined when it is. */
async function notServing(env: CliEnv): Promise<string | undefined> {
  const socket = await socketCheck(env);
  if (socket.result !== 'ok') return socket.detail;
  try {
    const res = await agentGet(env, '/healthz', 2_000);
    return res.status === 200 ? undefined : `/healthz answered HTTP ${res.status}`;
  } catch (err) {
    return errorMessage(err);
  }
}

async function waitServing(env: CliEnv, timeoutSeconds: number, pid: number | undefined): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const why = await notServing(env);
    if (why === undefined) return;
    if (why.startsWith('permission denied')) throw new CliError(4, why);
    if (pid !== undefined && !alive(pid)) throw new CliError(3, `the agent (pid ${pid}) exited before it answered: ${why}`);
    if (Date.now() >= deadline) throw new CliError(3, `the agent did not answer within ${timeoutSeconds} s: ${why}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The backend whose retained volumes live on this host, over the agent's state directory; only the loop backend keeps any here. */
async function retainingBackend(env: CliEnv): Promise<Backend & Required<Pick<Backend, 'retained' | 'purgeRetained'>>> {
  const kind = await resolveBackendKind(env.config);
  const backend = kind === 'loop' ? createLoopBackend({ stateDir: env.config.BERTH_STATE_DIR, paths: hostPathsOf(env.config), runner: processRunner }) : undefined;
  if (!backend?.retained || !backend.purgeRetained) {
    throw new CliError(1, 'retained volumes of the ebs backend are EBS volumes tagged with a volume name and no host: list or delete them in EC2');
  }
  return backend as Backend & Required<Pick<Backend, 'retained' | 'purgeRetained'>>;
}

/**
 * Deletes one retained volume's data through its backend, after checking that
 * nothing uses it: the agent must answer and not know the name, and no device
 * may use the data (the backend checks that again as it deletes).
 */
async function purgeRetained(env: CliEnv, name: string, confirmed: boolean): Promise<RetainedVolume> {
  const backend = await retainingBackend(env);
  const volume = (await backend.retained()).find((v) => v.name === name);
  if (!volume) throw new CliError(1, `no retained volume named ${name} (berth retained lists them); a volume Docker lists is removed with docker volume rm`);
  const status = await agentStatus(env).catch((err: unknown) => {
    throw new CliError(3, `the agent must answer before a purge (it checks that nothing uses the volume): ${errorMessage(err)}`);
  });
  const known = status.volumes.find((v) => v.name === name);
  if (known) throw new CliError(1, `the agent knows volume ${name} (${known.mounted ? `mounted, ${known.refs} container mount(s)` : 'not mounted'}): it is in use, not retained; nothing deleted`);
  const got = await pluginCall(env, '/VolumeDriver.Get', { Name: name });
  if (!got.Err) throw new CliError(1, `volume ${name} is listed again (a Create adopted it): nothing deleted`);
  if (volume.devices.length > 0) throw new CliError(1, `the image of ${name} is attached to ${volume.devices.join(', ')}: it is in use; nothing deleted`);
  if (!confirmed) {
    if (!env.ask) throw new CliError(2, `purge deletes the data of ${name} for good: give --yes, or run it on a terminal to confirm`);
    const typed = (await env.ask(`this deletes ${volume.image} (${formatSize(volume.sizeBytes)}) for good; type the volume name to confirm: `)).trim();
    if (typed !== name) throw new CliError(1, `"${typed}" is not ${name}: nothing deleted`);
  }
  return backend.purgeRetained(name).catch((err: unknown) => {
    throw new CliError(1, errorMessage(err));
  });
}

const JSON_ERRORS = (argv: readonly string[]) => argv.includes('--json');

/**
 * Runs one command. `env` is built only once the arguments parse (so --help
 * works with a broken configuration); tests pass their own.
 */
export async function run(argv: string[], envOrLoader: CliEnv | (() => CliEnv) = () => envFromProcess((l) => process.stdout.write(`${l}\n`)), progress: (msg: string) => void = () => undefined): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        timeout: { type: 'string' },
        pid: { type: 'string' },
        yes: { type: 'boolean' },
        type: { type: 'string' },
        iops: { type: 'string' },
        throughput: { type: 'string' },
        zone: { type: 'string' },
        host: { type: 'string' },
        'from-snapshot': { type: 'string' },
        abort: { type: 'boolean' },
        status: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new CliError(2, `${(err as Error).message.split('\n')[0]}; see berth --help`);
  }
  const { values, positionals } = parsed;
  const lazyOut = (line: string) => (typeof envOrLoader === 'function' ? process.stdout.write(`${line}\n`) : envOrLoader.out(line));
  if (values.help) {
    lazyOut(USAGE);
    return 0;
  }
  if (values.version) {
    lazyOut(version());
    return 0;
  }
  const [command, ...rest] = positionals;
  if (command === undefined) throw new CliError(2, 'no command given; see berth --help');
  const spec = Object.hasOwn(COMMANDS, command) ? COMMANDS[command]! : undefined;
  if (!spec) throw new CliError(2, `unknown command "${command}"; see berth --help`);
  const usage = `usage: berth ${spec.usage} [--json]`;
  const stray = Object.keys(values).filter((k) => !['json', 'help', 'version'].includes(k) && !(spec.options ?? []).includes(k));
  if (stray.length > 0) throw new CliError(2, `${command} takes no --${stray[0]}; ${usage}`);
  if (rest.length > spec.args[1]) throw new CliError(2, `${command}: unexpected argument "${rest[spec.args[1]]}"; ${usage}`);
  if (rest.length < spec.args[0]) throw new CliError(2, `${command} needs ${spec.needs ?? 'an argument'}; ${usage}`);

  const json = values.json === true;
  if (command === 'config') {
    if (rest[0] !== 'check') throw new CliError(2, `config: unknown subcommand "${rest[0]}"; ${usage}`);
    const result = await checkInstall(process.env);
    const out = typeof envOrLoader === 'function' ? lazyOut : envOrLoader.out;
    if (json) out(JSON.stringify(result, null, 2));
    else if (result.problems.length) result.problems.forEach((p) => out(`FAIL ${p}`));
    else out(`config ok: backend ${result.backend}, socket ${result.socket}, state dir ${result.stateDir}, health ${result.healthAddr}`);
    if (!json) result.warnings.forEach((w) => out(`WARN ${w}`));
    return result.ok ? 0 : 1;
  }

  const env = typeof envOrLoader === 'function' ? envOrLoader() : envOrLoader;
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
      const name = rest[0]!;
      const got = await pluginCall(env, '/VolumeDriver.Get', { Name: name });
      if (got.Err) throw new CliError(1, String(got.Err));
      const local = (await agentStatus(env)).volumes.find((v) => v.name === name);
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
    case 'wait': {
      const timeout = positiveNumber(values.timeout, 'timeout', 30);
      const pid = values.pid === undefined ? undefined : positiveNumber(values.pid, 'pid', 0);
      progress('waiting for the agent…');
      await waitServing(env, timeout, pid);
      const socket = pluginSocketPath(env.config);
      print({ serving: true, socket, healthAddr: env.config.BERTH_HEALTH_ADDR }, () => [`berth answers on ${socket} and ${env.config.BERTH_HEALTH_ADDR}`]);
      return 0;
    }
    case 'resize': {
      const [name, size] = rest as [string, string | undefined];
      const change: Record<string, string> = {
        ...(size !== undefined ? { size } : {}),
        ...(values.type !== undefined ? { type: values.type } : {}),
        ...(values.iops !== undefined ? { iops: values.iops } : {}),
        ...(values.throughput !== undefined ? { throughput: values.throughput } : {}),
      };
      if (Object.keys(change).length === 0) throw new CliError(2, `resize needs a new size (e.g. 20GiB) or --type/--iops/--throughput; ${usage}`);
      try {
        assertVolumeName(name);
        if (size !== undefined) parseSize(size);
      } catch (err) {
        throw new CliError(2, errorMessage(err));
      }
      progress(`resizing ${name}…`);
      const answer = await resize(env, name, change);
      print(answer, () => resizeLines(answer));
      return 0;
    }
    case 'move':
      return moveCommand(env, rest[0]!, values, usage, json, print);
    case 'retained': {
      const [sub = 'ls', name] = rest;
      if (sub === 'ls') {
        if (name !== undefined) throw new CliError(2, `retained ls: unexpected argument "${name}"; ${usage}`);
        const vols = await (await retainingBackend(env)).retained();
        print(vols, () =>
          vols.length === 0
            ? ['no retained volumes']
            : table(
                ['NAME', 'SIZE', 'ON DISK', 'CREATED', 'IMAGE'],
                vols.map((v) => [v.name, formatSize(v.sizeBytes), v.allocatedBytes === undefined ? 'missing' : formatSize(v.allocatedBytes), v.createdAt, v.image]),
              ),
        );
        return 0;
      }
      if (sub !== 'purge') throw new CliError(2, `retained: unknown subcommand "${sub}"; ${usage}`);
      if (name === undefined) throw new CliError(2, `retained purge needs the name of the volume to delete (there is no purge-all); ${usage}`);
      try {
        assertVolumeName(name);
      } catch (err) {
        throw new CliError(2, errorMessage(err));
      }
      const purged = await purgeRetained(env, name, values.yes === true);
      print({ purged: purged.name, image: purged.image }, () => [`purged ${purged.name}: deleted ${purged.image} and its metadata`]);
      return 0;
    }
    default:
      throw new CliError(2, `unknown command "${command}"; see berth --help`);
  }
}

/**
 * The zone mover over EC2: this host's credentials, the region from AWS_REGION or the instance
 * metadata, the agent's tag prefix and cluster. The move runs in this process; it needs no agent.
 */
async function zoneMoverOf(config: Config, progress: (line: string) => void): Promise<ZoneMover> {
  const [{ EC2Client }, { MetadataService }, { SdkEc2 }] = await Promise.all([
    import('@aws-sdk/client-ec2'),
    import('@aws-sdk/ec2-metadata-service'),
    import('../volume-plugin/backends/ebs/sdk-ec2.js'),
  ]);
  let region = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!region) {
    const imds = new MetadataService({ ...(config.BERTH_IMDS_ENDPOINT ? { endpoint: config.BERTH_IMDS_ENDPOINT } : {}), httpOptions: { timeout: 2_000 }, retries: 2 });
    region = await imds.request('/latest/meta-data/placement/region', {}).catch((err: unknown) => {
      throw new CliError(3, `no region: set AWS_REGION, or run on an EC2 instance (instance metadata: ${errorMessage(err)})`);
    });
  }
  const client = new EC2Client({ region, ...(config.BERTH_EC2_ENDPOINT ? { endpoint: config.BERTH_EC2_ENDPOINT } : {}), ...EC2_CLIENT_SETTINGS });
  return createZoneMover({ ec2: new SdkEc2(client, { refusals: 'sdk' }), keys: tagKeys(config.BERTH_TAG_PREFIX), ...(config.BERTH_CLUSTER ? { cluster: config.BERTH_CLUSTER } : {}), ...(config.BERTH_ENVIRONMENT ? { environment: config.BERTH_ENVIRONMENT } : {}), progress });
}

async function moveCommand(
  env: CliEnv,
  name: string,
  values: { zone?: string; host?: string; 'from-snapshot'?: string; abort?: boolean; status?: boolean },
  usage: string,
  json: boolean,
  print: (value: unknown, lines: () => string[]) => void,
): Promise<number> {
  try {
    assertVolumeName(name);
  } catch (err) {
    throw new CliError(2, errorMessage(err));
  }
  const modes = [values.zone !== undefined, values.abort === true, values.status === true].filter(Boolean).length;
  if (modes !== 1) throw new CliError(2, `move needs exactly one of --zone ZONE, --status or --abort; ${usage}`);
  if ((values.host !== undefined || values['from-snapshot'] !== undefined) && values.zone === undefined) throw new CliError(2, `--host and --from-snapshot go with --zone; ${usage}`);
  if (values.zone !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d+[a-z]$/.test(values.zone)) throw new CliError(2, `--zone ${values.zone} is not an availability zone name (like eu-west-1b)`);
  const snap = values['from-snapshot'];
  if (snap !== undefined && snap !== 'latest' && !/^snap-[0-9a-f]{8,17}$/.test(snap)) throw new CliError(2, `--from-snapshot takes latest or a snapshot id (snap-…), not ${snap}`);
  const say = json ? () => undefined : env.out;
  const mover = await (env.zoneMover ?? ((p) => zoneMoverOf(env.config, p)))(say);
  const fail = (err: unknown): never => {
    const code = (err as { code?: string }).code;
    throw new CliError(code === 'INVALID_ARGUMENT' ? 2 : 1, errorMessage(err));
  };
  if (values.status) {
    const status = await mover.status(name).catch(fail);
    print(status ?? { moving: false }, () => (status ? [`${name} (${status.volumeId}) is moving to ${status.journal.to}: step ${status.journal.step}${status.journal.snapshotId ? `, snapshot ${status.journal.snapshotId}` : ''}${status.journal.newVolumeId ? `, new volume ${status.journal.newVolumeId}` : ''}`] : [`${name} is not moving`]));
    return 0;
  }
  if (values.abort) {
    const done = await mover.abort(name).catch(fail);
    print(done, () => [`move of ${name} aborted: ${done.volumeId} stays its volume${done.retired ? `; ${done.retired} (made by the move) is retired, not deleted` : ''}`]);
    return 0;
  }
  let fromSnapshot: string | undefined;
  if (snap !== undefined) {
    // The operator is told the snapshot's age (the data a restore from it loses) before anything is done.
    const plan = await mover.planFromSnapshot(name).catch(fail);
    const told = `the latest completed snapshot of ${name} (${plan.volumeId} in ${plan.zone}) is ${plan.snapshotId}, taken ${plan.startTime.toISOString()}, ${formatAge(plan.ageMs)} ago: everything written to ${plan.volumeId} since then is lost by restoring from it`;
    if (snap === 'latest') {
      print({ plan, restored: false }, () => [told, `to restore from it: berth move ${name} --zone ${values.zone} --from-snapshot ${plan.snapshotId}`, 'nothing was changed']);
      return 1;
    }
    if (snap !== plan.snapshotId) throw new CliError(1, `${told}; ${snap} is not it: nothing was changed`);
    say(told);
    fromSnapshot = snap;
  }
  const result = await mover.move({ name, zone: values.zone!, ...(values.host ? { host: values.host } : {}), ...(fromSnapshot ? { fromSnapshot } : {}) }).catch(fail);
  print(result, () =>
    result.already
      ? [`${name} is already in ${result.to.zone} (${result.to.volumeId}); nothing was changed`]
      : [
          `moved ${name}: ${result.from.volumeId} (${result.from.zone}) -> ${result.to.volumeId} (${result.to.zone}), from snapshot ${result.snapshotId}`,
          `${result.from.volumeId} is retired (tagged, not deleted) and kept until ${result.retainUntil}, as is the snapshot; start the node in ${result.to.zone}`,
        ],
  );
  return 0;
}

// Run when executed (also through a symlink such as /usr/local/bin/berth), not when imported by tests.
const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isMain) {
  const argv = process.argv.slice(2);
  // A reader that goes away (berth status | head -1) ends the output, not the command.
  let closed = false;
  const onStreamError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    closed = true;
  };
  process.stdout.on('error', onStreamError);
  process.stderr.on('error', onStreamError);
  const out = (line: string) => {
    if (!closed) process.stdout.write(`${line}\n`);
  };
  const tty = process.stderr.isTTY;
  const progress = tty ? (msg: string) => process.stderr.write(`\r\x1b[2K${msg}`) : () => undefined;
  run(argv, () => envFromProcess(out), progress).then(
    (code) => {
      if (tty) process.stderr.write('\r\x1b[2K');
      process.exitCode = code;
    },
    (err: unknown) => {
      if (tty) process.stderr.write('\r\x1b[2K');
      const code = err instanceof CliError ? err.exitCode : 1;
      const message = errorMessage(err);
      if (JSON_ERRORS(argv)) out(JSON.stringify({ error: message, exitCode: code }));
      else if (!closed) process.stderr.write(`berth: ${message}\n`);
      process.exitCode = code;
    },
  );
}
