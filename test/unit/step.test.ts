import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { step, whereInSteps } from '../helpers/step.js';

const root = join(import.meta.dirname, '..', '..');

describe('step: a slow test says which step it was in', () => {
  it('a step given a timeout that hangs fails with its name, nested under its parent', async () => {
    const hung = step('docker run', () => step('wait for the mount', () => new Promise(() => undefined), 50));
    await expect(hung).rejects.toThrow('step "docker run > wait for the mount" did not finish within 50 ms');
    expect(whereInSteps()).toBe('failed in step: docker run > wait for the mount');
  });

  it('a step passes its value through and is no longer open afterwards', async () => {
    expect(await step('create', async () => 42, 1_000)).toBe(42);
    expect(whereInSteps()).toBeUndefined();
  });

  it('a test that times out in a step, or fails in one, names the step in its error (the real vitest reporter)', async () => {
    // The default reporter, as a developer or CI reads it.
    const res = await execa(process.execPath, [join(root, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test/unit/fixtures/step-hangs.config.ts'], { cwd: root, reject: false, timeout: 60_000, env: { NO_COLOR: '1', CI: '1' } });
    const out = res.stdout + res.stderr;
    expect(res.exitCode).toBe(1);
    expect(out).toMatch(/FAIL .*> hangs in a step\nError: Test timed out in 300ms\.[^\n]*\n?[^\n]*\[still in step: docker run > wait for the volume\]/);
    expect(out).not.toMatch(/still in step: [^\]]*start the agent/);
    expect(out).toMatch(/FAIL .*> fails in a step\nError: volume is in use \[failed in step: docker volume rm\]/);
  });
});
