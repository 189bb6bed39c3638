import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createScheduleStore } from '../agent/backend-factory.js';
import { loadConfig } from '../agent/config.js';
import { ec2ScheduleStatements } from '../infra/components/host-policy.js';
import { silentLogger } from '../lib/logger.js';
import { FleetSchedule, parseSchedule } from '../volume-plugin/backends/ebs/fleet-schedule.js';
import type { ScheduleStore } from '../volume-plugin/backends/ebs/schedule-store.js';
import { startS3AccessProxy, type S3AccessProxy } from './aws/s3-access.js';
import { S3RVER_CREDENTIALS, startS3rver, type S3rverServer } from './helpers/s3server.js';
import { step } from './helpers/step.js';

/**
 * The account's EC2 schedule (volume-plugin/backends/ebs/fleet-schedule.ts) over its production
 * store: the S3 store as the agent builds it (agent/backend-factory.ts), against s3rver (real)
 * behind the proxy that answers S3's conditional writes as S3 does for the host role
 * (test/aws/s3-access.ts). Several agents reserving at once: every call gets a ticket of its own,
 * in one queue, the lost races read again and retried with S3's real answers.
 */
const BUCKET = 'berth-environment-prod';
const BUCKET_REGION = 'us-east-1';
const REGION = 'eu-west-1';
const KMS_KEY = 'arn:aws:kms:us-east-1:111122223333:key/buckets';

let dir: string;
let s3: S3rverServer;
let proxy: S3AccessProxy | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-fleet-schedule-'));
  s3 = await startS3rver(dir, [BUCKET]);
  vi.stubEnv('AWS_ACCESS_KEY_ID', S3RVER_CREDENTIALS.accessKeyId);
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', S3RVER_CREDENTIALS.secretAccessKey);
  proxy = await startS3AccessProxy(s3.endpoint, { Statement: ec2ScheduleStatements({ bucket: BUCKET, bucketRegion: BUCKET_REGION, region: REGION, kmsKeyArn: KMS_KEY }) }, { conditionalWrites: true });
});
afterAll(async () => {
  vi.unstubAllEnvs();
  await proxy?.close();
  await s3?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the account's EC2 schedule on S3 (s3rver, S3's conditional writes)", () => {
  it('four agents reserving 5 turns each at once: 20 distinct tickets in one queue, nobody falls back, the document says 20', async () => {
    const config = loadConfig({ BERTH_EC2_SCHEDULE_BUCKET: BUCKET, BERTH_S3_ENDPOINT: proxy!.endpoint, BERTH_AWS_REGION: BUCKET_REGION });
    // Each agent's store, counting the writes S3 took (a lost race writes nothing).
    let written = 0;
    const counted = (store: ScheduleStore): ScheduleStore => ({
      where: store.where,
      read: (signal) => store.read(signal),
      write: async (body, version, signal) => {
        const out = await store.write(body, version, signal);
        if (out !== undefined) written += 1;
        return out;
      },
    });
    const agents = await Promise.all(
      Array.from({ length: 4 }, async () => new FleetSchedule({ store: counted(await createScheduleStore(config, REGION, silentLogger)), logger: silentLogger })),
    );
    const tickets = await step('20 turns through S3', () =>
      Promise.all(agents.flatMap((a) => Array.from({ length: 5 }, () => a.turn('mutating', undefined, Date.now() + 60_000, 'attaching')))),
    );
    expect(agents.every((a) => a.shared)).toBe(true);
    expect([...tickets].sort((x, y) => x! - y!)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // One reservation per agent, whatever races it lost on the way.
    expect(written).toBe(4);
    const store = await createScheduleStore(config, REGION, silentLogger);
    const doc = parseSchedule((await store.read())!.body);
    expect(doc).toMatchObject({ v: 1, buckets: { mutating: { next: 20 } } });
  });
});
