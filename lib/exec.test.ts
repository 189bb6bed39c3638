import { describe, expect, it } from 'vitest';
import { MAX_OUTPUT_BYTES, processRunner as run } from './exec.js';

/** The errors a caller of the runner sees, as code and message. */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: Error & { code?: string }) => ({ code: e.code, message: e.message }),
  );

describe('processRunner', () => {
  it('returns the output without its final newline, in the C locale, with the input on stdin', async () => {
    expect(await run('sh', ['-c', 'cat; echo "$LC_ALL"; echo err >&2'], { input: 'from stdin\n' })).toEqual({ stdout: 'from stdin\nC', stderr: 'err', exitCode: 0 });
  });

  it('passes arguments as they are, never through a shell', async () => {
    expect((await run('printf', ['%s|', 'a b', '$HOME', ';rm -rf /'])).stdout).toBe('a b|$HOME|;rm -rf /|');
  });

  it('treats listed exit codes as answers and names the command, the code and the last lines of stderr otherwise', async () => {
    expect((await run('sh', ['-c', 'exit 2'], { okExitCodes: [0, 2] })).exitCode).toBe(2);
    expect(await failure(run('sh', ['-c', 'echo one >&2; echo two >&2; exit 3']))).toEqual({ code: 'INTERNAL', message: 'sh -c echo one >&2; echo two >&2; exit 3 exited 3: one | two' });
  });

  it('says which program could not start', async () => {
    expect(await failure(run('/nonexistent/tool', ['x']))).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('could not run /nonexistent/tool') });
  });

  it('says which signal killed a tool', async () => {
    expect(await failure(run('sh', ['-c', 'kill -9 $$']))).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('was killed by SIGKILL') });
  });

  it('kills a tool at its time limit, and one that ignores SIGTERM 2 s later, even when its children hold its output open', async () => {
    const t0 = performance.now();
    expect(await failure(run('sleep', ['30'], { timeoutMs: 100 }))).toEqual({ code: 'TIMEOUT', message: 'sleep 30 did not finish within 100 ms' });
    expect(performance.now() - t0).toBeLessThan(1_000);
    const t1 = performance.now();
    expect(await failure(run('sh', ['-c', 'trap "" TERM; sleep 30; true'], { timeoutMs: 100 }))).toMatchObject({ code: 'TIMEOUT' });
    expect(performance.now() - t1).toBeLessThan(5_000);
  });

  it("stops a tool when the caller's signal aborts, and starts none for a signal that already has", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    expect(await failure(run('sleep', ['30'], { signal: controller.signal }))).toEqual({ code: 'TIMEOUT', message: "sleep 30 stopped: the caller's deadline passed" });
    expect(await failure(run('sh', ['-c', 'echo started > /dev/stderr'], { signal: AbortSignal.abort() }))).toMatchObject({ code: 'TIMEOUT' });
  });

  it('stops a tool that writes more output than any tool berth runs should', async () => {
    expect(await failure(run('head', ['-c', String(MAX_OUTPUT_BYTES + 1), '/dev/zero']))).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('wrote more than') });
  });

  it('does not fail when a tool exits without reading its input', async () => {
    expect((await run('true', [], { input: 'x'.repeat(2 ** 20) })).exitCode).toBe(0);
  });
});
