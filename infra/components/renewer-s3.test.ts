import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import * as pulumi from '@pulumi/pulumi';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/logger.js';
import type { PolicyDocument } from '../../test/aws/iam-policy.js';
import { startS3AccessProxy, type S3AccessProxy } from '../../test/aws/s3-access.js';
import { readIfExists, renewIfDue } from '../../traefik/renewer/renewer.js';
import { ofType, recordResources, settled, type Declared } from './mocks.js';

/**
 * The renewer against an S3 that answers as S3 answers its role: s3rver behind a proxy that
 * enforces the policy the CertificateRenewer component declares, including S3's 403 (not 404)
 * for a missing key when the role may not list the bucket.
 */
const BUCKET = 'env-bucket';
let declared: Declared[] = [];
let policy: PolicyDocument;
let root: string;
let s3server: S3rver;
let upstream: string;
const proxies: S3AccessProxy[] = [];

beforeAll(async () => {
  declared = recordResources();
  const { CertificateRenewer } = await import('./certificate-renewer.js');
  const renewer = new CertificateRenewer('tls', {
    bucketName: BUCKET, bucketRegion: 'eu-west-1', kmsKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/k', hostedZoneId: 'Z1',
    domains: ['db.example.test'], email: 'ops@example.test', code: new pulumi.asset.AssetArchive({}),
  });
  await new Promise<void>((r) => renewer.functionArn.apply(() => r()));
  await settled(declared);
  policy = JSON.parse(ofType(declared, 'aws:iam/rolePolicy:RolePolicy').find((p) => p.name === 'tls-policy')!.inputs['policy'] as string) as PolicyDocument;
  root = mkdtempSync(join(tmpdir(), 'berth-renewer-s3-'));
  s3server = new S3rver({ address: '127.0.0.1', port: 0, directory: root, silent: true, configureBuckets: [{ name: BUCKET, configs: [] }] });
  upstream = `http://127.0.0.1:${(await s3server.run()).port}`;
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await s3server?.close();
  rmSync(root, { recursive: true, force: true });
});

const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
async function s3As(doc: PolicyDocument) {
  const proxy = await startS3AccessProxy(upstream, doc);
  proxies.push(proxy);
  return { proxy, s3: new S3Client({ endpoint: proxy.endpoint, forcePathStyle: true, region: 'eu-west-1', credentials }) };
}
const admin = () => new S3Client({ endpoint: upstream, forcePathStyle: true, region: 'eu-west-1', credentials });

describe('the renewer against S3 as its declared role sees it', () => {
  it('issues the first certificate: a missing certificate and account key read as "none yet", and the new account key is stored', async () => {
    const { s3, proxy } = await s3As(policy);
    // Not an ACME server: the run stops at the directory, after the S3 part this test is about.
    const notAcme = createServer((_, res) => res.writeHead(404).end('not an ACME directory'));
    await new Promise<void>((r) => notAcme.listen(0, '127.0.0.1', r));
    const attempt = renewIfDue({
      s3, bucket: BUCKET, certObject: 'tls/cert.pem', keyObject: 'tls/key.pem', accountKeyObject: 'tls/acme-account-key.pem',
      domains: ['db.example.test'], email: 'ops@example.test', directoryUrl: `http://127.0.0.1:${(notAcme.address() as AddressInfo).port}/directory`,
      dns: { setTxt: async () => undefined, clearTxt: async () => undefined }, logger: silentLogger,
    });
    await expect(attempt).rejects.toThrow(/404/);
    notAcme.close();
    // It got past both reads (S3 said 403 to each) and stored the account key before contacting ACME.
    expect(proxy.seen.filter((r) => r.action === 's3:GetObject').map((r) => r.resource)).toEqual([`arn:aws:s3:::${BUCKET}/tls/cert.pem`, `arn:aws:s3:::${BUCKET}/tls/acme-account-key.pem`]);
    const stored = await admin().send(new GetObjectCommand({ Bucket: BUCKET, Key: 'tls/acme-account-key.pem' }));
    expect(await stored.Body!.transformToString()).toMatch(/PRIVATE KEY/);
  });

  it('reads an existing object, and reports a missing one as missing', async () => {
    const { s3 } = await s3As(policy);
    await admin().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'tls/present.pem', Body: 'hello' }));
    expect(await readIfExists(s3, BUCKET, 'tls/present.pem')).toBe('hello');
    expect(await readIfExists(s3, BUCKET, 'tls/absent.pem')).toBeUndefined();
  });

  it('fails naming s3:ListBucket when the role may not list its prefix, instead of taking every 403 for "missing"', async () => {
    const { s3 } = await s3As({ Statement: policy.Statement.filter((s) => ![s.Action].flat().includes('s3:ListBucket')) });
    await expect(readIfExists(s3, BUCKET, 'tls/absent.pem')).rejects.toThrow(/s3:ListBucket/);
  });

  it('treats a denied read of an object that exists as an error, never as "no certificate yet"', async () => {
    await admin().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'tls/cert.pem', Body: 'a certificate' }));
    const denyRead = { Sid: 'KeyUnusable', Effect: 'Deny', Action: 's3:GetObject', Resource: `arn:aws:s3:::${BUCKET}/tls/cert.pem` };
    const { s3 } = await s3As({ Statement: [...policy.Statement, denyRead] });
    await expect(readIfExists(s3, BUCKET, 'tls/cert.pem')).rejects.toMatchObject({ name: 'AccessDenied' });
  });
});
