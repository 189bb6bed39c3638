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
