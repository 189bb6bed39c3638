import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { run } from '../agent/cli.js';
import type { Config } from '../agent/config.js';
import { sleep } from '../lib/sleep.js';
import { loopLayout } from '../volume-plugin/backends/loop.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { docker as runDocker, ensureBusyboxImage, makeMachineDir, privateDockerd, TEST_IMAGE, type PrivateDockerd } from './helpers/docker.js';
import { noDockerReason, noSysResourceReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';
import { step } from './helpers/step.js';

const MiB = 2 ** 20;

/**
 * Online grow (docs/design.md §6, docs/operations.md "Grow a node's volume"):
 * a volume under a running container grows, and the container sees the new
 * size in `df` without a restart: through `berth resize`, and when the device
 * grows behind berth's back (as EBS ModifyVolume from Pulumi does), which the
 * agent notices by itself. Real dockerd (its own, with its own plugin directory, as
 * e2e-docker.test.ts), loop backend.
 */
describe.skipIf(noDockerReason)(`online grow under a running container${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  let engine: PrivateDockerd;
  const driver = uniquePluginName();
  const docker = (args: string[]) => runDocker(args, { host: engine.host });
  const vol = (n: string) => `${n}-${driver.slice(-8)}`;
  let dir: ReturnType<typeof tempDir>;
  let agent: Agent;
  let config: Config;
  const containers: string[] = [];

  beforeAll(async () => {
    dir = tempDir('berth-grow');
    const machine = join(dir.path, 'machine');
    const pluginDir = makeMachineDir(machine);
    engine = privateDockerd({ pluginDir });
    await engine.start();
    await ensureBusyboxImage(engine.host);
    ({ agent, config } = await startInProcessAgent(driver, join(machine, 'state'), { BERTH_GROW_CHECK_SECONDS: '1', BERTH_PLUGIN_DIR: pluginDir }));
  }, 180_000);
  afterEach(async () => {
    if (containers.length) await docker(['rm', '-f', ...containers.splice(0)]).catch(() => undefined);
  });
  afterAll(async () => {
    await agent?.stop();
    await engine?.destroy();
    detachLoopDevicesUnder(dir.path);
    dir.cleanup();
  }, 60_000);

  /** The filesystem size the container sees at /data, from its own `df` (1K blocks). */
  const dfBytes = async (container: string) => {
    const line = (await docker(['exec', container, 'df', '-k', '/data'])).split('\n').at(-1)!;
    return Number(line.trim().split(/\s+/)[1]) * 1024;
  };
  const startedAt = async (container: string) => docker(['inspect', '-f', '{{.State.StartedAt}} {{.RestartCount}}', container]);
  const metric = async (text: RegExp) => {
    const body = await (await fetch(`http://127.0.0.1:${agent.healthPort}/metrics`)).text();
    return Number(text.exec(body)?.[1] ?? 0);
  };
  const grownTotal = () => metric(/^berth_volume_grow_total\{result="grown"\} (\d+)$/m);

  async function serving(name: string, fs: 'xfs' | 'ext4', size: string): Promise<string> {
    await docker(['volume', 'create', '-d', driver, '-o', `fs=${fs}`, '-o', `size=${size}`, name]);
    const c = await step('docker run a container on the volume', () =>
      docker(['run', '-d', '--network', 'none', '-v', `${name}:/data`, TEST_IMAGE, 'sh', '-c', 'echo kept > /data/f; sleep 600']),
    );
    containers.push(c);
    return c;
  }

  async function growsOnlineThroughResize(fs: 'xfs' | 'ext4', from: string, to: number) {
    const name = vol(`resize-${fs}`);
    const c = await serving(name, fs, from);
    const before = await dfBytes(c);
    const started = await startedAt(c);
    const grownBefore = await grownTotal();
    const lines: string[] = [];
    const code = await step('berth resize', () =>
      run(['resize', name, `${to / MiB}MiB`], { config: { ...config, BERTH_HEALTH_ADDR: `127.0.0.1:${agent.healthPort}` }, out: (l) => lines.push(l) }),
    );
    expect(code).toBe(0);
    expect(lines.join('\n')).toMatch(new RegExp(`^${name}: ${to / MiB}MiB; image .*\\nits mounted filesystem was grown online$`));
    const after = await dfBytes(c);
    expect(after).toBeGreaterThan(before + (to - before) / 2);
    expect(after).toBeLessThanOrEqual(to);
    // The same container, never restarted, its data in place.
    expect(await startedAt(c)).toBe(started);
    expect(await docker(['exec', c, 'cat', '/data/f'])).toBe('kept');
    expect(await grownTotal()).toBe(grownBefore + 1);
    const seen = agent.manager.snapshot().find((v) => v.name === name)!;
    expect(seen).toMatchObject({ mounted: true, size: { deviceBytes: to, grownAt: expect.any(String) } });
    expect(seen.lastError).toBeUndefined();
    // docker volume inspect says so too.
    expect(JSON.parse(await docker(['volume', 'inspect', name]))[0].Status).toMatchObject({ size: `${to / MiB}MiB`, deviceSize: `${to / MiB}MiB`, grownOnlineAt: seen.size!.grownAt });
  }

  it('xfs: berth resize grows the volume and the running container sees it in df, with no restart', async () => {
    await growsOnlineThroughResize('xfs', '320MiB', 640 * MiB);
  }, 120_000);

  it.skipIf(noSysResourceReason)(`ext4: the same with resize2fs${noSysResourceReason ? ` (skipped: ${noSysResourceReason})` : ''}`, async () => {
    await growsOnlineThroughResize('ext4', '64MiB', 192 * MiB);
  }, 120_000);

  it('a device grown behind berth (image enlarged, loop capacity refreshed) is noticed and grown by the agent with no call', async () => {
    const name = vol('behind');
    const c = await serving(name, 'xfs', '320MiB');
    const before = await dfBytes(c);
    const started = await startedAt(c);
    const device = agent.manager.snapshot().find((v) => v.name === name)!.devicePath!;
    // What EBS ModifyVolume does to an NVMe namespace, done to the loop device: the device grows, nobody tells berth.
    execFileSync('truncate', ['-s', `${640}M`, loopLayout(config.BERTH_STATE_DIR).imagePath(name)]);
    execFileSync('losetup', ['--set-capacity', device]);
    await step('the agent notices and grows it', async () => {
      for (const end = Date.now() + 15_000; Date.now() < end; await sleep(250)) if ((await dfBytes(c)) > before + 200 * MiB) return;
      throw new Error(`df inside the container still shows ${await dfBytes(c)} bytes`);
    });
    expect(await startedAt(c)).toBe(started);
    expect(agent.manager.snapshot().find((v) => v.name === name)).toMatchObject({ size: { deviceBytes: 640 * MiB, grownFromBytes: 320 * MiB } });
  }, 120_000);

  it('a shrink is refused with a clear error and nothing changes', async () => {
    const name = vol('shrink');
    const c = await serving(name, 'xfs', '400MiB');
    const before = await dfBytes(c);
    const lines: string[] = [];
    await expect(run(['resize', name, '320MiB'], { config: { ...config, BERTH_HEALTH_ADDR: `127.0.0.1:${agent.healthPort}` }, out: (l) => lines.push(l) })).rejects.toThrow(
      new RegExp(`^volume ${name} is 400MiB; it can only grow, not shrink to 320MiB \\(no data was touched\\)$`),
    );
    expect(await dfBytes(c)).toBe(before);
  }, 120_000);
});
