import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createScheduleStore } from '../agent/backend-factory.js';
import { loadConfig } from '../agent/config.js';
import { ec2ScheduleStatements } from '../infra/components/host-policy.js';
import { ec2ScheduleKey } from '../lib/ec2-schedule-object.js';
import { silentLogger } from '../lib/logger.js';
import type { ScheduleStore } from '../volume-plugin/backends/ebs/schedule-store.js';
import { S3ScheduleStore } from '../volume-plugin/backends/ebs/s3-schedule-store.js';
import { allows, type PolicyDocument } from './aws/iam-policy.js';
import { startS3AccessProxy, type S3AccessProxy, type S3Request } from './aws/s3-access.js';
import { S3RVER_CREDENTIALS, startS3rver, type S3rverServer } from './helpers/s3server.js';
import { step } from './helpers/step.js';

/**
 * The EC2 schedule's S3 store (volume-plugin/backends/ebs/s3-schedule-store.ts) as the agent builds it
 * (agent/backend-factory.ts, createScheduleStore), against s3rver (real) behind the proxy that answers as
 * S3 answers a host holding the host role's schedule statements (test/aws/s3-access.ts): S3's conditional
 * writes (412 / 409 / 404), and 403 for a missing key to a role without s3:ListBucket.
 */
const BUCKET = 'berth-environment-prod';
const BUCKET_REGION = 'us-east-1';
const REGION = 'eu-west-1';
const KEY = ec2ScheduleKey('ec2-schedule/', REGION);
const KMS_KEY = 'arn:aws:kms:us-east-1:111122223333:key/buckets';
const hostPolicy: PolicyDocument = { Statement: ec2ScheduleStatements({ bucket: BUCKET, bucketRegion: BUCKET_REGION, region: REGION, kmsKeyArn: KMS_KEY }) };

let dir: string;
let s3: S3rverServer;
const proxies: S3AccessProxy[] = [];
/** Every request the store made through a proxy that enforced the host policy (the policy test below). */
const sentAsHost: S3Request[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-s3-schedule-'));
  s3 = await startS3rver(dir, [BUCKET, 'berth-environment-staging']);
  // The agent's S3 client takes credentials from the SDK's chain; s3rver checks them.
  vi.stubEnv('AWS_ACCESS_KEY_ID', S3RVER_CREDENTIALS.accessKeyId);
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', S3RVER_CREDENTIALS.secretAccessKey);
});
afterAll(async () => {
  vi.unstubAllEnvs();
  for (const p of proxies) await p.close();
  await s3?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A store as the agent builds it, talking to `endpoint`. */
async function agentStore(endpoint: string, env: Record<string, string> = {}): Promise<ScheduleStore> {
  const config = loadConfig({ BERTH_EC2_SCHEDULE_BUCKET: BUCKET, BERTH_S3_ENDPOINT: endpoint, BERTH_AWS_REGION: BUCKET_REGION, ...env });
  return createScheduleStore(config, REGION, silentLogger);
}

/** A proxy with S3's conditional writes, enforcing `policy` (the host's by default). */
async function s3AsHost(policy = hostPolicy): Promise<S3AccessProxy> {
  const proxy = await startS3AccessProxy(s3.endpoint, policy, { conditionalWrites: true });
  proxies.push(proxy);
  return proxy;
}

const objectBody = async (key = KEY) => (await s3.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
/** No schedule and no check object: a bucket no host used yet. */
const fresh = async () => {
  for (const k of [KEY, `${KEY}.check`]) await s3.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: k }));
};

