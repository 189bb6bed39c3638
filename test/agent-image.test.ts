import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../lib/sleep.js';
import { agentRunArgs, AGENT_IMAGE, buildAgentImage, imageSizeBytes, makeSharedMount, pluginPost } from './helpers/agent-image.js';
import { AGENT_ENTRYPOINT } from '../scripts/plugin-config.js';
import { docker } from './helpers/docker.js';
import { freePort, noDockerReason } from './helpers/env.js';
import { detachLoopDevicesUnder, sh, tempDir } from './helpers/loop.js';

describe('scripts/local-base-image.sh', () => {
  it('passes shellcheck', () => {
    expect(() => execFileSync('shellcheck', [join(import.meta.dirname, '..', 'scripts', 'local-base-image.sh')], { encoding: 'utf8' })).not.toThrow();
  });
});

/** Dockerfile.agent built on the locally assembled base, then run the way the Dockerfile documents. */
describe.skipIf(noDockerReason)(`agent container image${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  const containers: string[] = [];

  beforeAll(async () => {
    dir = tempDir('berth-image');
    const { buildMs } = await buildAgentImage();
    console.log(`agent image built in ${(buildMs / 1000).toFixed(1)} s, ${((await imageSizeBytes()) / 1e6).toFixed(0)} MB`);
  }, 900_000);
  afterAll(async () => {
    for (const c of containers) await docker(['rm', '-f', c]).catch(() => undefined);
    if (dir) {
      // The kernel names a loop device's backing file relative to the container's mount, so find them by file.
      const images = join(dir.path, 'state', 'images');
      if (existsSync(images)) {
        for (const f of readdirSync(images).filter((n) => n.endsWith('.img'))) {
          for (const line of sh('losetup', ['-j', join(images, f)]).split('\n').filter(Boolean)) sh('losetup', ['-d', line.split(':')[0]!]);
        }
      }
      detachLoopDevicesUnder(dir.path);
      dir.cleanup();
    }
  });

  it('holds dist/ bundled with its dependencies: no node_modules, so nothing of Pulumi or the dev tools', async () => {
    const listing = JSON.parse(
      await docker([
        'run', '--rm', '--network', 'none', '--entrypoint', 'node', AGENT_IMAGE, '-e',
        `const fs=require('fs');
         console.log(JSON.stringify({ nodeModules: fs.existsSync('/opt/berth/node_modules'), dist: fs.existsSync('/opt/berth/dist/agent/main.js'), cli: fs.existsSync('/usr/local/bin/berth'), infra: fs.existsSync('/opt/berth/infra'),
           pulumi: fs.readdirSync('/opt/berth/dist', { recursive: true }).some((f) => String(f).includes('pulumi')) }))`,
      ]),
    ) as { nodeModules: boolean; dist: boolean; cli: boolean; infra: boolean; pulumi: boolean };
    expect(listing).toEqual({ nodeModules: false, dist: true, cli: true, infra: false, pulumi: false });
  });

  it('declares its entrypoint, health check, stop signal and OCI labels', async () => {
    const [img] = JSON.parse(await docker(['image', 'inspect', AGENT_IMAGE])) as Array<{
      Config: { Entrypoint: string[]; Healthcheck?: { Test: string[] }; StopSignal?: string; Labels: Record<string, string>; User: string };
    }>;
    expect(img!.Config.Entrypoint).toEqual(AGENT_ENTRYPOINT);
    // The same node flags as the systemd unit (bench/plugin-hot-path.ts measures memory with those).
    const unit = readFileSync(join(import.meta.dirname, '..', 'userdata', 'berth.service'), 'utf8');
    expect(/^ExecStart=\S*\/node (.*)$/m.exec(unit)?.[1]?.replace('/opt/berth/dist/agent/main.js', '').trim().split(' ')).toEqual(AGENT_ENTRYPOINT.slice(1, -1));
    expect(img!.Config.Healthcheck?.Test.join(' ')).toContain('/healthz');
    expect(img!.Config.StopSignal).toBe('SIGTERM');
    expect(img!.Config.User).toBe('root');
    expect(img!.Config.Labels).toMatchObject({ 'org.opencontainers.image.title': 'berth', 'org.opencontainers.image.licenses': 'Apache-2.0' });
    expect(img!.Config.Labels['org.opencontainers.image.base.name']).toBe('berth-base:local');
    expect(img!.Config.Labels['org.opencontainers.image.version']).toBe(JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')).version);
  });

  it('answers /Plugin.Activate on its socket, mounts a volume the host sees, turns healthy (berth doctor inside agrees), stops on SIGTERM leaving the mount, and unmounts it after a restart', async () => {
    const pluginDir = join(dir.path, 'plugins');
    const stateDir = join(dir.path, 'state');
    makeSharedMount(stateDir);
    const port = await freePort();
    const socket = join(pluginDir, 'berth.sock');
    const mountpoint = join(stateDir, 'mounts', 'img1');
    const hostMounts = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === mountpoint);
    const start = async (name: string) => {
      const t0 = performance.now();
      const id = await docker(['run', '-d', '--name', name, ...agentRunArgs({ pluginDir, stateDir, healthAddr: `127.0.0.1:${port}` }), AGENT_IMAGE]);
      containers.push(id);
      while (!existsSync(socket)) {
        if (performance.now() - t0 > 20_000) throw new Error(`no socket after 20 s; logs:\n${await docker(['logs', id])}`);
        await sleep(20);
      }
      console.log(`agent container ${name}: socket after ${(performance.now() - t0).toFixed(0)} ms (docker run included)`);
      return id;
    };
    const id = await start(`berth-image-test-${port}`);

    expect(await pluginPost(socket, '/Plugin.Activate')).toEqual({ Implements: ['VolumeDriver'] });
    expect(await pluginPost(socket, '/VolumeDriver.Create', { Name: 'img1', Opts: { size: '64MiB' } })).toEqual({ Err: '' });
    const mounted = await pluginPost(socket, '/VolumeDriver.Mount', { Name: 'img1', ID: 'c1' });
    expect(mounted).toEqual({ Mountpoint: join(stateDir, 'mounts', 'img1'), Err: '' });
    // The mount made inside the container is visible on the host, where dockerd looks for it.
    const hostView = hostMounts();
    expect(hostView).toHaveLength(1);
    expect(hostView[0]).toContain(' ext4 ');

    let health = '';
    for (let i = 0; i < 60 && health !== 'healthy'; i++) {
      health = await docker(['inspect', '--format', '{{.State.Health.Status}}', id]);
      if (health !== 'healthy') await sleep(500);
    }
    expect(health).toBe('healthy');

    // The CLI inside the image finds every tool and the agent; only the host-side checks cannot run there.
    const doctor = JSON.parse(await docker(['exec', id, 'berth', 'doctor', '--json'])) as Array<{ name: string; result: string }>;
    expect(Object.fromEntries(doctor.map((c) => [c.name, c.result]))).toMatchObject({
      tools: 'ok',
      'loop devices': 'ok',
      'plugin socket': 'ok', // one probe: exists, 0600, answers Activate
      'agent ready': 'ok',
      'start order': 'warn',
      'dockerd sees berth': 'warn',
    });

    await docker(['stop', '--time', '20', id]);
    expect(await docker(['inspect', '--format', '{{.State.ExitCode}}', id])).toBe('0');
    expect(existsSync(socket)).toBe(false);
    // Stopping leaves mounts in place for running containers.
    expect(hostMounts()).toHaveLength(1);

    // A new container (an upgrade) picks the mount up from the state file: the later last Unmount starts the
    // volume's unmount grace (an ID it had no record of would unmount at once), and Remove unmounts at once.
    const second = await start(`berth-image-test-${port}-b`);
    expect(await pluginPost(socket, '/VolumeDriver.Unmount', { Name: 'img1', ID: 'c1' })).toEqual({ Err: '' });
    const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { volumes: Array<{ name: string }> };
    expect(status.volumes.find((v) => v.name === 'img1')).toMatchObject({ mounted: true, refs: 0, unmountPending: true });
    expect(await pluginPost(socket, '/VolumeDriver.Remove', { Name: 'img1' })).toEqual({ Err: '' });
    expect(hostMounts()).toHaveLength(0);
    await docker(['stop', '--time', '20', second]);
  });
});
