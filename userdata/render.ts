import { readFileSync } from 'node:fs';

export interface BootstrapValues {
  /** The environment (`BERTH_ENVIRONMENT`): berth looks up and creates volumes of its cluster in this environment only. */
  readonly ENVIRONMENT: string;
  readonly CLUSTER: string;
  readonly HOST_ID: string;
  readonly REGION: string;
  readonly ARTIFACT_URI: string;
  readonly SWAP_MIB: number;
  /** ECS cluster the host joins; the berth cluster name when omitted. */
  readonly ECS_CLUSTER?: string;
  /**
   * The environment bucket, where the account's EC2 schedule lives (`BERTH_EC2_SCHEDULE_BUCKET`), and its
   * Region (`BERTH_AWS_REGION`). Omitted: the agent paces its EC2 calls alone.
   */
  readonly SCHEDULE_BUCKET?: string;
  readonly SCHEDULE_REGION?: string;
}

const SAFE = /^[A-Za-z0-9._:/@+,*-]+$/;

/**
 * Renders a template of this directory: `#@include <file>` lines take in that file, every `@@KEY@@` gets its value; refuses a missing
 * value and values that could break out of the single-quoted assignments.
 */
export function renderTemplate(file: string, values: Readonly<Record<string, string | number>>): string {
  // "#@include <file>" lines take in a file of this directory (one copy of what several parts share).
  const template = readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')
    .replace(/^#@include ([a-z0-9-]+\.sh)$/gm, (_, inc: string) => readFileSync(new URL(`./${inc}`, import.meta.url), 'utf8').trimEnd())
    // Comment lines are for readers of this directory, not for EC2's 16 KiB of userdata (shebangs and shellcheck directives stay).
    .replace(/^[ \t]*#(?!!|[ \t]*shellcheck ).*\n/gm, '');
  return template.replace(/@@([A-Z_]+)@@/g, (_, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`${file} placeholder @@${key}@@ has no value`);
    // An empty value is safe in single quotes: the template tests for it ("none").
    if (v !== '' && !SAFE.test(String(v))) throw new Error(`value for ${key} ("${String(v)}") has characters not allowed in userdata`);
    return String(v);
  });
}

/** Where host-prep.sh writes the CloudWatch agent's Prometheus scrape configuration (the agent config names it). */
export const CLOUDWATCH_PROMETHEUS_CONFIG_PATH = '/opt/aws/amazon-cloudwatch-agent/etc/berth-prometheus.yaml';

/**
 * base64 of a text file's content, with no '=' padding (the content gets trailing newlines up to
 * a multiple of 3 bytes instead), so it passes renderTemplate's character check as it is.
 */
function base64Text(content: string): string {
  const pad = (3 - (Buffer.byteLength(content) % 3)) % 3;
  return Buffer.from(content + '\n'.repeat(pad)).toString('base64');
}

/**
 * Renders userdata/host-prep.sh: the CloudWatch agent ships logs to `LOG_GROUP`, and with
 * `cloudWatch` (infra/components/monitoring-specs.ts, cloudWatchAgentConfig) also scrapes berth's
 * /metrics into the cluster's metrics log group. The two files travel as base64.
 */
export function renderHostPrep(values: { LOG_GROUP: string; cloudWatch: { agentJson: string; prometheusYaml: string } }): string {
  return renderTemplate('host-prep.sh', {
    LOG_GROUP: values.LOG_GROUP,
    PROMETHEUS_CONFIG: CLOUDWATCH_PROMETHEUS_CONFIG_PATH,
    PROMETHEUS_AGENT_JSON_ENCODED: base64Text(values.cloudWatch.agentJson),
    PROMETHEUS_YAML_ENCODED: base64Text(values.cloudWatch.prometheusYaml),
  });
}

/** Renders userdata/bootstrap.sh; refuses values that could break out of the single-quoted assignments. */
export function renderBootstrap(values: BootstrapValues): string {
  if ((values.SCHEDULE_BUCKET === undefined) !== (values.SCHEDULE_REGION === undefined)) throw new Error('bootstrap.sh: SCHEDULE_BUCKET and SCHEDULE_REGION go together');
  return renderTemplate('bootstrap.sh', { ECS_CLUSTER: values.CLUSTER, SCHEDULE_BUCKET: '', SCHEDULE_REGION: '', ...values });
}

export interface UserdataPart {
  /** cloud-init runs shell parts in the order of these names. */
  readonly filename: string;
  readonly content: string;
}

/** A cloud-init MIME multipart document of shell scripts, run in filename order once per instance. */
export function multipartUserdata(parts: readonly UserdataPart[]): string {
  const boundary = '==BERTH-USERDATA==';
  for (const p of parts) {
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(p.filename)) throw new Error(`userdata part name "${p.filename}" must be lowercase letters, digits, ".", "_" or "-"`);
    if (p.content.includes(boundary)) throw new Error(`userdata part ${p.filename} contains the MIME boundary`);
  }
  const sorted = [...parts].sort((a, b) => a.filename.localeCompare(b.filename));
  const body = sorted.map((p) => [
    `--${boundary}`,
    'MIME-Version: 1.0',
    'Content-Type: text/x-shellscript; charset="utf-8"',
    `Content-Disposition: attachment; filename="${p.filename}"`,
    '',
    p.content.endsWith('\n') ? p.content.slice(0, -1) : p.content,
  ].join('\n'));
  return [`Content-Type: multipart/mixed; boundary="${boundary}"`, 'MIME-Version: 1.0', '', ...body, `--${boundary}--`, ''].join('\n');
}
