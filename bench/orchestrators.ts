/**
 * Orchestrators and the agent container.
 *
 * Compose and Swarm on a private dockerd (swarm mode must not touch the shared
 * engine), berth (the built dist/ as a child process on its legacy socket)
 * against Docker's `local` driver in the same run, interleaved:
 *  - up/deploy → the service answers: `docker-compose up -d` / `docker service
 *    create` until the container, having written to its volume, drops a file
 *    in a bind-mounted signal directory;
 *  - restart: `docker-compose restart` / `docker service update --force` until
 *    the new start drops the file again (Unmount + Mount for berth).
 *  Medians of N runs after one warm-up (which creates the volume); target
 *  ratio berth/local ≤ 1.3.
 * Agent image (Dockerfile.agent on the local base): size (target ≤ 200 MB, next
 * to its base) and cold start `docker run` → plugin socket ready (target
 * ≤ 1 s), next to the same dist/ started as a host process and to `docker run
 * … true` of the base image.
 *
 *   npm run build && node --import tsx bench/orchestrators.ts [--runs 10]
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { sleep } from '../lib/sleep.js';
import { startChildAgent, stopChild, uniquePluginName } from '../test/helpers/agent.js';
import { agentRunArgs, AGENT_IMAGE, buildAgentImage, imageSizeBytes, makeSharedMount } from '../test/helpers/agent-image.js';
import { freePort } from '../test/helpers/env.js';
import { docker, ensureBusyboxImage, privateDockerd, TEST_IMAGE } from '../test/helpers/docker.js';
import { detachLoopDevicesUnder, tempDir } from '../test/helpers/loop.js';
import { median } from './lib.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' } } });
const runs = Number(values.runs);
const repoRoot = join(import.meta.dirname, '..');
if (!existsSync(join(repoRoot, 'dist/agent/main.js'))) throw new Error('dist/ is missing: run npm run build first');

const tmp = tempDir('berth-bench-orch');
const signalDir = join(tmp.path, 'signal');
mkdirSync(signalDir);
const engine = privateDockerd();
const name = uniquePluginName('berth-bench');
const d = (args: string[]) => docker(args, { host: engine.host });

async function waitForFile(path: string, timeoutMs = 60_000): Promise<void> {
  const t0 = performance.now();
  while (!existsSync(path)) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`${path} did not appear within ${timeoutMs} ms`);
    await sleep(5);
  }
}

async function timed(signal: string, action: () => Promise<unknown>): Promise<number> {
  rmSync(signal, { force: true });
  const t0 = performance.now();
  await action();
  await waitForFile(signal);
  return performance.now() - t0;
}

const ratioLine = (what: string, b: number[], l: number[]) => {
  const mb = median(b);
  const ml = median(l);
  return `${what}, median of ${b.length}: berth ${mb.toFixed(0)} ms, local ${ml.toFixed(0)} ms, ratio ${(mb / ml).toFixed(2)} (target ≤ 1.3)`;
};

/** Interleaves the two variants so both see the same machine. */
async function interleaved(fn: (variant: 'berth' | 'local') => Promise<number>): Promise<{ berth: number[]; local: number[] }> {
  const out = { berth: [] as number[], local: [] as number[] };
  for (let i = 0; i < runs; i++) {
    const order: Array<'berth' | 'local'> = i % 2 === 0 ? ['berth', 'local'] : ['local', 'berth'];
    for (const v of order) out[v].push(await fn(v));
  }
  return out;
}

const driverOf = (v: 'berth' | 'local') => (v === 'berth' ? name : 'local');

