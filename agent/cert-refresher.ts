import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chown, mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { writeFileAtomic } from '../lib/atomic-file.js';
import { errorMessage } from '../lib/errors.js';

/**
 * Keeps the TLS certificate Traefik serves fresh from S3 (docs/design.md §7).
 *
 * Every poll asks S3 for the certificate with If-None-Match = the last ETag, so
 * a quiet hour costs one 304 a minute. A new upload is fetched with its key and
 * validated before anything on disk changes. The pair is written under new
 * names (<fingerprint>.crt/.key) and only then does the one watched dynamic
 * file switch to them: Traefik reloads exactly once and can never read a key
 * that does not belong to the certificate beside it. A bad upload is logged,
 * counted, and the served certificate stays.
 */

export interface CertRefresherDeps {
  s3: Pick<S3Client, 'send'>;
  bucket: string;
  certObject: string;
  keyObject: string;
  certDir: string;
  dynamicFile: string;
  domains: readonly string[];
  pollMs: number;
  /** Owner of the written pair: the user Traefik runs as, so the 0600 key is readable by it alone. */
  fileOwner?: { uid: number; gid: number };
  logger: Logger;
  registry?: Registry;
  now?: () => Date;
}

export type RefreshResult = 'unchanged' | 'updated' | 'rejected' | 'failed';

interface Served {
  fingerprint: string;
  validTo: Date;
}

/** Why an upload is refused; also the `reason` label of the failure metric. */
export class CertRejected extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'CertRejected';
  }
}

/** Whether the certificate's SANs cover a configured name (a wildcard name needs that wildcard). */
export function coversName(cert: X509Certificate, name: string): boolean {
  if (name.startsWith('*.')) {
    const sans = (cert.subjectAltName ?? '').split(',').map((s) => s.trim().toLowerCase());
    return sans.includes(`dns:${name.toLowerCase()}`);
  }
  return cert.checkHost(name, { subject: 'never', wildcards: true }) !== undefined;
}

/** Parses and checks an uploaded pair against the served certificate. */
export function validatePair(certPem: string, keyPem: string, opts: { domains: readonly string[]; current?: Served; now: Date }): X509Certificate {
  if (certPem.trim() === '') throw new CertRejected('empty', 'the certificate object is empty');
  if (keyPem.trim() === '') throw new CertRejected('empty', 'the key object is empty');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new CertRejected('unparsable', `the certificate does not parse: ${errorMessage(err)}`);
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    // The parser's message can quote key material: say only that it failed.
    throw new CertRejected('unparsable', 'the private key does not parse');
  }
  if (!cert.checkPrivateKey(key)) throw new CertRejected('key_mismatch', 'the private key does not belong to the certificate');
  const validFrom = new Date(cert.validFrom);
  const validTo = new Date(cert.validTo);
  if (validTo <= opts.now) throw new CertRejected('expired', `the certificate expired on ${validTo.toISOString()}`);
  if (validFrom > opts.now) throw new CertRejected('not_yet_valid', `the certificate is valid only from ${validFrom.toISOString()}`);
  if (opts.current && validTo <= opts.current.validTo) {
    throw new CertRejected(
      'not_newer',
      `the certificate expires on ${validTo.toISOString()}, not later than the served one (${opts.current.validTo.toISOString()})`,
    );
  }
  const uncovered = opts.domains.filter((d) => !coversName(cert, d));
  if (uncovered.length > 0) throw new CertRejected('names', `the certificate does not cover ${uncovered.join(', ')} (it has ${cert.subjectAltName ?? 'no SANs'})`);
  return cert;
}

function dynamicConfig(certFile: string, keyFile: string, cert: X509Certificate): string {
  return [
    '# Written by berth; do not edit. Rewriting this file is what makes Traefik reload.',
    `# certificate ${cert.fingerprint256} serial ${cert.serialNumber} valid until ${new Date(cert.validTo).toISOString()}`,
    'tls:',
    '  stores:',
    '    default:',
    '      defaultCertificate:',
    `        certFile: ${JSON.stringify(certFile)}`,
    `        keyFile: ${JSON.stringify(keyFile)}`,
    '  certificates:',
    `    - certFile: ${JSON.stringify(certFile)}`,
    `      keyFile: ${JSON.stringify(keyFile)}`,
    '',
  ].join('\n');
}