describe('the EC2 schedule in S3, with S3\'s conditional writes', () => {
  it('reads "none yet" for a missing schedule, creates it once, and refuses a second create', async () => {
    await fresh();
    const proxy = await s3AsHost();
    const store = await agentStore(proxy.endpoint);
    // The role may not list the bucket: S3 answers the missing key with 403, which the store reads as "none yet".
    expect(await store.read()).toBeUndefined();
    const v1 = await store.write('{"n":1}', undefined);
    expect(v1).toMatch(/^".+"$/);
    expect(await store.read()).toEqual({ body: '{"n":1}', version: v1 });
    expect(await store.write('{"n":99}', undefined)).toBeUndefined();
    expect(await objectBody()).toBe('{"n":1}');
    sentAsHost.push(...proxy.seen);
  });

  it('updates at the version it read, and writes nothing at a stale one', async () => {
    await fresh();
    const proxy = await s3AsHost();
    const store = await agentStore(proxy.endpoint);
    const v1 = (await store.write('{"n":1}', undefined))!;
    const v2 = await store.write('{"n":2}', v1);
    expect(v2).toBeDefined();
    expect(v2).not.toBe(v1);
    const putsBefore = proxy.seen.filter((r) => r.action === 's3:PutObject').length;
    expect(await store.write('{"n":3}', v1)).toBeUndefined();
    // One request: a 412 is an answer, the SDK does not send it again.
    expect(proxy.seen.filter((r) => r.action === 's3:PutObject').length).toBe(putsBefore + 1);
    expect(await store.read()).toEqual({ body: '{"n":2}', version: v2 });
    sentAsHost.push(...proxy.seen);
  });

  it('a write at a version of a schedule that is gone is a lost race (S3: 404 NoSuchKey), not a fault', async () => {
    await fresh();
    const proxy = await s3AsHost();
    const store = await agentStore(proxy.endpoint);
    const v1 = (await store.write('{"n":1}', undefined))!;
    await s3.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: KEY }));
    expect(await store.write('{"n":2}', v1)).toBeUndefined();
    sentAsHost.push(...proxy.seen);
  });

  it('two hosts racing: exactly one wins each round, and the loser wrote nothing', async () => {
    await fresh();
    const proxy = await s3AsHost();
    const [a, b] = await Promise.all([agentStore(proxy.endpoint), agentStore(proxy.endpoint)]);
    await a!.read(); // both past their self-checks, so the rounds race only on the schedule
    await b!.read();
    let version: string | undefined;
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all([a!.write(`{"round":${round},"by":"a"}`, version), b!.write(`{"round":${round},"by":"b"}`, version)]);
      const winners = results.filter((v) => v !== undefined);
      expect(winners, `round ${round}`).toHaveLength(1);
      const winner = results[0] !== undefined ? 'a' : 'b';
      expect(await objectBody()).toBe(`{"round":${round},"by":"${winner}"}`);
      version = winners[0];
    }
    sentAsHost.push(...proxy.seen);
  });

  it('N hosts each adding to one counter by compare-and-swap end with every increment counted once', async () => {
    await fresh();
    const proxy = await s3AsHost();
    const hosts = 4;
    const increments = 4;
    const stores = await Promise.all(Array.from({ length: hosts }, () => agentStore(proxy.endpoint)));
    let lost = 0;
    await step('concurrent CAS loops', () => Promise.all(stores.map(async (store) => {
      for (let i = 0; i < increments; i++) {
        for (;;) {
          const doc = await store.read();
          const n = doc ? (JSON.parse(doc.body) as { n: number }).n : 0;
          if ((await store.write(JSON.stringify({ n: n + 1 }), doc?.version)) !== undefined) break;
          lost++;
        }
      }
    })), 20_000);
    expect(JSON.parse(await objectBody())).toEqual({ n: hosts * increments });
    expect(lost).toBeGreaterThan(0); // they did race
    sentAsHost.push(...proxy.seen);
  });
});

describe('a store the agent must not trust, or cannot reach', () => {
  it('refuses a server that ignores conditional writes (s3rver as it is), on every call, and writes no schedule', async () => {
    await fresh();
    const store = await agentStore(s3.endpoint);
    await expect(store.read()).rejects.toThrow(/ignores conditional writes.*berth paces this host alone/);
    await expect(store.write('{"n":1}', undefined)).rejects.toThrow(/ignores conditional writes/);
    await expect(store.write('{"n":1}', '"abc"')).rejects.toThrow(/ignores conditional writes/);
    await expect(s3.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: KEY }))).rejects.toMatchObject({ name: 'NoSuchKey' });
  });

  it('fails within its bound when S3 does not answer, and at once when the caller gives up', async () => {
    // A listener that accepts and never answers: the store's 2 s bound, not the TCP stack, ends the call.
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const store = await agentStore(endpoint);
      let t = Date.now();
      await expect(store.read()).rejects.toThrow(/s3:\/\/berth-environment-prod\/ec2-schedule\/eu-west-1\.json/);
      expect(Date.now() - t).toBeLessThan(2_000 + 1_500);
      const caller = new AbortController();
      t = Date.now();
      setTimeout(() => caller.abort(new Error('the Mount gave up')), 100);
      await expect(store.write('{}', undefined, caller.signal)).rejects.toThrow(/the Mount gave up/);
      expect(Date.now() - t).toBeLessThan(1_000);
      // Nothing listening at all: an error naming the object, not a hang.
      const closed = await agentStore('http://127.0.0.1:1');
      await expect(closed.read()).rejects.toThrow(/cannot self-check the EC2 schedule store s3:\/\/berth-environment-prod\/ec2-schedule\/eu-west-1\.json\.check/);
    } finally {
      silent.close();
    }
  });

  it('says which object and which permission when the role cannot read the schedule it may write', async () => {
    await fresh();
    const proxy = await s3AsHost({ Statement: hostPolicy.Statement.map((s) => ({ ...s, Action: [s.Action].flat().filter((a) => a !== 's3:GetObject') })) });
    const store = await agentStore(proxy.endpoint);
    await expect(store.read()).rejects.toThrow(/ec2-schedule\/eu-west-1\.json\.check: AccessDenied \(403\).*s3:GetObject/);
  });

  it('a schedule that exists but may not be read is reported as a denial once a create meets it, not taken for "none" for ever', async () => {
    await fresh();
    await s3.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: KEY, Body: '{"n":7}' }));
    const denyRead = { Effect: 'Deny', Action: 's3:GetObject', Resource: `arn:aws:s3:::${BUCKET}/${KEY}` };
    const proxy = await s3AsHost({ Statement: [...hostPolicy.Statement, denyRead] });
    const store = await agentStore(proxy.endpoint);
    // S3's 403 for a key it will not show is the same as for a key that is not there: the first read cannot tell.
    expect(await store.read()).toBeUndefined();
    expect(await store.read()).toBeUndefined();
    expect(await store.write('{"n":1}', undefined)).toBeUndefined(); // refused: it exists
    await expect(store.read()).rejects.toThrow(/cannot read the EC2 schedule store s3:\/\/berth-environment-prod\/ec2-schedule\/eu-west-1\.json: AccessDenied.*s3:GetObject/);
    expect(await objectBody()).toBe('{"n":7}');
  });

    it('a store given only a bucket and a key, with a short bound, is still bounded by it', async () => {
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const { S3Client } = await import('@aws-sdk/client-s3');
      const client = new S3Client({ endpoint: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, region: BUCKET_REGION, forcePathStyle: true, credentials: S3RVER_CREDENTIALS, maxAttempts: 1 });
      const store = new S3ScheduleStore({ s3: client, bucket: BUCKET, key: KEY, callTimeoutMs: 200 });
      const t = Date.now();
      await expect(store.write('{}', undefined)).rejects.toThrow(/no answer within 200 ms/);
      expect(Date.now() - t).toBeLessThan(1_000);
      client.destroy();
    } finally {
      silent.close();
    }
  });
});

