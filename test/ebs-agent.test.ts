import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteVolumeCommand } from '@aws-sdk/client-ec2';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import type { Ec2Timing } from '../volume-plugin/backends/ebs/ec2-facade.js';
import { readMountinfo } from '../lib/mountinfo.js';
import { EC2_CLIENT_SETTINGS } from '../agent/backend-factory.js';
import { HOST_PATHS } from './helpers/manager.js';
import { sleep } from '../lib/sleep.js';
import { startImdsServer, type ImdsServer } from './aws/imds-server.js';
import { uniquePluginName } from './helpers/agent.js';
import { AZ, ebsWorld, GiB, HOST, REGION, type EbsWorld } from './helpers/ebs.js';
import { noLoopReason } from './helpers/env.js';

const TAGS = (name: string, host = HOST) => ({ 'berth:volume': name, 'berth:host': host, 'berth:managed-by': 'berth' });

async function get(port: number, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function mountedAt(path: string): Promise<boolean> {
  return (await readMountinfo(HOST_PATHS.mountinfoPath)).some((m) => m.mountpoint === path);
}

describe.skipIf(noLoopReason)(`EBS agent: boot reconcile, drift repair, readiness tags${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let w: EbsWorld;
  let imds: ImdsServer | undefined;
  let agent: Agent | undefined;

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await imds?.close();
    imds = undefined;
    await w?.cleanup();
  });

  async function start(extra: Record<string, string> = {}, timing: Partial<Ec2Timing> = {}): Promise<Agent> {
    imds ??= await startImdsServer({ instanceId: w.instanceId, az: AZ, region: REGION, tags: { 'berth:host': HOST } });
    imds.setInstanceId(w.instanceId);
    agent = await w.startAgent({ pluginName: uniquePluginName('berth-ebs'), imdsEndpoint: imds.endpoint, env: extra, timing });
    return agent;
  }

  it('at boot mounts every volume tagged to this host (moving those left on a dead instance), then tags readiness', async () => {
    w = await ebsWorld();
    const dead = w.model.addInstance({ az: AZ, state: 'terminated' });
    const ids = ['a', 'b', 'c', 'd'].map((n) => w.model.addVolume({ az: AZ, size: 1, tags: TAGS(n) }));
    const left = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('e'), attachedTo: { instanceId: dead, device: '/dev/xvdbb' } });
    const foreign = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('other', 'host-b') });
    const a = await start();
    await a.booted;
    const snap = a.manager.snapshot();
    expect(snap.filter((v) => v.mounted).map((v) => v.name).sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    for (const v of snap) expect(await mountedAt(v.mountpoint)).toBe(true);
    for (const id of [...ids, left]) {
      expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
      expect(w.model.volume(id).tags).toMatchObject({ 'berth:state': 'mounted', 'berth:attached-to': w.instanceId });
    }
    expect(w.model.volume(foreign).attachment).toBeUndefined();
    expect(w.model.instance(w.instanceId).tags).toMatchObject({ 'berth:ready': 'true', 'berth:ready-count': '5' });
    expect((await get(a.healthPort, '/readyz')).status).toBe(200);
  });

  it('a Mount that arrives during boot reconcile waits for the same work: one attachment per volume', async () => {
    w = await ebsWorld({ attachLatencyMs: 300 });
    for (const n of ['a', 'b', 'c']) w.model.addVolume({ az: AZ, size: 1, tags: TAGS(n) });
    const a = await start();
    const mp = await a.docker.mount('b', 'f'.repeat(64));
    await writeFile(join(mp, 'x'), 'written while booting');
    await a.booted;
    expect(w.model.calls('AttachVolume')).toBe(3);
    expect(a.manager.snapshot().find((v) => v.name === 'b')).toMatchObject({ mounted: true, refs: 1 });
    await a.docker.unmount('b', 'f'.repeat(64));
  });

  it('a pass repairs drift: detached behind its back, newly tagged, retagged to another host; dry-run plans it first', async () => {
    w = await ebsWorld();
    const detached = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('detached') });
    const moving = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('moving') });
    const a = await start();
    await a.booted;
    const mpDetached = a.manager.mountpointOf('detached');
    await writeFile(join(mpDetached, 'f'), 'still here');

    await w.model.detachOutOfBand(detached);
    const fresh = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('fresh') });
    w.model.setTags(moving, { 'berth:host': 'host-b' });

    const plan = await get(a.healthPort, '/reconcile/plan');
    const items = (plan.body.items as { name: string; action: string; reason: string }[]).map((i) => [i.name, i.action]).sort();
    expect(items).toEqual([
      ['detached', 'remount'],
      ['fresh', 'mount'],
      ['moving', 'release'],
    ]);
    // Planning changed nothing.
    expect(w.model.volume(fresh).attachment).toBeUndefined();

    const reconciler = await a.booted;
    await reconciler!.pass();
    expect(await readFile(join(mpDetached, 'f'), 'utf8')).toBe('still here');
    expect(w.model.volume(detached).attachment?.state).toBe('attached');
    expect(w.model.volume(fresh).attachment?.instanceId).toBe(w.instanceId);
    expect(w.model.volume(moving).attachment).toBeUndefined();
    expect(await mountedAt(a.manager.mountpointOf('moving'))).toBe(false);
    expect(w.model.instance(w.instanceId).tags).toMatchObject({ 'berth:ready': 'true', 'berth:ready-count': '2' });
    expect((await get(a.healthPort, '/reconcile/plan')).body.items).toEqual([]);
  });

  it('instance credentials that appear only after boot: the SDK chain is asked again until they come, then the volumes mount', async () => {
    w = await ebsWorld();
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('late') });
    imds = await startImdsServer({ instanceId: w.instanceId, az: AZ, region: REGION, tags: { 'berth:host': HOST }, credentialsAfterMs: 3_000 });
    // A client with no credentials of its own: the SDK's default chain finds them in IMDS, as on EC2.
    const { EC2Client } = await import('@aws-sdk/client-ec2');
    const client = new EC2Client({ region: REGION, ...EC2_CLIENT_SETTINGS });
    w.model.installBehindSdkRetries(client);
    const saved = { ...process.env };
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI']) delete process.env[k];
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds.endpoint;
    process.env.AWS_CONFIG_FILE = process.env.AWS_SHARED_CREDENTIALS_FILE = join(w.dir, 'no-such-aws-config');
    try {
      const a = (agent = await w.startAgent({ pluginName: uniquePluginName('berth-ebs'), imdsEndpoint: imds.endpoint, client }));
      await sleep(1_000);
      const waiting = await get(a.healthPort, '/readyz');
      expect(waiting.status).toBe(503);
      expect(w.model.calls()).toBe(0);
      await a.booted;
      expect(w.model.calls('AttachVolume')).toBe(1);
      expect(await mountedAt(join(w.stateDir, 'mounts', 'late'))).toBe(true);
      expect((await get(a.healthPort, '/readyz')).status).toBe(200);
      const credentialAsks = imds.paths.get('/latest/meta-data/iam/security-credentials/') ?? 0;
      expect(credentialAsks).toBeGreaterThan(1);
    } finally {
      process.env = saved;
    }
  });

  it('a volume whose device holds a foreign filesystem: refused and detached once, not retried every pass, reported; retried once it changes', async () => {
    w = await ebsWorld();
    const id = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('foreign') });
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('fine') });
    const bindHere = w.model.onAttached!;
    let formatted = false;
    w.model.onAttached = async (volumeId, device, instanceId) => {
      if (volumeId !== id) return bindHere(volumeId, device, instanceId);
      const dev = await w.tree.bind(volumeId, GiB);
      if (!formatted) await execa('mkfs.xfs', ['-q', '-f', dev]);
      formatted = true;
    };
    const a = await start();
    const reconciler = (await a.booted)!;
    expect(w.model.volume(id).attachment).toBeUndefined();
    const attaches = w.model.calls('AttachVolume');
    await reconciler.pass();
    await reconciler.pass();
    expect(w.model.calls('AttachVolume')).toBe(attaches);
    const ready = await get(a.healthPort, '/readyz');
    expect(ready.status).toBe(503);
    expect(String((ready.body.checks as Record<string, string>).volumes)).toMatch(/foreign \(refused, not retried until it changes: .*holds a xfs filesystem but the volume asks for ext4/);
    expect(w.model.instance(w.instanceId).tags['berth:ready']).toBe('false');
    expect(w.model.volume(id).tags['berth:state']).toMatch(/^error:.*holds a xfs filesystem/);
    const status = await get(a.healthPort, '/status');
    expect(JSON.stringify(status.body.volumes)).toMatch(/holds a xfs filesystem/);

    // The operator says what the volume holds: the next pass tries again and mounts it.
    w.model.setTags(id, { 'berth:options': JSON.stringify({ sizeBytes: GiB, fs: 'xfs', onRemove: 'retain' }) });
    await reconciler.pass();
    expect(await mountedAt(a.manager.mountpointOf('foreign'))).toBe(true);
    expect((await get(a.healthPort, '/readyz')).status).toBe(200);
    expect(w.model.instance(w.instanceId).tags['berth:ready']).toBe('true');
  });

  it('a second volume with the name of a mounted one: the mounted one stays mounted with its containers, the duplicate is reported', async () => {
    w = await ebsWorld();
    const first = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('twin') });
    const a = await start();
    const reconciler = (await a.booted)!;
    const mp = a.manager.mountpointOf('twin');
    await writeFile(join(mp, 'f'), 'mine');
    const second = w.model.addVolume({ az: AZ, size: 1, tags: TAGS('twin') });
    await reconciler.pass();
    expect(await mountedAt(mp)).toBe(true);
    expect(a.manager.snapshot().find((v) => v.name === 'twin')).toMatchObject({ id: first, mounted: true });
    expect(w.model.volume(first).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(w.model.volume(second).attachment).toBeUndefined();
    // A container started now gets the same data.
    const again = await a.docker.mount('twin', 'e'.repeat(64));
    expect(await readFile(join(again, 'f'), 'utf8')).toBe('mine');
    await reconciler.pass();
    expect(a.manager.snapshot().find((v) => v.name === 'twin')).toMatchObject({ id: first, mounted: true, refs: 1 });

    const ready = await get(a.healthPort, '/readyz');
    expect(ready.status).toBe(503);
    expect(String((ready.body.checks as Record<string, string>).volumes)).toContain(`twin (2 EBS volumes carry this name: ${first}, ${second}; berth keeps using ${first}`);
    expect(w.model.instance(w.instanceId).tags['berth:ready']).toBe('false');
    expect(w.model.volume(second).tags['berth:state']).toBe('error:duplicate berth:volume=twin');
    expect(await (await fetch(`http://127.0.0.1:${a.healthPort}/metrics`)).text()).toMatch(/^berth_ebs_duplicate_volume_names 1$/m);

    // The wrong one is untagged: ready again, nothing was moved.
    w.model.removeTags(second, ['berth:volume']);
    await reconciler.pass();
    expect((await get(a.healthPort, '/readyz')).status).toBe(200);
    expect(w.model.instance(w.instanceId).tags['berth:ready']).toBe('true');
    expect(await mountedAt(mp)).toBe(true);
    await a.docker.unmount('twin', 'e'.repeat(64));
  });

  it('/readyz and the ready tag agree, and recover once the failed volumes are removed or deleted', async () => {
    w = await ebsWorld();
    w.model.addVolume({ az: 'eu-west-1b', size: 1, tags: TAGS('far') });
    const farther = w.model.addVolume({ az: 'eu-west-1c', size: 1, tags: TAGS('farther') });
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('near') });
    const a = await start();
    const reconciler = (await a.booted)!;
    const before = await get(a.healthPort, '/readyz');
    expect(before.status).toBe(503);
    expect(String((before.body.checks as Record<string, string>).volumes)).toMatch(/far \(.*cannot attach across zones.*farther \(/);
    expect(w.model.instance(w.instanceId).tags['berth:ready']).toBe('false');

    await a.docker.remove('far'); // docker volume rm
    await w.client.send(new DeleteVolumeCommand({ VolumeId: farther })); // deleted at EC2
    await reconciler.pass();
    const after = await get(a.healthPort, '/readyz');
    expect(after.body.checks).toMatchObject({ volumes: true });
    expect(after.status).toBe(200);
    expect(w.model.instance(w.instanceId).tags).toMatchObject({ 'berth:ready': 'true', 'berth:ready-count': '1' });
  });

  it('the boot of a host holding 21 volumes of one stopped instance asks EC2 about that instance once', async () => {
    w = await ebsWorld();
    const stopped = w.model.addInstance({ az: AZ, state: 'stopped' });
    const ids = [...'abcdefghijklmnopqrstu'].map((c) => w.model.addVolume({ az: AZ, size: 1, tags: TAGS(`v${c}`), attachedTo: { instanceId: stopped, device: `/dev/xvdc${c}` } }));
    // 21 fake NVMe devices bound at once can take seconds on a busy machine: not an attachment stuck at EC2.
    const a = await start({ BERTH_HOST_ID: HOST }, { stuckAttachingMs: 20_000, attachTimeoutMs: 60_000 });
    await a.booted;
    for (const id of ids) expect(w.model.volume(id).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    const asked = w.model.inputs('DescribeInstances').filter((input) => JSON.stringify(input).includes(stopped));
    expect(asked).toHaveLength(1);
    expect((await get(a.healthPort, '/readyz')).status).toBe(200);
  });

  it('IMDS unreachable: Get and List still answer from the state file, /readyz says why it is not ready', async () => {
    w = await ebsWorld();
    w.model.addVolume({ az: AZ, size: 1, tags: TAGS('kept') });
    const first = await start();
    await first.booted;
    await first.stop();
    agent = undefined;
    // The host is gone; the same state dir comes back on a machine whose IMDS does not answer.
    for (const m of (await readMountinfo(HOST_PATHS.mountinfoPath)).filter((e) => e.mountpoint.startsWith(w.stateDir))) await execa('umount', [m.mountpoint]);
    const a = await start({ BERTH_IMDS_ENDPOINT: 'http://127.0.0.1:1' });
    expect((await a.docker.list()).map((v) => v.Name)).toEqual(['kept']);
    expect((await a.docker.get('kept')).Name).toBe('kept');
    // The metadata client retries before it gives up.
    let ready = await get(a.healthPort, '/readyz');
    for (let i = 0; i < 100 && /starting: starting/.test(JSON.stringify(ready.body)); i++) {
      await sleep(100);
      ready = await get(a.healthPort, '/readyz');
    }
    expect(ready.status).toBe(503);
    expect(String((ready.body.checks as Record<string, string>).volumes)).toMatch(/EBS backend starting: cannot read this instance's identity from the instance metadata service \(IMDSv2 at http:\/\/127\.0\.0\.1:1\)/);
  });
});