const stemOf = (fingerprint256: string) => fingerprint256.replace(/:/g, '').toLowerCase().slice(0, 32);

export class CertRefresher {
  private etag: string | undefined;
  private served: Served | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RefreshResult> | undefined;
  private stopped = true;
  private readonly now: () => Date;
  private readonly metrics;

  constructor(private readonly deps: CertRefresherDeps) {
    this.now = deps.now ?? (() => new Date());
    const registers = deps.registry ? [deps.registry] : [];
    this.metrics = {
      expiry: new Gauge({ name: 'berth_cert_expiry_timestamp_seconds', help: 'Expiry of the served TLS certificate (unix seconds)', registers }),
      lastSuccess: new Gauge({ name: 'berth_cert_last_success_timestamp_seconds', help: 'Last poll that reached S3 and ended with a valid certificate served', registers }),
      failures: new Counter({ name: 'berth_cert_refresh_failures_total', help: 'Rejected uploads and failed polls, by reason', labelNames: ['reason'] as const, registers }),
      requests: new Counter({ name: 'berth_cert_s3_requests_total', help: 'S3 GetObject requests by result', labelNames: ['result'] as const, registers }),
    };
    // CloudWatch alarms have no clock in their math: the time left is exported as it is (docs/operations.md, "Watch the fleet").
    const left = () => (this.served ? (this.served.validTo.getTime() - this.now().getTime()) / 1000 : undefined);
    new Gauge({
      name: 'berth_cert_expires_in_seconds',
      help: 'Seconds until the served TLS certificate expires; 0 while none is served (an alarm on it then fires, as it should)',
      registers,
      collect() {
        this.set(Math.max(0, left() ?? 0));
      },
    });
  }

  /** True once a valid certificate is served, else why not (for /readyz). */
  readiness(): true | string {
    return this.served ? true : 'no valid TLS certificate has been installed yet';
  }

  get servedCertificate(): Readonly<Served> | undefined {
    return this.served;
  }

