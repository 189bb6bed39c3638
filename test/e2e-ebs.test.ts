import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { startImdsServer, type ImdsServer } from './aws/imds-server.js';
import { uniquePluginName } from './helpers/agent.js';
import { docker as runDocker, ensureBusyboxImage, privateDockerd, TEST_IMAGE } from './helpers/docker.js';
import { AZ, ebsWorld, HOST, REGION, type EbsWorld } from './helpers/ebs.js';
import { noDockerReason } from './helpers/env.js';

/**
 * The real Docker engine, berth on its plugin socket with the EBS backend,
 * AWS played by the EC2 model, every "EBS volume" a real loop device behind a
 * fake NVMe tree. The story of the issue: a node writes to its volume, its
 * host is replaced by a new instance of the same logical host, and the data
 * is there when the node runs again.
 */
describe.skipIf(noDockerReason)(`EBS volumes with the real Docker engine${noDockerReason ? ` (skipped: ${noDockerReason})` : ''}`, () => {
  const engine = privateDockerd();
  const driver = uniquePluginName('berth-ebs');
  const docker = (args: string[]) => runDocker(args, { host: engine.host });
  let w: EbsWorld;
  let imds: ImdsServer;
  let agent: Agent | undefined;

  async function startHost(stateDir: string): Promise<Agent> {
    imds.setInstanceId(w.instanceId);
    agent = await w.startAgent({ pluginName: driver, imdsEndpoint: imds.endpoint, stateDir });
    return agent;
  }

  beforeAll(async () => {
    await engine.start();
    await ensureBusyboxImage(engine.host);
    w = await ebsWorld();
    imds = await startImdsServer({ instanceId: w.instanceId, az: AZ, region: REGION, tags: { 'berth:host': HOST } });
  });
  afterAll(async () => {
    await agent?.stop();
    await imds?.close();
    await engine.destroy();
    await w?.cleanup();
  });

  it('create, run, write; the host is replaced; the new instance mounts the volume at boot and the data is there', async () => {
    const first = await startHost(join(w.dir, 'host-1'));
    await first.booted;
    const vol = `pg-${driver.slice(-8)}`;
    await docker(['volume', 'create', '-d', driver, '-o', 'size=1GiB', '-o', 'type=gp3', vol]);
    const [volumeId] = w.model.volumes().map((v) => v.volumeId);
    expect(w.model.volume(volumeId!).tags).toMatchObject({ 'berth:volume': vol, 'berth:host': HOST });
    await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/data`, TEST_IMAGE, 'sh', '-c', 'echo hello > /data/f']);
    const info = JSON.parse(await docker(['volume', 'inspect', vol]))[0] as { Driver: string; Status: Record<string, unknown> };
    expect(info.Driver).toBe(driver);
    expect(info.Status).toMatchObject({ backend: 'ebs', volumeId, az: AZ, attachedTo: w.instanceId });

    // The old instance dies: berth stops with it, EC2 detaches its volumes; the ASG starts a new instance of the same host.
    await first.stop();
    agent = undefined;
    const oldInstance = w.instanceId;
    const newInstance = await w.replaceInstance();
    expect(newInstance).not.toBe(oldInstance);
    expect(w.model.volume(volumeId!).attachment).toBeUndefined();

    const second = await startHost(join(w.dir, 'host-2'));
    await second.booted;
    expect(w.model.volume(volumeId!).attachment).toMatchObject({ instanceId: newInstance, state: 'attached' });
    expect(w.model.instance(newInstance).tags).toMatchObject({ 'berth:ready': 'true', 'berth:ready-count': '1' });
    expect(await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/data`, TEST_IMAGE, 'cat', '/data/f'])).toBe('hello');

    await docker(['volume', 'rm', vol]);
    // Retained by default: detached, no longer tagged to the host, data kept.
    expect(w.model.volume(volumeId!).attachment).toBeUndefined();
    expect(w.model.volume(volumeId!).tags).not.toHaveProperty('berth:host');
  });
});
