import { describe, expect, it } from 'vitest';
import { sleep } from '../lib/sleep.js';
import { KeyedLock } from './keyed-lock.js';

describe('KeyedLock', () => {
  it('runs work on one key one at a time, in arrival order, even when some fails', async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    const job = (id: string, ms: number, fail = false) =>
      lock.run('v', async () => {
        events.push(`start ${id}`);
        await sleep(ms);
        events.push(`end ${id}`);
        if (fail) throw new Error(id);
        return id;
      });
    const results = await Promise.allSettled([job('a', 20), job('b', 5, true), job('c', 1)]);
    expect(events).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(lock.busy).toBe(0);
  });

  it('lets different keys proceed in parallel', async () => {
    const lock = new KeyedLock();
    const started = Date.now();
    await Promise.all(['a', 'b', 'c', 'd'].map((k) => lock.run(k, () => sleep(50))));
    expect(Date.now() - started).toBeLessThan(150);
  });
});
