import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../agent/config.js';
import { MIN_SAFE_TIMEOUT_SECONDS, timeoutWarning } from '../scripts/build-plugin.js';
import { PLUGIN_SOCKET, PLUGIN_STATE_DIR, pluginConfig } from '../scripts/plugin-config.js';
import { AGENT_IMAGE, buildAgentImage } from './helpers/agent-image.js';
import { commandStep, docker, ensureBusyboxImage, privateDockerd, TEST_IMAGE, type PrivateDockerd } from './helpers/docker.js';
import { step } from './helpers/step.js';
import { freePort, noComposeReason } from './helpers/env.js';
import { sh, tempDir } from './helpers/loop.js';

const repoRoot = join(import.meta.dirname, '..');
const composeFile = join(repoRoot, 'examples', 'compose', 'docker-compose.yml');
const skip = noComposeReason;

/** scripts/build-plugin.ts as an operator runs it, against the engine at host. */
const buildPluginCli = (args: string[], host: string) =>
  step(commandStep('build-plugin', args), () =>
    execa(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts', 'build-plugin.ts'), ...args], {
      cwd: repoRoot,
      env: { DOCKER_HOST: host },
      reject: false,
      timeout: 600_000,
    }),
  );

describe('managed plugin config.json', () => {
  const config = pluginConfig({ withSysResource: true });

  it('is a volume driver on berth.sock whose state directory is the propagated mount', () => {
    expect(config.interface).toEqual({ types: ['docker.volumedriver/1.0'], socket: PLUGIN_SOCKET });
    expect(config.propagatedMount).toBe(PLUGIN_STATE_DIR);
    expect(config.network.type).toBe('host');
    expect(config.linux.capabilities).toEqual(['CAP_SYS_ADMIN', 'CAP_LINUX_IMMUTABLE', 'CAP_SYS_RESOURCE']);
    expect(pluginConfig({ withSysResource: false }).linux.capabilities).not.toContain('CAP_SYS_RESOURCE');
    const env = Object.fromEntries(config.env.map((e) => [e.name, e]));
    expect(env.BERTH_STATE_DIR).toMatchObject({ value: PLUGIN_STATE_DIR, settable: [] });
    expect(env.BERTH_PLUGIN_NAME).toMatchObject({ value: 'berth', settable: [] });
    expect(env.BERTH_BACKEND).toMatchObject({ value: '', settable: ['value'] });
    expect(Object.keys(env).filter((n) => n.startsWith('BERTH_CERT_'))).toEqual([]);
    // Every variable it declares is one the agent accepts, and the declared values start it with its defaults.
    expect(() => loadConfig(Object.fromEntries(config.env.map((e) => [e.name, e.value])))).not.toThrow();
  });

  it('warns about an enable timeout below 60 s, and only then', () => {
    expect(timeoutWarning(MIN_SAFE_TIMEOUT_SECONDS - 1)).toMatch(/--timeout 59 is short.*every call to the plugin.*120 recommended/);
    expect(timeoutWarning(MIN_SAFE_TIMEOUT_SECONDS)).toBeUndefined();
    expect(timeoutWarning(120)).toBeUndefined();
  });
});

/**
 * Dockerfile.agent's image turned into a managed plugin by scripts/build-plugin.ts
 * and enabled on a private dockerd (its own data-root and exec-root: the shared
 * engine and the legacy-socket tests are not disturbed; and an empty legacy plugin
 * directory of its own, so that its `docker volume ls` does not wait on the dead
 * agents' sockets other tests leave in /run/docker/plugins); then the Compose
 * story of test/e2e-compose.test.ts against the driver berth:local.
 */
