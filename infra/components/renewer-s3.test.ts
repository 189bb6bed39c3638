import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import * as pulumi from '@pulumi/pulumi';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import type { PolicyDocument } from '../../test/aws/iam-policy.js';
import { startS3AccessProxy, type S3AccessProxy } from '../../test/aws/s3-access.js';
import { ChangeResourceRecordSetsCommand, GetChangeCommand, Route53Client } from '@aws-sdk/client-route-53';
import { mockClient } from 'aws-sdk-client-mock';
import { allows } from '../../test/aws/iam-policy.js';
import { Route53Dns01 } from '../../traefik/renewer/dns-providers.js';
import { readIfExists, renewIfDue } from '../../traefik/renewer/renewer.js';
import { ofType, recordResources, settled, type Declared } from '../test/pulumi-mocks.js';

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

describe('the renewer\'s policy against its calls', () => {
  it('allows every S3, KMS and Route 53 request the renewer makes, and grants nothing it never uses', async () => {
    // S3: what the flows above sent through the proxy. KMS: what S3 asks of KMS on the renewer's
    // behalf for SSE-KMS objects (S3 User Guide, "Using SSE-KMS": PutObject needs kms:GenerateDataKey, GetObject kms:Decrypt).
    const s3 = proxies.flatMap((p) => p.seen);
    const kms = [...new Set(s3.map((r) => r.action))].flatMap((a) => (a === 's3:PutObject' ? ['kms:GenerateDataKey'] : a === 's3:GetObject' ? ['kms:Decrypt'] : []));
    // Route 53: a DNS-01 round through the renewer's provider, answered by a client mock that records the commands.
    const route53 = new Route53Client({ region: 'us-east-1' });
    const mock = mockClient(route53);
    mock.on(ChangeResourceRecordSetsCommand).resolves({ ChangeInfo: { Id: '/change/C1', Status: 'PENDING', SubmittedAt: new Date() } });
    mock.on(GetChangeCommand).resolves({ ChangeInfo: { Id: '/change/C1', Status: 'INSYNC', SubmittedAt: new Date() } });
    const dns = new Route53Dns01(route53, 'Z1', { pollMs: 1, timeoutMs: 1_000 });
    await dns.setTxt('_acme-challenge.db.example.test', 'v');
    await dns.clearTxt('_acme-challenge.db.example.test');
    const r53 = [
      ...mock.commandCalls(ChangeResourceRecordSetsCommand).map((c) => ({ action: 'route53:ChangeResourceRecordSets', resource: `arn:aws:route53:::hostedzone/${c.args[0].input.HostedZoneId!}` })),
      ...mock.commandCalls(GetChangeCommand).map((c) => ({ action: 'route53:GetChange', resource: `arn:aws:route53:::change/${c.args[0].input.Id!.replace(/^\/change\//, '')}` })),
    ];
    // Only requests the declared policy must allow (the denial tests above send some on purpose without it).
    const requests = [...s3.filter((r) => r.resource.startsWith(`arn:aws:s3:::${BUCKET}`) && allows([policy], r.action, r.resource, r.prefix !== undefined ? { 's3:prefix': r.prefix } : {})), ...r53];
    for (const r of r53) expect(allows([policy], r.action, r.resource), r.action).toBe(true);
    const used = new Set([...requests.map((r) => r.action), ...kms]);
    const granted = new Set(policy.Statement.flatMap((st) => [st.Action].flat()));
    expect([...granted].filter((a) => !used.has(a)).sort(), 'granted but never used').toEqual([]);
    expect([...used].filter((a) => !granted.has(a)).sort(), 'used but not granted').toEqual([]);
  });
});