describe('the host role against the store\'s requests', () => {
  it('allows every request the store sent as a host, and nothing of another Region, prefix or environment', () => {
    expect(sentAsHost.length).toBeGreaterThan(0);
    const asSent = [...new Set(sentAsHost.map((r) => `${r.action} ${r.resource}`))].sort();
    expect(asSent).toEqual([
      `s3:GetObject arn:aws:s3:::${BUCKET}/${KEY}`,
      `s3:GetObject arn:aws:s3:::${BUCKET}/${KEY}.check`,
      `s3:PutObject arn:aws:s3:::${BUCKET}/${KEY}`,
      `s3:PutObject arn:aws:s3:::${BUCKET}/${KEY}.check`,
    ]);
    for (const r of sentAsHost) expect(allows([hostPolicy], r.action, r.resource), `${r.action} ${r.resource}`).toBe(true);
    // What S3 asks of KMS on the host's behalf for those requests (SSE-KMS with the bucket's S3 Bucket Key).
    const viaS3 = { 'kms:ViaService': `s3.${BUCKET_REGION}.amazonaws.com`, 'kms:EncryptionContext:aws:s3:arn': `arn:aws:s3:::${BUCKET}` };
    expect(allows([hostPolicy], 'kms:GenerateDataKey', KMS_KEY, viaS3)).toBe(true);
    expect(allows([hostPolicy], 'kms:Decrypt', KMS_KEY, viaS3)).toBe(true);
    expect(allows([hostPolicy], 'kms:Decrypt', KMS_KEY, { ...viaS3, 'kms:EncryptionContext:aws:s3:arn': 'arn:aws:s3:::berth-environment-staging' })).toBe(false);
    expect(allows([hostPolicy], 'kms:Decrypt', KMS_KEY, { 'kms:ViaService': 'ec2.eu-west-1.amazonaws.com', 'kms:EncryptionContext:aws:s3:arn': `arn:aws:s3:::${BUCKET}` })).toBe(false);
    expect(allows([hostPolicy], 'kms:Decrypt', KMS_KEY, {})).toBe(false);

    const denied = [
      ['s3:PutObject', `arn:aws:s3:::${BUCKET}/ec2-schedule/us-east-1.json`], // another Region's schedule
      ['s3:GetObject', `arn:aws:s3:::${BUCKET}/ec2-schedule/us-east-1.json`],
      ['s3:PutObject', `arn:aws:s3:::${BUCKET}/other/${REGION}.json`], // another prefix
      ['s3:PutObject', `arn:aws:s3:::${BUCKET}/tls/cert.pem`],
      ['s3:PutObject', `arn:aws:s3:::berth-environment-staging/${KEY}`], // another environment's schedule
      ['s3:DeleteObject', `arn:aws:s3:::${BUCKET}/${KEY}`],
      ['s3:ListBucket', `arn:aws:s3:::${BUCKET}`],
    ] as const;
    for (const [action, resource] of denied) expect(allows([hostPolicy], action, resource), `${action} ${resource}`).toBe(false);
  });

  it('a host of another environment in the same account cannot write this environment\'s schedule', async () => {
    const staging: PolicyDocument = { Statement: ec2ScheduleStatements({ bucket: 'berth-environment-staging', bucketRegion: BUCKET_REGION, region: REGION }) };
    const proxy = await s3AsHost(staging);
    const store = await agentStore(proxy.endpoint); // configured (wrongly) with prod's bucket
    await expect(store.write('{"n":1}', undefined)).rejects.toThrow(/AccessDenied/);
    expect(proxy.seen.every((r) => !allows([staging], r.action, r.resource))).toBe(true);
  });
});
