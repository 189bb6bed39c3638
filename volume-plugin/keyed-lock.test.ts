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

  it("reports each piece of work's start and end to its observer, and never a waiter that gave up before its turn", async () => {
    const events: string[] = [];
    const lock = new KeyedLock({ started: (k) => events.push(`start ${k}`), ended: (k) => events.push(`end ${k}`) });
    const gaveUp = new AbortController();
    const first = lock.run('v', () => sleep(20));
    const waiter = lock.run('v', async () => events.push('never runs'), gaveUp.signal);
    gaveUp.abort(new Error('caller gone'));
    await expect(waiter).rejects.toThrow('caller gone');
    await first;
    await expect(lock.run('v', () => Promise.reject(new Error('failed')))).rejects.toThrow('failed');
    expect(events).toEqual(['start v', 'end v', 'start v', 'end v']);
  });
});