  /** Reads what is served now (the dynamic file's certificate), then polls every pollMs. */
  async start(): Promise<void> {
    await this.loadServed();
    this.stopped = false;
    const tick = async () => {
      await this.refreshOnce();
      if (!this.stopped) this.timer = setTimeout(tick, this.deps.pollMs);
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One poll. Never throws: the outcome is logged and counted. */
  refreshOnce(): Promise<RefreshResult> {
    this.running ??= this.poll().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async poll(): Promise<RefreshResult> {
    const { bucket, certObject, keyObject, logger } = this.deps;
    let certPem: string;
    let etag: string | undefined;
    try {
      const res = await this.deps.s3.send(new GetObjectCommand({ Bucket: bucket, Key: certObject, IfNoneMatch: this.etag }));
      certPem = (await res.Body?.transformToString('utf8')) ?? '';
      etag = res.ETag;
      this.metrics.requests.inc({ result: 'changed' });
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 304) {
        this.metrics.requests.inc({ result: 'not_modified' });
        if (this.served) this.metrics.lastSuccess.set(this.now().getTime() / 1000);
        return 'unchanged';
      }
      return this.failed('s3', `could not read s3://${bucket}/${certObject}: ${(err as Error).name}: ${errorMessage(err)}`);
    }

    let keyPem: string;
    try {
      const res = await this.deps.s3.send(new GetObjectCommand({ Bucket: bucket, Key: keyObject }));
      keyPem = (await res.Body?.transformToString('utf8')) ?? '';
      this.metrics.requests.inc({ result: 'key' });
    } catch (err) {
      return this.failed('s3', `could not read s3://${bucket}/${keyObject}: ${(err as Error).name}: ${errorMessage(err)}`);
    }

    let cert: X509Certificate;
    try {
      cert = validatePair(certPem, keyPem, { domains: this.deps.domains, current: this.served, now: this.now() });
    } catch (err) {
      if (!(err instanceof CertRejected)) throw err;
      if (this.served && err.reason === 'not_newer' && certMatchesServed(certPem, this.served)) {
        // The upload is what is already served (e.g. after an agent restart): nothing to do.
        this.etag = etag;
        this.metrics.lastSuccess.set(this.now().getTime() / 1000);
        return 'unchanged';
      }
      // A key that does not match may be half of an upload still in progress: look again next poll.
      if (err.reason !== 'key_mismatch') this.etag = etag;
      this.metrics.failures.inc({ reason: err.reason });
      logger.error({ reason: err.reason, object: `s3://${bucket}/${certObject}` }, `rejected the uploaded certificate: ${err.message}; the served certificate stays`);
      return 'rejected';
    }

    try {
      await this.install(certPem, keyPem, cert);
    } catch (err) {
      return this.failed('write', `could not install the new certificate: ${errorMessage(err)}; the served certificate stays`);
    }
    this.etag = etag;
    this.served = { fingerprint: cert.fingerprint256, validTo: new Date(cert.validTo) };
    this.metrics.expiry.set(this.served.validTo.getTime() / 1000);
    this.metrics.lastSuccess.set(this.now().getTime() / 1000);
    logger.info({ fingerprint: cert.fingerprint256, validTo: this.served.validTo.toISOString(), subjectAltName: cert.subjectAltName }, 'installed a new TLS certificate');
    return 'updated';
  }

  private failed(reason: string, message: string): RefreshResult {
    this.metrics.failures.inc({ reason });
    this.deps.logger.warn({ reason }, message);
    return 'failed';
  }

  /** New files first, then the one switch Traefik watches; older pairs are pruned after. */
  private async install(certPem: string, keyPem: string, cert: X509Certificate): Promise<void> {
    const { certDir, dynamicFile } = this.deps;
    await mkdir(certDir, { recursive: true, mode: 0o755 });
    const stem = stemOf(cert.fingerprint256);
    const certFile = join(certDir, `${stem}.crt`);
    const keyFile = join(certDir, `${stem}.key`);
    await writeFileAtomic(keyFile, keyPem, 0o600);
    await writeFileAtomic(certFile, certPem, 0o644);
    const owner = this.deps.fileOwner;
    if (owner) for (const f of [keyFile, certFile]) await chown(f, owner.uid, owner.gid);
    await writeFileAtomic(dynamicFile, dynamicConfig(certFile, keyFile, cert), 0o644);
    await this.prune(stem);
  }

  /** Keeps the new pair and the one it replaces (for a hand rollback); removes older ones. */
  private async prune(keep: string): Promise<void> {
    const keepStems = new Set([keep, ...(this.served ? [stemOf(this.served.fingerprint)] : [])]);
    const entries = await readdir(this.deps.certDir).catch(() => [] as string[]);
    for (const f of entries) {
      if (/^[0-9a-f]{32}\.(crt|key)$/.test(f) && !keepStems.has(f.slice(0, 32))) await unlink(join(this.deps.certDir, f)).catch(() => undefined);
    }
  }

  /** What the dynamic file points at now, if it is a valid pair (after a restart). */
  private async loadServed(): Promise<void> {
    const text = await readFile(this.deps.dynamicFile, 'utf8').catch(() => undefined);
    const certFile = text && /certFile: "([^"]+)"/.exec(text)?.[1];
    const keyFile = text && /keyFile: "([^"]+)"/.exec(text)?.[1];
    if (!certFile || !keyFile) return;
    try {
      const cert = new X509Certificate(await readFile(certFile));
      if (!cert.checkPrivateKey(createPrivateKey(await readFile(keyFile)))) throw new Error('key does not match');
      this.served = { fingerprint: cert.fingerprint256, validTo: new Date(cert.validTo) };
      this.metrics.expiry.set(this.served.validTo.getTime() / 1000);
    } catch (err) {
      this.deps.logger.warn({ certFile, err: errorMessage(err) }, 'the certificate the dynamic file names is not usable; waiting for one from S3');
    }
  }
}

function certMatchesServed(certPem: string, served: Served): boolean {
  try {
    return new X509Certificate(certPem).fingerprint256 === served.fingerprint;
  } catch {
    return false;
  }
}
