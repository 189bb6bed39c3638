import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// Inside the repository, so the staged modules resolve the AWS SDK as the Lambda runtime would provide it.
const out = join(import.meta.dirname, '..', '..', '.build', `lambdas-test-${process.pid}`);
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('stage.sh', () => {
  it('stages both operations Lambdas as ES modules exporting handler', async () => {
    execFileSync(join(import.meta.dirname, 'stage.sh'), [out], { encoding: 'utf8' });
    expect(existsSync(join(out, 'package.json'))).toBe(true);
    for (const name of ['ecs-agent-update', 'state-backup-cleanup']) {
      const mod = (await import(join(out, `${name}.js`))) as { handler?: unknown };
      expect(typeof mod.handler, name).toBe('function');
    }
  });
});