async function orchestrators(): Promise<void> {
const child = await startChildAgent(name, join(tmp.path, 'state'), { BERTH_LOG_LEVEL: 'warn' }, true);
try {
  await engine.start();
  await ensureBusyboxImage(engine.host);

  // ---- Compose
  const composeFile = (v: 'berth' | 'local') => {
    const file = join(tmp.path, `compose-${v}.yml`);
    writeFileSync(
      file,
      [
        'version: "3.8"',
        'services:',
        '  app:',
        `    image: ${TEST_IMAGE}`,
        `    command: ["sh", "-c", "echo start >> /data/log && echo up > /signal/compose-${v}; exec sleep 3600"]`,
        '    init: true',
        '    network_mode: none',
        '    volumes:',
        '      - data:/data',
        `      - ${signalDir}:/signal`,
        'volumes:',
        '  data:',
        `    driver: ${driverOf(v)}`,
        ...(v === 'berth' ? ['    driver_opts:', '      size: 256MiB'] : []),
        '',
      ].join('\n'),
    );
    return file;
  };
  const files = { berth: composeFile('berth'), local: composeFile('local') };
  const compose = (v: 'berth' | 'local', args: string[]) =>
    execa('docker-compose', ['-f', files[v], '-p', `bench${v}`, ...args], { env: { DOCKER_HOST: engine.host }, timeout: 120_000 });
  for (const v of ['berth', 'local'] as const) {
    await timed(join(signalDir, `compose-${v}`), () => compose(v, ['up', '-d'])); // warm-up: creates (and formats) the volume
    await compose(v, ['down']);
  }
  const composeUp = await interleaved(async (v) => {
    const ms = await timed(join(signalDir, `compose-${v}`), () => compose(v, ['up', '-d']));
    await compose(v, ['down']);
    return ms;
  });
  for (const v of ['berth', 'local'] as const) await compose(v, ['up', '-d']);
  const composeRestart = await interleaved((v) => timed(join(signalDir, `compose-${v}`), () => compose(v, ['restart'])));
  for (const v of ['berth', 'local'] as const) await compose(v, ['down', '-v']);

  // ---- Swarm (one node)
  // Ports of its own: a swarm test may hold the default 2377/4789 at the same time.
  const swarmPort = await freePort();
  await d(['swarm', 'init', '--listen-addr', `127.0.0.1:${swarmPort}`, '--advertise-addr', `127.0.0.1:${swarmPort}`, '--data-path-port', String(30_000 + (swarmPort % 19_000))]);
  // A node reports a legacy plugin once its engine has used it; Swarm places tasks only where the driver is reported.
  await d(['volume', 'create', '-d', name, '-o', 'size=256MiB', 'swarm-berth']);
  for (let i = 0; i < 300 && !(await d(['node', 'inspect', 'self', '--format', '{{json .Description.Engine.Plugins}}'])).includes(`"${name}"`); i++) await sleep(100);
  const service = (v: 'berth' | 'local') => `svc-${v}`;
  const create = (v: 'berth' | 'local') =>
    d([
      'service', 'create', '--detach', '--no-resolve-image', '--init', '--name', service(v),
      '--mount', `type=volume,source=swarm-${v},target=/data,volume-driver=${driverOf(v)}${v === 'berth' ? ',volume-opt=size=256MiB' : ''}`,
      '--mount', `type=bind,source=${signalDir},target=/signal`,
      TEST_IMAGE, 'sh', '-c', `echo start >> /data/log && echo up > /signal/swarm-${v}; exec sleep 3600`,
    ]);
  const remove = async (v: 'berth' | 'local') => {
    await d(['service', 'rm', service(v)]);
    for (let i = 0; i < 600 && (await d(['ps', '-aq', '--filter', `label=com.docker.swarm.service.name=${service(v)}`])) !== ''; i++) await sleep(50);
  };
  for (const v of ['berth', 'local'] as const) {
    await timed(join(signalDir, `swarm-${v}`), () => create(v));
    await remove(v);
  }
  const swarmDeploy = await interleaved(async (v) => {
    const ms = await timed(join(signalDir, `swarm-${v}`), () => create(v));
    await remove(v);
    return ms;
  });
  for (const v of ['berth', 'local'] as const) await timed(join(signalDir, `swarm-${v}`), () => create(v));
  const swarmRestart = await interleaved((v) => timed(join(signalDir, `swarm-${v}`), () => d(['service', 'update', '--force', '--detach', service(v)])));
  for (const v of ['berth', 'local'] as const) await remove(v);
  await d(['volume', 'rm', 'swarm-berth', 'swarm-local']).catch(() => undefined);

  console.log(ratioLine('Compose: up -d → service answers', composeUp.berth, composeUp.local));
  console.log(ratioLine('Compose: restart → service answers', composeRestart.berth, composeRestart.local));
  console.log(ratioLine('Swarm: service create → task answers', swarmDeploy.berth, swarmDeploy.local));
  console.log(ratioLine('Swarm: service update --force → new task answers', swarmRestart.berth, swarmRestart.local));
} finally {
  await d(['swarm', 'leave', '--force']).catch(() => undefined);
  await engine.destroy();
  await stopChild(child, 'SIGTERM');
}
}

/** Agent container on the shared dockerd; its socket in a directory of its own, so no engine sees it. */
async function agentContainer(): Promise<void> {
  await buildAgentImage();
  const size = await imageSizeBytes(AGENT_IMAGE);
  const base = await imageSizeBytes('berth-base:local');
  console.log(`agent image: ${(size / 1e6).toFixed(0)} MB (target ≤ 200 MB, ratio ${(size / 200e6).toFixed(2)}); its base (node + fs tools) ${(base / 1e6).toFixed(0)} MB, the bundled app ${((size - base) / 1e6).toFixed(0)} MB`);

  const stateDir = join(tmp.path, 'cstate');
  makeSharedMount(stateDir);
  const container: number[] = [];
  const host: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < runs; i++) {
    const pluginDir = join(tmp.path, `plugins-${i}`);
    mkdirSync(pluginDir);
    let t0 = performance.now();
    const id = await docker(['run', '-d', ...agentRunArgs({ pluginDir, stateDir, healthAddr: '127.0.0.1:0' }), AGENT_IMAGE]);
    await waitForFile(join(pluginDir, 'berth.sock'));
    container.push(performance.now() - t0);
    await docker(['rm', '-f', id]);

    const hostDir = join(tmp.path, `host-plugins-${i}`);
    mkdirSync(hostDir);
    t0 = performance.now();
    const proc = spawn(process.execPath, [join(repoRoot, 'dist/agent/main.js')], {
      env: { ...process.env, BERTH_BACKEND: 'loop', BERTH_PLUGIN_DIR: hostDir, BERTH_STATE_DIR: join(tmp.path, 'hstate'), BERTH_HEALTH_ADDR: '127.0.0.1:0', BERTH_LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    await waitForFile(join(hostDir, 'berth.sock'));
    host.push(performance.now() - t0);
    await stopChild(proc, 'SIGTERM');

    t0 = performance.now();
    await docker(['run', '--rm', '--network', 'none', 'berth-base:local', 'true']);
    bare.push(performance.now() - t0);
  }
  const mc = median(container);
  console.log(
    `agent container cold start (docker run → plugin socket), median of ${runs}: ${mc.toFixed(0)} ms (target ≤ 1000 ms, ratio ${(mc / 1000).toFixed(2)}); ` +
      `the same dist/ as a host process ${median(host).toFixed(0)} ms (container/host ${(mc / median(host)).toFixed(2)}); docker run --rm base true ${median(bare).toFixed(0)} ms`,
  );
}

try {
  await orchestrators();
  await agentContainer();
} finally {
  detachLoopDevicesUnder(tmp.path);
  tmp.cleanup();
}
