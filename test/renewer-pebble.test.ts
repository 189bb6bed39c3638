import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { freePort } from './helpers/env.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import * as acme from 'acme-client';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { silentLogger } from '../lib/logger.js';
import { CertRefresher } from '../agent/cert-refresher.js';
import { sleep } from '../lib/sleep.js';
import { ChallTestSrvDns01 } from './helpers/challtestsrv-dns01.js';
import { renewIfDue } from '../traefik/renewer/renewer.js';
import { Route53Client } from '@aws-sdk/client-route-53';
import { Route53Dns01 } from '../traefik/renewer/dns-providers.js';
import { Route53Model } from './aws/route53-model.js';

/**
 * The renewer against a real ACME server: Debian's pebble, with
 * pebble-challtestsrv as the DNS server it validates DNS-01 challenges against,
 * then the upload to an S3-compatible server and the refresher installing it.
 */
const haveTools = ['pebble', 'pebble-challtestsrv', 'openssl'].every((t) => {
  try {
    execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});
const skipReason = haveTools ? undefined : 'needs pebble, pebble-challtestsrv and openssl (apt-get install pebble openssl)';

const DOMAINS = ['db.example.test', '*.db.example.test'];
const BUCKET = 'env';

describe.skipIf(skipReason)(`renewer with pebble${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const procs: ChildProcess[] = [];
  let dir: string;
  let directoryUrl: string;
  let dns: ChallTestSrvDns01;
  let mgmtUrl: string;
  let s3server: S3rver;
  let s3: S3Client;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-pebble-'));
    // pebble ships no certificate for its own HTTPS listener: make a CA and a localhost certificate.
    const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=berth test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-keyout', 'key.pem', '-out', 'req.csr');
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    ossl('x509', '-req', '-in', 'req.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'ext.cnf', '-out', 'cert.pem');
    acme.axios.defaults.httpsAgent = new HttpsAgent({ ca: readFileSync(join(dir, 'ca.pem')) });

    const [dnsPort, mgmtPort, acmePort, pebbleMgmt] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    procs.push(
      spawn('pebble-challtestsrv', ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${mgmtPort}`], { stdio: 'ignore' }),
    );
    writeFileSync(
      join(dir, 'pebble.json'),
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${acmePort}`,
          managementListenAddress: `127.0.0.1:${pebbleMgmt}`,
          certificate: join(dir, 'cert.pem'),
          privateKey: join(dir, 'key.pem'),
          httpPort: 5002,
          tlsPort: 5001,
          ocspResponderURL: '',
          externalAccountBindingRequired: false,
        },
      }),
    );
    procs.push(
      spawn('pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], {
        stdio: 'ignore',
        env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_AUTHZREUSE: '0', PEBBLE_WFE_NONCEREJECT: '0' },
      }),
    );
    directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
    mgmtUrl = `http://127.0.0.1:${mgmtPort}`;
    dns = new ChallTestSrvDns01(mgmtUrl);
    for (let i = 0; i < 100; i++) {
      try {
        await acme.axios.get(directoryUrl);
        break;
      } catch {
        await sleep(100);
      }
    }

    mkdirSync(join(dir, 's3'));
    s3server = new S3rver({ address: '127.0.0.1', port: 0, directory: join(dir, 's3'), silent: true, configureBuckets: [{ name: BUCKET, configs: [] }] });
    const { port } = await s3server.run();
    s3 = new S3Client({ endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  }, 60_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGTERM');
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
