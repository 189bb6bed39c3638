import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod/mini';
import '../lib/zod-english.js';
import { DEFAULT_EC2_SCHEDULE_PREFIX } from '../lib/ec2-schedule-object.js';
import { DEFAULT_TAG_PREFIX, ENVIRONMENT_PATTERN } from '../lib/node-contract.js';
import type { HostPaths } from '../volume-plugin/host-paths.js';
import { DEADLINES } from '../volume-plugin/budgets.js';
import { Filesystems, SizeSchema } from '../volume-plugin/options.js';

/**
 * The agent's whole configuration: `BERTH_*` environment variables, optionally
 * on top of a JSON file named by BERTH_CONFIG_FILE (same keys, without the
 * prefix, in camelCase or as the variable name). Validated once at start; a
 * bad value stops the agent with a message naming the variable.
 */

// Each setting is `setting(schema, description)` (zod/mini has no methods to chain).
const setting = <T extends z.ZodMiniType>(schema: T, description: string): T => schema.check(z.describe(description));
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.pipe(z.coerce.number(), z.int().check(z.minimum(min), z.maximum(max)));
const seconds = (def: number) => z._default(int(1), def);
const list = z.pipe(z.string(), z.transform((v: string) => v.split(',').map((s) => s.trim()).filter(Boolean)));
const hostPort = z.string().check(z.regex(/^[^:]+:\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:9470'));
const bool = z.pipe(z.enum(['true', 'false']), z.transform((v) => v === 'true'));
const tagValue = z.string().check(z.regex(/^[\w.:/=+@-]{1,128}$/, 'must be 1-128 characters valid in an EC2 tag value'));

// --- Time budgets -----------------------------------------------------------
const MOUNT_SECONDS = DEADLINES.mount / 1000;
/**
 * The defaults of every time setting, in one place (docs/configuration.md,
 * "Time budgets"). A wait that serves a Docker call is a share of that call's
 * deadline (volume-plugin/budgets.ts, dockerd's): the waits one Mount may add
 * up (another host letting go, then the device appearing) leave it time to
 * fail with its reason and undo before dockerd gives up on it.
 */
export const TIME_BUDGETS = {
  /** A Mount waits this long for another running host to release the volume: half the Mount's deadline. */
  moveWaitSeconds: MOUNT_SECONDS / 2,
  /** Then this long for the block device after EC2 reports the attachment: a quarter of it. */
  deviceWaitSeconds: MOUNT_SECONDS / 4,
  /** Start-up waits this long for instance credentials: one Mount deadline (Mounts meanwhile wait in backends/deferred.ts, less). */
  credentialsWaitSeconds: MOUNT_SECONDS,
  /** SIGTERM waits this long for calls in flight: half the deadline of the calls that are not Create or Mount. */
  shutdownGraceSeconds: DEADLINES.other / 1000 / 2,
  /** A volume stays mounted this long after its last Unmount (unmount-grace.ts). */
  unmountGraceSeconds: 10,
  /** An unused EBS volume stays attached this long, for a quick restart. */
  idleDetachSeconds: 600,
  /** Periods: the engine reference check, the reconcile pass, the certificate poll. */
  referenceCheckSeconds: 60,
  /** The online grow check: one sysfs read per mounted volume (volume-plugin/online-grow.ts). */
  growCheckSeconds: 10,
  reconcileIntervalSeconds: 60,
  certPollSeconds: 60,
} as const;
// -----------------------------------------------------------------------------

/** A health address other hosts cannot reach: 127.0.0.0/8 or localhost. */
const isLoopback = (addr: string) => /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost):\d+$/i.test(addr);

export const ConfigSchema = z.object({
  BERTH_BACKEND: setting(z._default(z.enum(['auto', 'loop', 'ebs']), 'auto'), 'volume backend; auto picks ebs on EC2, loop elsewhere'),
  BERTH_PLUGIN_NAME: setting(z._default(z.string().check(z.regex(/^[a-z0-9][a-z0-9_.-]*$/)), 'berth'), 'Docker driver name; the socket is <plugin dir>/<name>.sock'),
  BERTH_PLUGIN_DIR: setting(z._default(z.string(), '/run/docker/plugins'), 'directory of the plugin socket'),
  BERTH_STATE_DIR: setting(z._default(z.string(), '/var/lib/berth'), 'state file, mountpoints (mounts/) and loop images (images/)'),
  BERTH_DEFAULT_SIZE: setting(z._default(SizeSchema, 10 * 2 ** 30), 'size of a volume created without -o size'),
  BERTH_DEFAULT_FS: setting(z._default(z.enum(Filesystems), 'ext4'), 'filesystem of a volume created without -o fs'),
  BERTH_HEALTH_ADDR: setting(z._default(hostPort, '127.0.0.1:9470'), 'local endpoint for /healthz, /readyz, /metrics, /status'),
  BERTH_HEALTH_ALLOW_REMOTE: setting(z._default(bool, false), 'let BERTH_HEALTH_ADDR be an address other hosts can reach (only /healthz and /readyz answer them)'),
  BERTH_LOG_LEVEL: setting(z._default(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']), 'info'), 'pino log level'),
  BERTH_SHUTDOWN_GRACE_SECONDS: setting(seconds(TIME_BUDGETS.shutdownGraceSeconds), 'how long SIGTERM waits for in-flight plugin calls'),
  BERTH_UNMOUNT_GRACE_SECONDS: setting(
    z._default(int(0, 3600), TIME_BUDGETS.unmountGraceSeconds),
    'how long a volume stays mounted after its last container unmounts it, so a restart or the next docker run skips fsck and mount; 0: unmount at once',
  ),
  BERTH_DOCKER_HOST: setting(
    z.optional(z.string().check(z.regex(/^(off|unix:\/\/\/.+)$/, 'must be unix:///path/to/docker.sock or off'))),
    'Docker engine API socket (unix:///var/run/docker.sock) asked which volumes containers hold, to drop references dockerd will never Unmount; unset or off: no check',
  ),
  BERTH_REFERENCE_CHECK_SECONDS: setting(seconds(TIME_BUDGETS.referenceCheckSeconds), 'period of the check of volume references against the Docker engine'),
  BERTH_GROW_CHECK_SECONDS: setting(seconds(TIME_BUDGETS.growCheckSeconds), "period of the check whether a mounted volume's device grew (its filesystem is then grown online)"),

  BERTH_SYSFS_ROOT: setting(z._default(z.string(), '/sys'), 'sysfs root: EC2 detection for BERTH_BACKEND=auto, NVMe serials of EBS volumes'),
  BERTH_DEV_ROOT: setting(z._default(z.string(), '/dev'), 'directory of block device nodes'),

  // ebs backend
  BERTH_HOST_ID: setting(z.optional(tagValue), "logical host id; default: the instance's <prefix>host tag, else its Auto Scaling group"),
  BERTH_CLUSTER: setting(z.optional(tagValue), 'scopes volume lookups and new volumes to this cluster tag'),
  // The environment is part of a volume's identity (lib/node-contract.ts): infra sets it on every host.
  BERTH_ENVIRONMENT: setting(
    z.optional(z.string().check(z.regex(ENVIRONMENT_PATTERN, 'must be an environment name: 1-20 lowercase letters, digits or "-", starting with a letter'))),
    'scopes volume lookups and new volumes to this environment tag (<prefix>environment) as well; unset: volumes of any environment',
  ),
  BERTH_TAG_PREFIX: setting(
    z._default(z.string().check(z.regex(/^[\w.:/=+@-]{1,32}$/), z.refine((v) => !v.toLowerCase().startsWith('aws:'), 'aws: is reserved')), DEFAULT_TAG_PREFIX),
    'prefix of every tag berth reads or writes',
  ),
  BERTH_EC2_ENDPOINT: setting(z.optional(z.url()), 'EC2 endpoint override (EC2-compatible APIs, tests)'),
  BERTH_IMDS_ENDPOINT: setting(z.optional(z.url()), 'instance metadata endpoint override (default http://169.254.169.254)'),
  BERTH_CREDENTIALS_WAIT_SECONDS: setting(seconds(TIME_BUDGETS.credentialsWaitSeconds), 'how long start-up waits for instance credentials'),
  BERTH_ATTACH_CONCURRENCY: setting(z._default(int(1, 200), 50), 'attachments in flight at once (EC2 allows bursts of 50, then 5/s)'),
  BERTH_IDLE_DETACH_SECONDS: setting(seconds(TIME_BUDGETS.idleDetachSeconds), 'how long a volume no container uses stays attached for a quick restart'),
  BERTH_MOVE_WAIT_SECONDS: setting(seconds(TIME_BUDGETS.moveWaitSeconds), 'how long Mount waits for another running host to release a volume'),
  BERTH_DEVICE_WAIT_SECONDS: setting(seconds(TIME_BUDGETS.deviceWaitSeconds), 'how long after EC2 reports an attachment its block device may take to appear'),
  BERTH_RECONCILE_INTERVAL_SECONDS: setting(seconds(TIME_BUDGETS.reconcileIntervalSeconds), 'period of the reconcile pass that repairs drift and refreshes readiness tags'),
  // The account's EC2 schedule (docs/design.md §6, "Sharing the account"): off unless a bucket is set.
  BERTH_EC2_SCHEDULE_BUCKET: setting(
    z.optional(z.string().check(z.regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'))),
    "S3 bucket of the account's shared EC2 schedule (<prefix><region>.json, changed by conditional writes); unset: this agent paces its EC2 calls alone",
  ),
  BERTH_EC2_SCHEDULE_PREFIX: setting(
    z._default(z.string().check(z.regex(/^([A-Za-z0-9!_.*'()-]+\/)*$/, 'must end with "/" (e.g. ec2-schedule/)')), DEFAULT_EC2_SCHEDULE_PREFIX),
    'key prefix of the EC2 schedule in BERTH_EC2_SCHEDULE_BUCKET',
  ),

  // certificate refresher: off unless a bucket is set
  BERTH_CERT_BUCKET: setting(z.optional(z.string()), 'S3 bucket holding the TLS certificate; unset disables the refresher'),
  BERTH_CERT_OBJECT: setting(z._default(z.string(), 'tls/cert.pem'), 'object key of the certificate (PEM, leaf first)'),
  BERTH_CERT_KEY_OBJECT: setting(z._default(z.string(), 'tls/key.pem'), 'object key of the private key (PEM)'),
  BERTH_CERT_DIR: setting(z._default(z.string(), '/etc/traefik/certs'), 'where certificate and key files are written (not a watched directory)'),
  BERTH_CERT_DYNAMIC_FILE: setting(z._default(z.string(), '/etc/traefik/dynamic/certificates.yml'), 'Traefik dynamic file berth rewrites to make Traefik reload'),
  BERTH_CERT_DOMAINS: setting(z._default(list, []), 'names the certificate must cover, comma-separated (e.g. example.com,*.example.com)'),
  BERTH_CERT_FILE_OWNER: setting(
    z._default(
      z.pipe(
        z.string().check(z.regex(/^\d+:\d+$/, 'must be uid:gid')),
        z.transform((v: string) => ({ uid: Number(v.split(':')[0]), gid: Number(v.split(':')[1]) })),
      ),
      { uid: 65532, gid: 65532 },
    ),
    'uid:gid that owns the written pair: the user Traefik runs as (Dockerfile.traefik: 65532)',
  ),
  BERTH_CERT_POLL_SECONDS: setting(seconds(TIME_BUDGETS.certPollSeconds), 'how often S3 is asked for a new certificate'),
  BERTH_S3_ENDPOINT: setting(z.optional(z.url()), 'S3 endpoint override (S3-compatible stores, tests); the certificate refresher and the EC2 schedule'),
  BERTH_AWS_REGION: setting(z.optional(z.string()), "region of the S3 client (the buckets' region); default from the AWS SDK environment"),
}).check(
  z.refine((c) => c.BERTH_HEALTH_ALLOW_REMOTE === true || typeof c.BERTH_HEALTH_ADDR !== 'string' || isLoopback(c.BERTH_HEALTH_ADDR), {
    path: ['BERTH_HEALTH_ADDR'],
    // Checked along with every other setting, so one start names every problem.
    when: () => true,
    message: 'is not a loopback address, so other hosts could reach the health endpoint; use 127.0.0.1:<port>, or set BERTH_HEALTH_ALLOW_REMOTE=true to mean it',
  }),
);

export type Config = Readonly<z.infer<typeof ConfigSchema>>;

/** Variables that say where configuration comes from, not settings themselves. */
const SOURCE_VARIABLES = new Set(['BERTH_CONFIG_FILE', 'BERTH_ENV_FILE']);
/** The test harness's variables (docs/testing.md): a test run's environment reaches the agents it starts. */
const TEST_PREFIX = 'BERTH_TEST_';

/** Where berth reads and writes on this host (volume-plugin/host-paths.ts); the defaults are the settings' defaults above. */
export function hostPathsOf(config: Pick<Config, 'BERTH_SYSFS_ROOT' | 'BERTH_DEV_ROOT' | 'BERTH_STATE_DIR'>): HostPaths {
  return {
    sysfsRoot: config.BERTH_SYSFS_ROOT,
    devRoot: config.BERTH_DEV_ROOT,
    mountinfoPath: MOUNTINFO_PATH,
    procRoot: PROC_ROOT,
    stateDir: config.BERTH_STATE_DIR,
    mountsDir: join(config.BERTH_STATE_DIR, 'mounts'),
  };
}

/** The mount table of the agent's own mount namespace, the one it mounts volumes in (proc(5)). */
export const MOUNTINFO_PATH = '/proc/self/mountinfo';
const PROC_ROOT = '/proc';

/** The plugin socket, `<plugin dir>/<name>.sock`: where dockerd looks for a legacy plugin (docs/design.md §3). */
export function pluginSocketPath(config: Pick<Config, 'BERTH_PLUGIN_DIR' | 'BERTH_PLUGIN_NAME'>): string {
  return join(config.BERTH_PLUGIN_DIR, `${config.BERTH_PLUGIN_NAME}.sock`);
}

/** What a setting is for, as its schema says (the managed plugin's config.json lists these). */
export function settingDescription(name: string): string | undefined {
  const schema = (ConfigSchema.shape as Record<string, z.ZodMiniType | undefined>)[name];
  return schema && z.globalRegistry.get(schema)?.description;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function fromFile(path: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`BERTH_CONFIG_FILE ${path}: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`BERTH_CONFIG_FILE ${path}: must hold a JSON object`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const envKey = key.startsWith('BERTH_') ? key : `BERTH_${key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;
    out[envKey] = Array.isArray(value) ? value.join(',') : String(value);
  }
  return out;
}

/** Reads and validates the configuration; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const file = env.BERTH_CONFIG_FILE ? fromFile(env.BERTH_CONFIG_FILE) : {};
  const input: Record<string, unknown> = { ...file };
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith('BERTH_') && !key.startsWith(TEST_PREFIX) && !SOURCE_VARIABLES.has(key) && value !== undefined && value !== '') input[key] = value;
  }
  const known = new Set(Object.keys(ConfigSchema.shape));
  const unknown = Object.keys(input).filter((k) => !known.has(k));
  const parsed = ConfigSchema.safeParse(input);
  const problems = [
    ...unknown.map((k) => `${k}: unknown setting`),
    ...(parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message} (got ${JSON.stringify(input[String(i.path[0])])})`)),
  ];
  if (problems.length > 0 || !parsed.success) {
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  return Object.freeze(parsed.data);
}

/** Every setting at its default: what an agent started with an empty environment runs with. */
export const CONFIG_DEFAULTS: Config = loadConfig({});

/** The environment file the systemd unit reads (userdata/berth.service) and the installer writes. */
export const ENV_FILE = '/etc/berth/berth.env';

/**
 * `KEY=VALUE` lines as systemd's EnvironmentFile= reads them: blank lines and
 * lines starting with # or ; are skipped, a value may be in single or double
 * quotes. A line that is not an assignment is an error (systemd would skip
 * it with a log line nobody reads, and the setting would silently not apply).
 */
export function parseEnvFile(text: string, path = ENV_FILE): Record<string, string> {
  const out: Record<string, string> = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new ConfigError(`${path} line ${i + 1}: not KEY=VALUE: ${JSON.stringify(line.slice(0, 80))}`);
    const value = m[2]!.trim();
    const quoted = /^(["'])(.*)\1$/.exec(value);
    out[m[1]!] = quoted ? quoted[2]! : value;
  });
  return out;
}

/**
 * The configuration of the installed agent, for the CLI and the installer's
 * check: the environment file (BERTH_ENV_FILE, default ENV_FILE) with this
 * process's BERTH_* variables on top. A file this user may not read (it is
 * 0600 root) counts as absent.
 */
export function loadInstalledConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const path = env.BERTH_ENV_FILE || ENV_FILE;
  let fromFile: Record<string, string> = {};
  try {
    fromFile = parseEnvFile(readFileSync(path, 'utf8'), path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'EACCES') throw err instanceof ConfigError ? err : new ConfigError(`${path}: ${(err as Error).message}`);
  }
  const berth = Object.fromEntries(Object.entries(fromFile).filter(([k]) => k.startsWith('BERTH_')));
  return loadConfig({ ...berth, ...Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('BERTH_') && v !== undefined && v !== '')) });
}
