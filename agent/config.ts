import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Filesystems, parseSize } from '../volume-plugin/options.js';

/**
 * The agent's whole configuration: `BERTH_*` environment variables, optionally
 * on top of a JSON file named by BERTH_CONFIG_FILE (same keys, without the
 * prefix, in camelCase or as the variable name). Validated once at start; a
 * bad value stops the agent with a message naming the variable.
 */

const seconds = (def: number) => z.coerce.number().int().positive().default(def);
const size = z.string().transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});
const list = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean));
const hostPort = z
  .string()
  .regex(/^[^:]+:\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:9470');

export const ConfigSchema = z.object({
  BERTH_BACKEND: z.enum(['auto', 'loop', 'ebs']).default('auto').describe('volume backend; auto picks ebs on EC2, loop elsewhere'),
  BERTH_PLUGIN_NAME: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/).default('berth').describe('Docker driver name; the socket is <plugin dir>/<name>.sock'),
  BERTH_PLUGIN_DIR: z.string().default('/run/docker/plugins').describe('directory of the plugin socket'),
  BERTH_STATE_DIR: z.string().default('/var/lib/berth').describe('state file, mountpoints (mounts/) and loop images (images/)'),
  BERTH_DEFAULT_SIZE: size.default(10 * 2 ** 30).describe('size of a volume created without -o size'),
  BERTH_DEFAULT_FS: z.enum(Filesystems).default('ext4').describe('filesystem of a volume created without -o fs'),
  BERTH_HEALTH_ADDR: hostPort.default('127.0.0.1:9470').describe('local endpoint for /healthz, /readyz, /metrics, /status'),
  BERTH_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info').describe('pino log level'),
  BERTH_SHUTDOWN_GRACE_SECONDS: seconds(30).describe('how long SIGTERM waits for in-flight plugin calls'),

  BERTH_SYSFS_ROOT: z.string().default('/sys').describe('sysfs root: EC2 detection for BERTH_BACKEND=auto, NVMe serials of EBS volumes'),
  BERTH_DEV_ROOT: z.string().default('/dev').describe('directory of block device nodes'),

  // ebs backend
  BERTH_HOST_ID: z.string().regex(/^[\w.:/=+@-]{1,128}$/, 'must be 1-128 characters valid in an EC2 tag value').optional().describe("logical host id; default: the instance's <prefix>host tag, else its Auto Scaling group"),
  BERTH_CLUSTER: z.string().regex(/^[\w.:/=+@-]{1,128}$/, 'must be 1-128 characters valid in an EC2 tag value').optional().describe('scopes volume lookups and new volumes to this cluster tag'),
  BERTH_TAG_PREFIX: z.string().regex(/^[\w.:/=+@-]{1,32}$/).refine((v) => !v.toLowerCase().startsWith('aws:'), 'aws: is reserved').default('berth:').describe('prefix of every tag berth reads or writes'),
  BERTH_EC2_ENDPOINT: z.url().optional().describe('EC2 endpoint override (EC2-compatible APIs, tests)'),
  BERTH_IMDS_ENDPOINT: z.url().optional().describe('instance metadata endpoint override (default http://169.254.169.254)'),
  BERTH_CREDENTIALS_WAIT_SECONDS: seconds(120).describe('how long start-up waits for instance credentials'),
  BERTH_ATTACH_CONCURRENCY: z.coerce.number().int().min(1).max(200).default(50).describe('attachments in flight at once (EC2 allows bursts of 50, then 5/s)'),
  BERTH_IDLE_DETACH_SECONDS: seconds(600).describe('how long a volume no container uses stays attached for a quick restart'),
  BERTH_MOVE_WAIT_SECONDS: seconds(60).describe('how long Mount waits for another running host to release a volume'),
  BERTH_DEVICE_WAIT_SECONDS: seconds(30).describe('how long after EC2 reports an attachment its block device may take to appear'),
  BERTH_RECONCILE_INTERVAL_SECONDS: seconds(60).describe('period of the reconcile pass that repairs drift and refreshes readiness tags'),

  // certificate refresher: off unless a bucket is set
  BERTH_CERT_BUCKET: z.string().optional().describe('S3 bucket holding the TLS certificate; unset disables the refresher'),
  BERTH_CERT_OBJECT: z.string().default('tls/cert.pem').describe('object key of the certificate (PEM, leaf first)'),
  BERTH_CERT_KEY_OBJECT: z.string().default('tls/key.pem').describe('object key of the private key (PEM)'),
  BERTH_CERT_DIR: z.string().default('/etc/traefik/certs').describe('where certificate and key files are written (not a watched directory)'),
  BERTH_CERT_DYNAMIC_FILE: z.string().default('/etc/traefik/dynamic/certificates.yml').describe('Traefik dynamic file berth rewrites to make Traefik reload'),
  BERTH_CERT_DOMAINS: list.default([]).describe('names the certificate must cover, comma-separated (e.g. example.com,*.example.com)'),
  BERTH_CERT_FILE_OWNER: z
    .string()
    .regex(/^\d+:\d+$/, 'must be uid:gid')
    .transform((v) => ({ uid: Number(v.split(':')[0]), gid: Number(v.split(':')[1]) }))
    .default({ uid: 65532, gid: 65532 })
    .describe('uid:gid that owns the written pair: the user Traefik runs as (Dockerfile.traefik: 65532)'),
  BERTH_CERT_POLL_SECONDS: seconds(60).describe('how often S3 is asked for a new certificate'),
  BERTH_S3_ENDPOINT: z.url().optional().describe('S3 endpoint override (S3-compatible stores, tests)'),
  BERTH_AWS_REGION: z.string().optional().describe('region of the S3 client; default from the AWS SDK environment'),
});

export type Config = Readonly<z.infer<typeof ConfigSchema>>;

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
    if (key.startsWith('BERTH_') && key !== 'BERTH_CONFIG_FILE' && value !== undefined && value !== '') input[key] = value;
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