describe.skipIf(skip)(`berth:local as a managed plugin${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let engine: PrivateDockerd;
  const plugin = 'berth:local';
  let dir: ReturnType<typeof tempDir>;
  let images: string;
  let healthPort: number;
  const projects: string[] = [];
  const d = (args: string[]) => docker(args, { host: engine.host });

  beforeAll(async () => {
    dir = tempDir('berth-managed');
    images = join(dir.path, 'images');
    engine = privateDockerd({ pluginDir: join(dir.path, 'legacy-plugins') });
    mkdirSync(join(dir.path, 'legacy-plugins'));
    await buildAgentImage();
    await engine.start();
    await ensureBusyboxImage(engine.host);
    await step('copy the agent image into the private dockerd', () => execa('sh', ['-c', 'docker save "$0" | docker -H "$1" load', AGENT_IMAGE, engine.host], { timeout: 300_000 }));
    healthPort = await freePort();
    const res = await buildPluginCli(pluginArgs(), engine.host);
    if (res.exitCode !== 0) throw new Error(`build-plugin failed (${res.exitCode}):\n${res.stderr}\n${res.stdout}`);
    expect(res.stderr).not.toMatch(/--timeout .* is short/);
  }, 900_000);

  afterAll(async () => {
    for (const p of projects) await compose(p, ['down', '-v']).catch(() => undefined);
    await d(['plugin', 'disable', '--force', plugin]).catch(() => undefined);
    await d(['plugin', 'rm', '--force', plugin]).catch(() => undefined);
    await engine?.destroy();
    if (dir) {
      if (existsSync(images)) {
        for (const f of readdirSync(images).filter((n) => n.endsWith('.img'))) {
          for (const line of sh('losetup', ['-j', join(images, f)]).split('\n').filter(Boolean)) sh('losetup', ['-d', line.split(':')[0]!]);
        }
      }
      dir.cleanup();
    }
  }, 300_000);

  const pluginArgs = () => [
    '--image', AGENT_IMAGE, '--name', plugin, '--timeout', '120', '--images', images,
    '--set', 'BERTH_BACKEND=loop', '--set', `BERTH_HEALTH_ADDR=127.0.0.1:${healthPort}`, '--set', 'BERTH_DEFAULT_SIZE=64MiB',
  ];
  const compose = (project: string, args: string[], onRemove = 'retain') =>
    step(commandStep('docker-compose', args), () =>
      execa('docker-compose', ['-f', composeFile, '-p', project, ...args], {
        env: { DOCKER_HOST: engine.host, BERTH_DRIVER: plugin, BUSYBOX_IMAGE: TEST_IMAGE, BERTH_ON_REMOVE: onRemove },
        timeout: 120_000,
      }),
    );
  const container = async (project: string) => d(['ps', '-q', '--filter', `label=com.docker.compose.project=${project}`]);
  const agentVolume = async (name: string) => {
    const status = (await (await fetch(`http://127.0.0.1:${healthPort}/status`)).json()) as { volumes: Array<{ name: string; mounted: boolean; refs: number; unmountPending?: boolean }> };
    return status.volumes.find((v) => v.name === name);
  };

  it('is enabled with the capabilities, devices and propagated mount it declares', async () => {
    const [info] = JSON.parse(await d(['plugin', 'inspect', plugin])) as Array<{ Enabled: boolean; Config: { PropagatedMount: string; Interface: { Socket: string }; Linux: { Capabilities: string[]; AllowAllDevices: boolean } } }>;
    expect(info!.Enabled).toBe(true);
    expect(info!.Config.PropagatedMount).toBe(PLUGIN_STATE_DIR);
    expect(info!.Config.Interface.Socket).toBe('berth.sock');
    expect(info!.Config.Linux.Capabilities).toEqual(expect.arrayContaining(['CAP_SYS_ADMIN', 'CAP_LINUX_IMMUTABLE']));
    expect(info!.Config.Linux.AllowAllDevices).toBe(true);
    expect((await d(['plugin', 'ls', '--filter', 'capability=volumedriver', '--filter', 'enabled=true', '--format', '{{.Name}}'])).split('\n')).toContain(plugin);
  });

  it('keeps the data across down and up, and down -v with the default retain keeps the image on the host', async () => {
    const project = `m${healthPort}`;
    projects.push(project);
    await compose(project, ['up', '-d']);
    await d(['exec', await container(project), 'sh', '-c', 'echo precious > /data/keep']);
    expect(await agentVolume(`${project}_data`)).toMatchObject({ mounted: true, refs: 1 });
    await compose(project, ['down']);
    // No container holds it; within the unmount grace (docs/volumes.md, default 10 s) it may still be mounted, marked pending.
    const down = await agentVolume(`${project}_data`);
    expect(down).toMatchObject({ refs: 0 });
    expect(down?.mounted === false || down?.unmountPending === true).toBe(true);

    await compose(project, ['up', '-d']);
    const c = await container(project);
    expect(await d(['exec', c, 'cat', '/data/keep'])).toBe('precious');
    expect(await d(['exec', c, 'cat', '/data/log'])).toBe('started\nstarted');

    await compose(project, ['down', '-v']);
    projects.splice(projects.indexOf(project), 1);
    expect(await d(['volume', 'ls', '-q'])).not.toContain(`${project}_data`);
    expect(existsSync(join(images, `${project}_data.img`))).toBe(true);
  });

  it('down -v deletes the data of a volume created with onRemove=delete', async () => {
    const project = `n${healthPort}`;
    projects.push(project);
    await compose(project, ['up', '-d'], 'delete');
    expect(existsSync(join(images, `${project}_data.img`))).toBe(true);
    await compose(project, ['down', '-v'], 'delete');
    projects.splice(projects.indexOf(project), 1);
    expect(existsSync(join(images, `${project}_data.img`))).toBe(false);
  });

  it('is replaced by build-plugin --force (upgrade without a registry) once no container uses its volumes, and the data is there', async () => {
    const vol = `u${healthPort}`;
    await d(['volume', 'create', '-d', plugin, vol]);
    await d(['run', '--rm', '--network', 'none', '-v', `${vol}:/data`, TEST_IMAGE, 'sh', '-c', 'echo kept > /data/f']);
    // dockerd refuses a plain disable while it knows any volume of the driver, used or not.
    await expect(d(['plugin', 'disable', plugin])).rejects.toThrow(/in use/);
    const oldId = await d(['plugin', 'inspect', '--format', '{{.Id}}', plugin]);

    const user = await d(['run', '-d', '--network', 'none', '-v', `${vol}:/data`, TEST_IMAGE, 'sleep', '3600']);
    const refused = await buildPluginCli([...pluginArgs(), '--force'], engine.host);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`containers use volumes of ${plugin}: ${vol} (${user.slice(0, 12)})`);
    expect(await d(['plugin', 'inspect', '--format', '{{.Id}} {{.Enabled}}', plugin])).toBe(`${oldId} true`);
    expect(await d(['exec', user, 'cat', '/data/f'])).toBe('kept');
    await d(['rm', '-f', user]);

    const replaced = await buildPluginCli([...pluginArgs(), '--force'], engine.host);
    expect(replaced.exitCode, replaced.stderr).toBe(0);
    expect(await d(['plugin', 'inspect', '--format', '{{.Enabled}}', plugin])).toBe('true');
    expect(await d(['plugin', 'inspect', '--format', '{{.Id}}', plugin])).not.toBe(oldId);
    expect(await d(['run', '--rm', '--network', 'none', '-v', `${vol}:/data`, TEST_IMAGE, 'cat', '/data/f'])).toBe('kept');
    await d(['volume', 'rm', vol]);
  });

  it('build-plugin warns on stderr when asked to enable with a timeout below 60 s', async () => {
    // A missing image makes it stop right after the checks: the warning comes first, before any work.
    const short = await buildPluginCli(['--image', 'berth-no-such-image:none', '--name', 'berth-warn:local', '--timeout', '30', '--images', images], engine.host);
    expect(short.stderr).toMatch(/warning: --timeout 30 is short/);
    expect(short.exitCode).toBe(1);
    const ok = await buildPluginCli(['--image', 'berth-no-such-image:none', '--name', 'berth-warn:local', '--timeout', '120', '--images', images], engine.host);
    expect(ok.stderr).not.toMatch(/--timeout .* is short/);
    expect(ok.stderr).toMatch(/berth-no-such-image/);
    const bad = await buildPluginCli(['--timeout', 'soon'], engine.host);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/--timeout must be a whole number of seconds, got "soon"/);
  });
});
