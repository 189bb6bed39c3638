import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import { CertRefresher } from '../agent/cert-refresher.js';
import { sleep } from '../lib/sleep.js';
import { makeCert, type TestCert } from './helpers/certs.js';
import { noRootReason } from './helpers/env.js';
import { handshake, startReloadingTlsServer } from './helpers/tls-server.js';
import { startS3rver, type S3rverServer } from './helpers/s3server.js';

const BUCKET = 'env-bucket';
const DOMAINS = ['db.example.test', '*.db.example.test'];
const fp = (c: TestCert) => new X509Certificate(c.certPem).fingerprint256;

describe('certificate refresher against an S3-compatible server (s3rver)', () => {
  let s3server: S3rverServer;
  let s3: S3Client;
  let root: string;
  let certDir: string;
  let dynamicFile: string;
  let registry: Registry;
  const good = makeCert(DOMAINS, 60);
  const newer = makeCert(DOMAINS, 90);

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'berth-s3-'));
    s3server = await startS3rver(root, [BUCKET]);
    s3 = s3server.s3;
  });
  afterAll(async () => {
    await s3server.close();
    rmSync(root, { recursive: true, force: true });
  });
  beforeEach(() => {
    const dir = mkdtempSync(join(root, 'host-'));
    certDir = join(dir, 'certs');
    mkdirSync(join(dir, 'dynamic'));
    dynamicFile = join(dir, 'dynamic', 'certificates.yml');
    registry = new Registry();
  });

  const upload = async (c: Partial<TestCert>) => {
    if (c.keyPem !== undefined) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'tls/key.pem', Body: c.keyPem }));
    if (c.certPem !== undefined) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'tls/cert.pem', Body: c.certPem }));
  };
  const refresher = (over: Partial<ConstructorParameters<typeof CertRefresher>[0]> = {}) =>
    new CertRefresher({ s3, bucket: BUCKET, certObject: 'tls/cert.pem', keyObject: 'tls/key.pem', certDir, dynamicFile, domains: DOMAINS, pollMs: 200, logger: silentLogger, registry, ...(noRootReason ? {} : { fileOwner: { uid: 65532, gid: 65532 } }), ...over });
  const metric = async (name: string) => (await registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#'));

  it('installs a valid upload, then costs one 304 per poll while nothing changes', async () => {
    await upload(good);
    const r = refresher();
    expect(r.readiness()).toMatch(/no valid TLS certificate/);
    expect(await metric('berth_cert_expires_in_seconds')).toEqual(['berth_cert_expires_in_seconds 0']);
    expect(await r.refreshOnce()).toBe('updated');
    expect(r.readiness()).toBe(true);
    const dyn = readFileSync(dynamicFile, 'utf8');
    const keyFile = /keyFile: "([^"]+)"/.exec(dyn)![1]!;
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    if (!noRootReason) expect(statSync(keyFile)).toMatchObject({ uid: 65532, gid: 65532 });
    expect(readFileSync(/certFile: "([^"]+)"/.exec(dyn)![1]!, 'utf8')).toBe(good.certPem);
    for (let i = 0; i < 3; i++) expect(await r.refreshOnce()).toBe('unchanged');
    expect(await metric('berth_cert_s3_requests_total')).toEqual(
      expect.arrayContaining(['berth_cert_s3_requests_total{result="changed"} 1', 'berth_cert_s3_requests_total{result="not_modified"} 3']),
    );
    expect((await metric('berth_cert_expiry_timestamp_seconds'))[0]).toContain(String(Math.floor(Date.parse(new X509Certificate(good.certPem).validTo) / 1000)));
    // The time left, for alarms without a clock (CloudWatch): the expiry less now, within this test's run.
    const left = Number((await metric('berth_cert_expires_in_seconds'))[0]!.split(' ')[1]);
    const expected = (Date.parse(new X509Certificate(good.certPem).validTo) - Date.now()) / 1000;
    expect(Math.abs(left - expected)).toBeLessThan(60);
  });

  it('swaps certificates under a reloading TLS server with no failed handshake, within the poll interval', async () => {
    await upload(good);
    const r = refresher();
    await r.refreshOnce();
    const server = await startReloadingTlsServer(dynamicFile);
    await r.start();
    try {
      expect(await handshake(server.port, 'a.db.example.test')).toBe(fp(good));
      let failures = 0;
      let handshakes = 0;
      let sawNewAt: number | undefined;
      const uploadedAt = Date.now();
      await upload(newer);
      while (Date.now() - uploadedAt < 3_000) {
        try {
          const got = await handshake(server.port, 'a.db.example.test');
          handshakes++;
          if (got === fp(newer)) sawNewAt ??= Date.now();
          else expect(got).toBe(fp(good));
        } catch {
          failures++;
        }
      }
      expect(failures).toBe(0);
      expect(handshakes).toBeGreaterThan(50);
      expect(sawNewAt).toBeDefined();
      expect(sawNewAt! - uploadedAt).toBeLessThan(200 + 1_000); // poll interval + reload
      expect(server.reloads()).toBe(1); // exactly one reload for one new certificate
    } finally {
      await r.stop();
      await server.close();
    }
  });

  it.each([
    ['a key that does not match', () => ({ certPem: newer.certPem, keyPem: good.keyPem }), 'key_mismatch'],
    ['an older certificate than the served one', () => makeCert(DOMAINS, 30), 'not_newer'],
    ['wrong names', () => makeCert(['other.example.test'], 120), 'names'],
    ['a truncated PEM', () => ({ certPem: newer.certPem.slice(0, 200), keyPem: newer.keyPem }), 'unparsable'],
    ['an empty object', () => ({ certPem: '', keyPem: newer.keyPem }), 'empty'],
  ])('rejects %s and keeps serving the current certificate', async (_what, make, reason) => {
    await upload(good);
    const r = refresher();
    await r.refreshOnce();
    const before = readFileSync(dynamicFile, 'utf8');
    const files = readdirSync(certDir).sort();
    await upload(make());
    expect(await r.refreshOnce()).toBe('rejected');
    expect(readFileSync(dynamicFile, 'utf8')).toBe(before);
    expect(readdirSync(certDir).sort()).toEqual(files);
    expect(r.servedCertificate?.fingerprint).toBe(fp(good));
    expect(await metric('berth_cert_refresh_failures_total')).toContain(`berth_cert_refresh_failures_total{reason="${reason}"} 1`);
  });

  it('rejects an expired certificate', async () => {
    await upload(good);
    const r = refresher({ now: () => new Date(Date.now() + 61 * 86_400_000) });
    expect(await r.refreshOnce()).toBe('rejected');
    expect(r.readiness()).not.toBe(true);
    expect(await metric('berth_cert_refresh_failures_total')).toContain('berth_cert_refresh_failures_total{reason="expired"} 1');
  });

  it('picks up the key of an upload still in progress on the next poll', async () => {
    await upload(good);
    const r = refresher();
    await r.refreshOnce();
    await upload({ certPem: newer.certPem }); // the certificate landed, its key not yet
    expect(await r.refreshOnce()).toBe('rejected');
    await upload({ keyPem: newer.keyPem });
    expect(await r.refreshOnce()).toBe('updated');
    expect(r.servedCertificate?.fingerprint).toBe(fp(newer));
  });

  it('after an agent restart, serves what the dynamic file names and does not reload for the same upload', async () => {
    await upload(good);
    await refresher().refreshOnce();
    const mtime = statSync(dynamicFile).mtimeMs;
    const again = refresher({ registry: new Registry() });
    await again.start();
    await again.stop();
    expect(again.readiness()).toBe(true);
    expect(await again.refreshOnce()).toBe('unchanged');
    expect(statSync(dynamicFile).mtimeMs).toBe(mtime);
  });

  describe.skipIf(noRootReason)(`when the disk refuses writes${noRootReason ? ` (skipped: ${noRootReason})` : ''}`, () => {
    let mnt: string;
    afterEach(() => {
      execFileSync('umount', [mnt]);
    });

    it('leaves the served files intact when the disk is full', async () => {
      mnt = mkdtempSync(join(root, 'full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
      certDir = join(mnt, 'certs');
      mkdirSync(join(mnt, 'dynamic'));
      dynamicFile = join(mnt, 'dynamic', 'certificates.yml');
      await upload(good);
      const r = refresher();
      expect(await r.refreshOnce()).toBe('updated');
      const before = readFileSync(dynamicFile, 'utf8');
      const files = Object.fromEntries(readdirSync(certDir).map((f) => [f, readFileSync(join(certDir, f), 'utf8')]));
      try {
        writeFileSync(join(mnt, 'filler'), Buffer.alloc(1024 * 1024));
      } catch {
        // filled up to the last byte
      }
      await upload(newer);
      expect(await r.refreshOnce()).toBe('failed');
      expect(readFileSync(dynamicFile, 'utf8')).toBe(before);
      expect(Object.fromEntries(readdirSync(certDir).map((f) => [f, readFileSync(join(certDir, f), 'utf8')]))).toEqual(files);
      expect(await metric('berth_cert_refresh_failures_total')).toContain('berth_cert_refresh_failures_total{reason="write"} 1');
    });

    it('reports a target directory it cannot write to and keeps polling', async () => {
      mnt = mkdtempSync(join(root, 'ro-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', mnt]);
      certDir = join(mnt, 'certs');
      dynamicFile = join(mnt, 'certificates.yml');
      await upload(good);
      const r = refresher();
      expect(await r.refreshOnce()).toBe('failed');
      expect(r.readiness()).not.toBe(true);
      expect(await r.refreshOnce()).toBe('failed'); // not stuck: the ETag is not recorded for a failed install
    });
  });
});

