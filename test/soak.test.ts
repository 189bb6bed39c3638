import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { get, request, Agent as HttpAgent } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sleep } from '../lib/sleep.js';
import { Endpoints } from '../volume-plugin/protocol.js';
import { socketOf, startChildAgent, stopChild, uniquePluginName } from './helpers/agent.js';
import { noLoopReason } from './helpers/env.js';
import { generate, HOLDER, KEEP, rng, sendAll } from './helpers/fuzz-requests.js';
import { detachLoopDevicesUnder, loopDevicesUnder, tempDir } from './helpers/loop.js';
import { step } from './helpers/step.js';

/**
 * A short soak (the hour-long one, with memory figures, is bench/soak.ts): the
 * agent as a process on the loop backend gets a few thousand requests of every
 * kind, then is left idle. What a long-running agent must not accumulate comes
 * back to where it was before the load: open file descriptors and the event
 * loop's active resources by type (sockets, pipes of child processes, timers
 * such as the unmount grace's). A leaked descriptor, socket or timer per
 * request, per Mount or per hostile client shows here after a few thousand.
 */

const GRACE_SECONDS = 1;
const HOT_REQUESTS = 3_000;
const FUZZ_REQUESTS = 2_000;
const MOUNT_CYCLES = 24;
const VOLUMES = ['s0', 's1', 's2', 's3'];

interface Footprint {
  fds: number;
  resources: Record<string, number>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** /metrics on a connection of its own that closes with the answer, so the reading is the same before and after. */
function metricsText(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
}

async function footprint(pid: number, port: number): Promise<Footprint> {
  const text = await metricsText(port);
  const resources: Record<string, number> = {};
  for (const m of text.matchAll(/^berth_nodejs_active_resources\{type="([^"]+)"\} (\d+)$/gm)) resources[m[1]!] = Number(m[2]);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, resources };
}

/** What `after` holds beyond `baseline`: descriptors and active resources by type. */
function beyond(after: Footprint, baseline: Footprint): Record<string, number> {
  const extra: Record<string, number> = {};
  if (after.fds > baseline.fds) extra.fds = after.fds - baseline.fds;
  for (const [type, n] of Object.entries(after.resources)) if (n > (baseline.resources[type] ?? 0)) extra[type] = n - (baseline.resources[type] ?? 0);
  return extra;
}

/** What is left beyond the baseline once nothing is (an empty record), or what still was after 15 s. */
async function leftBeyond(pid: number, port: number, baseline: Footprint): Promise<Record<string, number>> {
  let extra = beyond(await footprint(pid, port), baseline);
  for (const until = Date.now() + 15_000; Object.keys(extra).length > 0 && Date.now() < until; ) {
    await sleep(250);
    extra = beyond(await footprint(pid, port), baseline);
  }
  return extra;
}

describe.skipIf(noLoopReason)(`short soak: the agent's descriptors and event-loop resources after thousands of requests${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  const dir = tempDir('berth-soak-test');
  let child: ChildProcess | undefined;
  afterAll(async () => {
    if (child) await stopChild(child, 'SIGTERM');
    dir.cleanup();
    detachLoopDevicesUnder(dir.path);
  });

  it('return to their idle baseline: no descriptor, socket, child-process pipe or timer is left behind', { timeout: 60_000 }, async () => {
    const name = uniquePluginName('berth-soak');
    const stateDir = join(dir.path, 'state');
    mkdirSync(stateDir, { recursive: true });
    const port = await freePort();
    child = await startChildAgent(name, stateDir, { BERTH_HEALTH_ADDR: `127.0.0.1:${port}`, BERTH_UNMOUNT_GRACE_SECONDS: String(GRACE_SECONDS), BERTH_LOG_LEVEL: 'warn' });
    const pid = child.pid!;
    const socketPath = socketOf(name);
    const connections = new HttpAgent({ keepAlive: true, maxSockets: 16 });
    const post = (path: string, body: unknown) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const payload = JSON.stringify(body);
        const req = request({ socketPath, path, method: 'POST', agent: connections, headers: { 'Content-Length': Buffer.byteLength(payload) } }, (res) => {
          let data = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (data += c));
          res.on('end', () => {
            const json = JSON.parse(data) as Record<string, unknown>;
            if (res.statusCode !== 200 || json.Err) reject(new Error(`${path} answered ${res.statusCode}: ${data.slice(0, 300)}`));
            else resolve(json);
          });
        });
        req.on('error', reject);
        req.end(payload);
      });

    /** A container's life: Mount with a fresh ID, Unmount; some Mounts land in the previous one's unmount grace. */
    const cycle = async (volume: string) => {
      const id = randomBytes(32).toString('hex');
      await post(Endpoints.mount, { Name: volume, ID: id });
      await post(Endpoints.unmount, { Name: volume, ID: id });
    };

    await step('create the volumes, warm every path once', async () => {
      await post(Endpoints.create, { Name: KEEP, Opts: { size: '16MiB' } });
      await post(Endpoints.mount, { Name: KEEP, ID: HOLDER });
      for (const v of VOLUMES) await post(Endpoints.create, { Name: v, Opts: { size: '16MiB' } });
      for (const v of VOLUMES) await cycle(v);
      for (const path of [Endpoints.get, Endpoints.path]) await post(path, { Name: VOLUMES[0] });
      await post(Endpoints.list, {});
    });
    connections.destroy();
    await sleep((GRACE_SECONDS + 1) * 1000);
    const baseline = await step('the idle baseline', async () => {
      // Two equal readings in a row: nothing from the warm-up still closing.
      let a = await footprint(pid, port);
      for (let i = 0; i < 20; i++) {
        await sleep(250);
        const b = await footprint(pid, port);
        if (JSON.stringify(a) === JSON.stringify(b)) break;
        a = b;
      }
      return a;
    });

    await step(`${MOUNT_CYCLES} Mount/Unmount cycles, ${HOT_REQUESTS} Get/Path/List and ${FUZZ_REQUESTS} hostile requests at once`, async () => {
      const mounts = (async () => {
        for (let i = 0; i < MOUNT_CYCLES; i += 2) await Promise.all([cycle(VOLUMES[i % 4]!), cycle(VOLUMES[(i + 1) % 4]!)]);
      })();
      const hot = (async () => {
        let sent = 0;
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (sent < HOT_REQUESTS) {
              const n = sent++;
              const path = n % 10 === 9 ? Endpoints.list : n % 3 === 0 ? Endpoints.path : Endpoints.get;
              await post(path, { Name: VOLUMES[n % 4] });
            }
          }),
        );
      })();
      const fuzz = (async () => {
        const r = rng(20261206);
        const cases = Array.from({ length: FUZZ_REQUESTS }, (_, i) => generate(r, i));
        const bad = (await sendAll(socketPath, cases)).map(({ c, problem }) => `${c.what.slice(0, 100)}: ${problem}`);
        expect(bad.slice(0, 5)).toEqual([]);
      })();
      await Promise.all([mounts, hot, fuzz]);
    });
    connections.destroy();
    await sleep((GRACE_SECONDS + 1) * 1000);

    // A reading may catch something closing (a state-file write, a tool's pipe): only what stays counts.
    const left = await step('back to the baseline', () => leftBeyond(pid, port, baseline));
    expect(left, `left beyond the idle baseline ${JSON.stringify(baseline)}`).toEqual({});
    // And the volumes are as they were: only the held one mounted, its loop device the only one.
    expect(loopDevicesUnder(dir.path)).toHaveLength(1);
  });
});
