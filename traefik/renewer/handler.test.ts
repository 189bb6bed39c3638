import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { handler } from './handler.js';

describe('renewer handler', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('names every missing setting before calling anything', async () => {
    process.env = { ...saved, RENEWER_BUCKET: 'env-bucket', RENEWER_EMAIL: 'not-an-email' };
    const err = (await handler().catch((e: unknown) => e)) as { issues: Array<{ path: string[] }> };
    expect(err.issues.map((i) => i.path.join('.')).sort()).toEqual(['RENEWER_DOMAINS', 'RENEWER_EMAIL', 'RENEWER_HOSTED_ZONE_ID']);
  });

  it('ships a staging script that passes shellcheck', () => {
    expect(() => execFileSync('shellcheck', [join(import.meta.dirname, 'stage.sh')])).not.toThrow();
  });
});