describe('certificate refresher when S3 misbehaves (SDK boundary)', () => {
  // Mock one client instance, not the class: the s3rver tests above use real clients.
  const client = new S3Client({ region: 'us-east-1' });
  const s3mock = mockClient(client);
  afterEach(() => s3mock.reset());
  const refresher = (registry: Registry, dir: string) =>
    new CertRefresher({ s3: client, bucket: BUCKET, certObject: 'c', keyObject: 'k', certDir: join(dir, 'certs'), dynamicFile: join(dir, 'dyn.yml'), domains: DOMAINS, pollMs: 50, logger: silentLogger, registry });

  it.each([
    ['AccessDenied', new S3ServiceException({ name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'Access Denied' })],
    ['a timeout', Object.assign(new Error('socket timed out'), { name: 'TimeoutError' })],
    ['a 503', new S3ServiceException({ name: 'SlowDown', $fault: 'server', $metadata: { httpStatusCode: 503 }, message: 'Please reduce your request rate.' })],
  ])('counts %s as a failed poll, serves what it had, and keeps polling', async (_what, error) => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-s3mock-'));
    const registry = new Registry();
    s3mock.on(GetObjectCommand).rejects(error);
    const r = refresher(registry, dir);
    await r.start();
    await sleep(300);
    await r.stop();
    const calls = s3mock.commandCalls(GetObjectCommand).length;
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(calls).toBeLessThan(20); // one request per poll: no tight retry loop
    expect(await registry.getSingleMetricAsString('berth_cert_refresh_failures_total')).toContain(`reason="s3"} ${calls}`);
    rmSync(dir, { recursive: true, force: true });
  });
});
