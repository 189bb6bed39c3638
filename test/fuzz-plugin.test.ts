import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/agent.js';
import { loadConfig } from '../agent/config.js';
import { createLogger } from '../lib/logger.js';
import { agentEnv, uniquePluginName } from './helpers/agent.js';
import { noLoopReason } from './helpers/env.js';
import { exchange, generate, HOLDER, http, judge, KEEP, rng, sendAll } from './helpers/fuzz-requests.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';

/**
 * Generated hostile requests over the real plugin socket of an in-process
 * agent on the loop backend: wrong types, huge and unicode strings, prototype
 * keys, junk bodies, malformed HTTP and slow clients. Every request is
 * invalid or harmless by construction, so afterwards nothing may have changed:
 * no image, sidecar, state entry, mountpoint, mount or loop device beyond the
 * one volume the test made, which stays mounted with its one reference.
 * Every answer must be JSON, every refusal an {"Err"} sentence of bounded
 * length, and no log line long.
 *
 * Reproduce a failure with the seed it prints: BERTH_FUZZ_SEED=<seed> npx vitest run test/fuzz-plugin.test.ts
 */

const SEED = Number(process.env.BERTH_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const REQUESTS = Number(process.env.BERTH_FUZZ_REQUESTS ?? 10_000);
const LOG_LINE_MAX = 4096;

describe.skipIf(noLoopReason)(`plugin socket under ${REQUESTS} generated hostile requests${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;
  let agent: Agent;
  const log = { bytes: 0, lines: 0, longest: '' };

  /** Everything a request could have left behind, as the kernel and the state dir show it. */
  const footprint = () => ({
    images: readdirSync(join(stateDir, 'images')).sort(),
    mountpoints: existsSync(join(stateDir, 'mounts')) ? readdirSync(join(stateDir, 'mounts')).sort() : [],
    state: (JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { volumes: Record<string, { mounts: object; mounted: boolean }> }).volumes,
    mounts: sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').filter((t) => t.startsWith(dir.path + '/')),
    loopDevices: loopDevicesUnder(dir.path),
    topLevel: readdirSync(stateDir).filter((f) => !f.startsWith('state.json')).sort(),
  });

  beforeAll(async () => {
    dir = tempDir('berth-fuzz');
    stateDir = join(dir.path, 'state');
    const destination = {
      write(line: string) {
        log.bytes += line.length;
        log.lines++;
        if (line.length > log.longest.length) log.longest = line;
      },
    };
    const config = loadConfig(agentEnv(uniquePluginName('berth-fuzz'), stateDir));
    agent = await startAgent(config, createLogger('info', destination));
    await agent.docker.create(KEEP, { size: '16MiB' });
    await agent.docker.mount(KEEP, HOLDER);
  });
  afterAll(async () => {
    await agent?.stop();
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  });

  it('answers every one with JSON, refuses every invalid one with a short {"Err"}, and changes nothing', { timeout: 120_000 }, async () => {
    const repro = `seed ${SEED} (BERTH_FUZZ_SEED=${SEED} npx vitest run test/fuzz-plugin.test.ts)`;
    console.log(`fuzz: ${REQUESTS} requests, ${repro}`);
    const before = footprint();
    expect(before.state[KEEP]).toMatchObject({ mounted: true, mounts: { [HOLDER]: 1 } });
    const r = rng(SEED);
    const cases = Array.from({ length: REQUESTS }, (_, i) => generate(r, i));
    const started = Date.now();
    const cpu = process.cpuUsage();
    const failures = (await sendAll(agent.plugin.socketPath, cases)).map(({ c, problem }) => `${c.what}: ${problem}`);
    const seconds = (Date.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    console.log(
      `fuzz: ${REQUESTS} requests in ${seconds.toFixed(1)} s, ${((used.user + used.system) / 1e6).toFixed(1)} s CPU for client and agent (${cases.filter((c) => c.slow).length} slow clients); log ${log.lines} lines, ${(log.bytes / 2 ** 20).toFixed(1)} MiB, longest ${log.longest.length} bytes`,
    );
    expect(failures.slice(0, 20), `${failures.length} bad answers, ${repro}`).toEqual([]);
    expect(footprint(), `side effects, ${repro}`).toEqual(before);
    expect(log.longest.length, `longest log line, ${repro}: ${log.longest.slice(0, 300)}`).toBeLessThan(LOG_LINE_MAX);
    // Still serving, and the volume still mounted for its one container.
    const list = judge({ what: 'List', bytes: Buffer.alloc(0), expect: 'ok', slow: false }, await exchange(agent.plugin.socketPath, { what: 'List', bytes: http('/VolumeDriver.List', '{}'), expect: 'ok', slow: false }));
    expect(list).toBeUndefined();
  });
});
