import { describe, expect, it } from 'vitest';
import { Semaphore } from './semaphore.js';
import { sleep } from './sleep.js';

describe('Semaphore', () => {
  it('never runs more than its limit at once, and runs every task', async () => {
    const sem = new Semaphore(3);
    let now = 0;
    let peak = 0;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        sem.run(async () => {
          peak = Math.max(peak, ++now);
          await sleep(5);
          now--;
          return i;
        }),
      ),
    );
    expect(peak).toBe(3);
    expect(results).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('frees the slot of a task that failed', async () => {
    const sem = new Semaphore(1);
    await expect(sem.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(sem.run(() => Promise.resolve('next'))).resolves.toBe('next');
  });
});

describe('Semaphore and a caller that goes away', () => {
  it('a task whose signal aborts while it waits leaves the queue at once, never runs, and keeps the order of the others', async () => {
    const sem = new Semaphore(1);
    let release!: () => void;
    const first = sem.run(() => new Promise<void>((r) => (release = r)));
    const gone = new AbortController();
    const ran: string[] = [];
    const waiting = sem.run(async () => void ran.push('gone'), gone.signal);
    const next = sem.run(async () => void ran.push('next'));
    gone.abort(new Error('the caller went away'));
    await expect(waiting).rejects.toThrow('the caller went away');
    release();
    await first;
    await next;
    expect(ran).toEqual(['next']);
  });

  it('an already aborted signal is refused before taking a slot', async () => {
    const sem = new Semaphore(1);
    await expect(sem.run(() => Promise.resolve('ran'), AbortSignal.abort(new Error('late')))).rejects.toThrow('late');
    await expect(sem.run(() => Promise.resolve('free'))).resolves.toBe('free');
  });
});
