import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../lib/sleep.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { makeCert } from './helpers/certs.js';
import { noLoopReason } from './helpers/env.js';
import { S3RVER_CREDENTIALS, startS3rver, type S3rverServer } from './helpers/s3server.js';

/** The agent wired from its BERTH_CERT_* settings: readiness waits for a certificate, then serves it. */
describe.skipIf(noLoopReason)(`agent with the certificate refresher configured${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: string;
  let s3server: S3rverServer;
  let endpoint: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-agent-certs-'));
    s3server = await startS3rver(dir, ['env']);
    endpoint = s3server.endpoint;
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey });
  });
  afterAll(async () => {
    process.env = saved;
    await s3server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is not ready until a valid certificate is installed, then is', async () => {
    mkdirSync(join(dir, 'dynamic'));
    const { agent } = await startInProcessAgent(uniquePluginName('berth-certs'), join(dir, 'state'), {
      BERTH_CERT_BUCKET: 'env',
      BERTH_S3_ENDPOINT: endpoint,
      BERTH_AWS_REGION: 'us-east-1',
      BERTH_CERT_DIR: join(dir, 'certs'),
      BERTH_CERT_DYNAMIC_FILE: join(dir, 'dynamic', 'certificates.yml'),
      BERTH_CERT_DOMAINS: 'db.example.test',
      BERTH_CERT_POLL_SECONDS: '1',
      BERTH_CERT_FILE_OWNER: `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`,
    });
    try {
      const ready = async () => (await fetch(`http://127.0.0.1:${agent.healthPort}/readyz`)).json() as Promise<{ ready: boolean; checks: Record<string, unknown> }>;
      expect(await ready()).toMatchObject({ ready: false, checks: { plugin: true, certificate: expect.stringMatching(/no valid TLS certificate/) } });

      const cert = makeCert(['db.example.test'], 60);
      const s3 = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1' });
      await s3.send(new PutObjectCommand({ Bucket: 'env', Key: 'tls/key.pem', Body: cert.keyPem }));
      await s3.send(new PutObjectCommand({ Bucket: 'env', Key: 'tls/cert.pem', Body: cert.certPem }));
      for (let i = 0; i < 50 && !(await ready()).ready; i++) await sleep(100);
      expect(await ready()).toMatchObject({ ready: true, checks: { certificate: true } });
      expect(readFileSync(join(dir, 'dynamic', 'certificates.yml'), 'utf8')).toMatch(/certFile: ".*\.crt"/);
      const metrics = await (await fetch(`http://127.0.0.1:${agent.healthPort}/metrics`)).text();
      expect(metrics).toMatch(/^berth_cert_expiry_timestamp_seconds \d+/m);
    } finally {
      await agent.stop();
    }
  });
});
