import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '../lib/errors.js';
import { silentLogger } from '../lib/logger.js';
import { createHealthServer, type HealthServer } from './health-server.js';

/** POST /volumes/resize, the agent side of `berth resize`: root only, a checked body, berth's errors as HTTP statuses. */
describe('health endpoint: POST /volumes/resize', () => {
  let server: HealthServer | undefined;
  afterEach(() => server?.close());

  async function serve(privileged: boolean, resize: (name: string, change: Record<string, string>) => Promise<unknown>) {
    server = createHealthServer({ registry: new Registry(), logger: silentLogger, status: () => ({}), resize, isPrivileged: async () => privileged });
    const { port } = await server.listen('127.0.0.1:0');
    return async (body: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/volumes/resize`, { method: 'POST', body });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
  }

  it('hands the name and the change to the service and answers what it did', async () => {
    const calls: unknown[] = [];
    const post = await serve(true, async (name, change) => (calls.push([name, change]), { name, state: 'done', grown: true }));
    expect(await post(JSON.stringify({ name: 'pg', change: { size: '20GiB' } }))).toEqual({ status: 200, json: { name: 'pg', state: 'done', grown: true } });
    expect(calls).toEqual([['pg', { size: '20GiB' }]]);
  });

  it('refuses anyone but root or the agent\'s user, and a malformed body, without calling the service', async () => {
    let called = 0;
    const denied = await serve(false, async () => called++);
    expect(await denied(JSON.stringify({ name: 'pg', change: { size: '20GiB' } }))).toMatchObject({ status: 403, json: { error: expect.stringMatching(/for root on this host only/) } });
    await server!.close();
    const post = await serve(true, async () => called++);
    for (const body of ['not json', JSON.stringify({ name: 'pg' }), JSON.stringify({ name: 'pg', change: { size: 20 } }), JSON.stringify({ name: 1, change: {} })]) {
      expect((await post(body)).status, body).toBe(400);
    }
    expect(called).toBe(0);
  });

  it("answers berth's error codes as HTTP statuses with the sentence", async () => {
    const post = await serve(true, async () => {
      throw new BerthError('CONFLICT', 'volume pg (vol-1) is still being modified');
    });
    expect(await post(JSON.stringify({ name: 'pg', change: { size: '20GiB' } }))).toEqual({ status: 409, json: { error: 'volume pg (vol-1) is still being modified', code: 'CONFLICT' } });
  });
});
