import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { handler, renewerClients } from './handler.js';

describe('renewer handler', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('names every missing setting before calling anything', async () => {
    process.env = { ...saved, RENEWER_BUCKET: 'env-bucket', RENEWER_EMAIL: 'not-an-email' };
    const err = (await handler().catch((e: unknown) => e)) as { issues: Array<{ path: string[] }> };
    expect(err.issues.map((i) => i.path.join('.')).sort()).toEqual(['RENEWER_BUCKET_REGION', 'RENEWER_DOMAINS', 'RENEWER_EMAIL', 'RENEWER_HOSTED_ZONE_ID']);
  });

  it('talks to S3 in the bucket\'s region, not the Lambda\'s', async () => {
    process.env = { ...saved, AWS_REGION: 'us-east-1' }; // what Lambda sets: the function's own region
    const { s3 } = renewerClients({ RENEWER_BUCKET_REGION: 'eu-west-1' });
    expect(await s3.config.region()).toBe('eu-west-1');
  });

  it('ships a staging script that passes shellcheck', () => {
    expect(() => execFileSync('shellcheck', [join(import.meta.dirname, 'stage.sh')])).not.toThrow();
  });
});
