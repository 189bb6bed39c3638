import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { silentLogger } from '../lib/logger.js';
import { CertRefresher } from '../agent/cert-refresher.js';
import { ChallTestSrvDns01 } from './helpers/challtestsrv-dns01.js';
import { noPebbleReason, startPebble, type Pebble } from './helpers/pebble.js';
import { startS3rver, type S3rverServer } from './helpers/s3server.js';
import { renewIfDue } from '../traefik/renewer/renewer.js';
import { Route53Client } from '@aws-sdk/client-route-53';
import { Route53Dns01 } from '../traefik/renewer/dns-providers.js';
import { Route53Model } from './aws/route53-model.js';

/**
 * The renewer against a real ACME server: Debian's pebble, with
 * pebble-challtestsrv as the DNS server it validates DNS-01 challenges against
 * (test/helpers/pebble.ts), then the upload to an S3-compatible server and the
 * refresher installing it.
 */
const DOMAINS = ['db.example.test', '*.db.example.test'];
const BUCKET = 'env';

describe.skipIf(noPebbleReason)(`renewer with pebble${noPebbleReason ? ` (skipped: ${noPebbleReason})` : ''}`, () => {
  let pebble: Pebble;
  let dir: string;
  let directoryUrl: string;
  let dns: ChallTestSrvDns01;
  let mgmtUrl: string;
  let s3server: S3rverServer;
  let s3: S3Client;

  beforeAll(async () => {
    pebble = await startPebble();
    directoryUrl = pebble.directoryUrl;
    mgmtUrl = pebble.managementUrl;
    dns = pebble.dns;
    dir = mkdtempSync(join(tmpdir(), 'berth-pebble-'));
    s3server = await startS3rver(dir, [BUCKET]);
    s3 = s3server.s3;
  }, 60_000);

  afterAll(async () => {
    pebble?.stop();
    await s3server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const deps = (now?: () => Date) => ({
    s3,
    bucket: BUCKET,
    certObject: 'tls/cert.pem',
    keyObject: 'tls/key.pem',
    accountKeyObject: 'tls/account.pem',
    domains: DOMAINS,
    email: 'ops@example.test',
    directoryUrl,
    dns,
    logger: silentLogger,
    ...(now ? { now } : {}),
  });
  const object = async (key: string) => (await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body?.transformToString()) ?? '';

  it('issues a wildcard certificate by DNS-01, uploads it, and the refresher installs it', async () => {
    const result = await renewIfDue(deps());
    expect(result.action).toBe('renewed');
    const cert = new X509Certificate(await object('tls/cert.pem'));
    expect(cert.subjectAltName).toContain('DNS:db.example.test');
    expect(cert.subjectAltName).toContain('DNS:*.db.example.test');
    expect(await object('tls/account.pem')).toMatch(/PRIVATE KEY/);

    const hostDir = join(dir, 'host');
    const refresher = new CertRefresher({ s3, bucket: BUCKET, certObject: 'tls/cert.pem', keyObject: 'tls/key.pem', certDir: join(hostDir, 'certs'), dynamicFile: join(hostDir, 'certificates.yml'), domains: DOMAINS, pollMs: 60_000, logger: silentLogger, registry: new Registry() });
    mkdirSync(hostDir, { recursive: true });
    expect(await refresher.refreshOnce()).toBe('updated');
    expect(refresher.servedCertificate?.fingerprint).toBe(cert.fingerprint256);
    expect(existsSync(join(hostDir, 'certificates.yml'))).toBe(true);
  });

  it('through Route 53 (a model whose UPSERT replaces the record set, served by challtestsrv\'s DNS): apex and wildcard both validate when the first change reaches Route 53 last', async () => {
    // Route 53 → the DNS pebble asks: every applied record set replaces what challtestsrv serves for that name.
    const served = new ChallTestSrvDns01(mgmtUrl);
    const model = new Route53Model({
      zones: { ZTEST: 'example.test' },
      arrivalDelayMs: (n) => (n === 0 ? 300 : 0), // concurrent requests: the first one is slow on the wire
      insyncAfterMs: 600,
      onApply: async (name, _type, values) => {
        const fqdn = name.replace(/\.$/, '');
        await served.clearTxt(fqdn);
        for (const v of values ?? []) await served.setTxt(fqdn, JSON.parse(v) as string);
      },
    });
    const route53 = new Route53Client({ region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    model.install(route53);
    const result = await renewIfDue({
      ...deps(), certObject: 'r53/cert.pem', keyObject: 'r53/key.pem', accountKeyObject: 'r53/account.pem',
      dns: new Route53Dns01(route53, 'ZTEST', { pollMs: 50, timeoutMs: 10_000 }),
    });
    expect(result.action).toBe('renewed');
    const cert = new X509Certificate(await object('r53/cert.pem'));
    expect(cert.subjectAltName).toContain('DNS:*.db.example.test');
    expect(model.values('ZTEST', '_acme-challenge.db.example.test')).toBeUndefined(); // cleared after issuance
  });

  it('leaves a certificate with more than 30 days alone, and renews one within 30 days of expiry', async () => {
    const before = new X509Certificate(await object('tls/cert.pem'));
    expect((await renewIfDue(deps())).action).toBe('not_due');
    expect(new X509Certificate(await object('tls/cert.pem')).serialNumber).toBe(before.serialNumber);

    const nearExpiry = () => new Date(Date.parse(before.validTo) - 10 * 86_400_000);
    const result = await renewIfDue(deps(nearExpiry));
    expect(result.action).toBe('renewed');
    const after = new X509Certificate(await object('tls/cert.pem'));
    expect(after.serialNumber).not.toBe(before.serialNumber);
    expect(after.checkPrivateKey((await import('node:crypto')).createPrivateKey(await object('tls/key.pem')))).toBe(true);
  });
});
