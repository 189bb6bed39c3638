import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '../../lib/errors.js';
import { delay } from '../fakes/faults.js';
import { fakeWorld, type FakeWorld } from '../fakes/world.js';

/**
 * The volume service's lifecycle rules over the in-memory backend and
 * filesystem (test/fakes): milliseconds, no root. The same rules are checked
 * against real loop devices and dockerd by the integration tests under test/.
 */
const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

let world: FakeWorld;
afterEach(() => world?.cleanup());

const started = async (options?: Parameters<typeof fakeWorld>[0]) => {
  world = fakeWorld(options);
  return world.start();
};
const viewOf = (name: string) => world.service.describe(name);

describe('volume service: references per consumer', () => {
  it('stays mounted until the last consumer unpublishes, then unmounts and releases the device', async () => {
    const w = await started();
    await w.service.create('v', {});
    const mp = await w.service.publish('v', A);
    await w.service.publish('v', A);
    await w.service.publish('v', B);
    expect(viewOf('v')).toMatchObject({ mounted: true, mountpoint: mp, consumers: 3 });
    expect(w.savedMounts('v')).toEqual({ [A]: 2, [B]: 1 });

    await w.service.unpublish('v', A);
    await w.service.unpublish('v', B);
    expect(viewOf('v')).toMatchObject({ mounted: true, consumers: 1 });
    expect(w.host.mounts.get(mp)).toBe(w.backend.deviceOf('v'));

    await w.service.unpublish('v', 'c'.repeat(64)); // unknown consumer: success, nothing changes
    expect(viewOf('v')).toMatchObject({ mounted: true, consumers: 1 });
    await w.service.unpublish('v', A);
    expect(viewOf('v')).toMatchObject({ mounted: false, consumers: 0 });
    expect(w.host.mounts.size).toBe(0);
    expect(w.backend.isAttached('v')).toBe(false);
  });

  it('formats a blank device once, and mounts the same data again later', async () => {
    const w = await started();
    await w.service.create('v', {});
    await w.service.publish('v', A);
    await w.service.unpublish('v', A);
    await w.service.publish('v', B);
    expect(w.fs.faults.calls('mkfs')).toBe(1);
  });

  it('refuses an invalid consumer id before anything is touched', async () => {
    const w = await started();
    await w.service.create('v', {});
    await expect(w.service.publish('v', 'a/b')).rejects.toThrow(/invalid mount ID/);
    await expect(w.docker.mount('v', 'a b')).rejects.toThrow(/invalid mount ID/);
    expect(w.backend.faults.calls('attach')).toBe(0);
  });
});

describe('volume service: a failed or late Mount is undone', () => {
  it('a mount(8) failure leaves nothing mounted, the device detached, no reference, and the error shown', async () => {
    const w = await started();
    await w.service.create('v', {});
    w.fs.faults.fail('mount', new BerthError('INTERNAL', 'mount: wrong fs type'));
    await expect(w.service.publish('v', A)).rejects.toThrow(/wrong fs type/);
    expect(viewOf('v')).toMatchObject({ mounted: false, consumers: 0, lastError: 'mount: wrong fs type' });
    expect(w.host.mounts.size).toBe(0);
    expect(w.backend.isAttached('v')).toBe(false);
    expect(w.savedMounts('v')).toEqual({});
    // The next Mount works and clears the error.
    await w.service.publish('v', A);
    expect(viewOf('v')).toMatchObject({ mounted: true, consumers: 1 });
    expect(viewOf('v')?.lastError).toBeUndefined();
  });

  it('a Mount that finishes after its deadline counts no reference and leaves nothing mounted or attached', async () => {
    const w = await started({ deadlines: { mount: 30 } });
    await w.service.create('v', {});
    w.fs.faults.before('grow', () => new Promise((r) => setTimeout(r, 60))); // the deadline passes during the last step
    await expect(w.service.publish('v', A)).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(viewOf('v')).toMatchObject({ mounted: false, consumers: 0 });
    expect(w.host.mounts.size).toBe(0);
    expect(w.backend.isAttached('v')).toBe(false);
    expect(w.savedMounts('v')).toEqual({});
  });

  it("a Mount whose caller's signal aborts mid-format is undone, and the format is redone at the next Mount", async () => {
    const w = await started();
    await w.service.create('v', {});
    const caller = new AbortController();
    w.fs.faults.before('mkfs', delay(1_000));
    const mounting = w.service.publish('v', A, { signal: caller.signal });
    setTimeout(() => caller.abort(new BerthError('TIMEOUT', 'caller gone')), 10);
    await expect(mounting).rejects.toThrow(/caller gone/);
    expect(w.host.partial.has(w.backend.deviceOf('v')!)).toBe(true);
    expect(viewOf('v')).toMatchObject({ mounted: false, consumers: 0 });
    w.fs.faults.before('mkfs', undefined);
    await w.service.publish('v', A);
    expect(w.fs.faults.calls('mkfs')).toBe(2);
    expect(viewOf('v')).toMatchObject({ mounted: true, consumers: 1 });
  });

  it('a call that waits for the lock past its deadline fails then, and its work never runs', async () => {
    const w = await started({ deadlines: { other: 30 } });
    await w.service.create('v', {});
    w.backend.faults.before('attach', delay(100));
    const mounting = w.service.publish('v', A);
    await expect(w.service.remove('v')).rejects.toMatchObject({ code: 'TIMEOUT' });
    await mounting;
    expect(w.backend.faults.calls('remove')).toBe(0);
    expect(viewOf('v')).toMatchObject({ mounted: true, consumers: 1 });
  });

  it('refuses a device holding another filesystem and never mounts it', async () => {
    const w = await started();
    await w.service.create('v', {});
    w.host.formatted.set(w.backend.deviceOf('v')!, 'xfs');
    await expect(w.service.publish('v', A)).rejects.toMatchObject({ code: 'UNSAFE_DEVICE' });
    expect(w.fs.faults.calls('mkfs')).toBe(0);
    expect(w.host.mounts.size).toBe(0);
    expect(w.backend.isAttached('v')).toBe(false);
  });
});

describe('volume service: Create, Remove and retained volumes', () => {
  it('a refused Create (other options) leaves a retained volume retained; a bare Create adopts it', async () => {
    const w = await started();
    await w.service.create('v', { size: '64MiB' });
    await w.service.remove('v');
    expect(w.backend.stateOf('v')).toBe('retained');
    expect(w.service.describe('v')).toBeUndefined();

    await expect(w.service.create('v', { size: '128MiB' })).rejects.toThrow(/already exists with other options: size \(asked 128MiB, volume has 64MiB\)/);
    expect(w.backend.stateOf('v')).toBe('retained');
    expect(w.service.list()).toEqual([]);

    await w.service.create('v', {});
    expect(w.backend.stateOf('v')).toBe('live');
    expect(w.service.list().map((v) => v.name)).toEqual(['v']);
  });

  it('a Create that finishes after its deadline is undone: the backend holds nothing', async () => {
    const w = await started({ deadlines: { create: 20 } });
    w.backend.faults.before('create', () => new Promise((r) => setTimeout(r, 50)));
    await expect(w.service.create('v', {})).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(w.backend.stateOf('v')).toBeUndefined();
    expect(w.service.describe('v')).toBeUndefined();
  });

  it('Remove is refused while a consumer holds the volume, and then removes it', async () => {
    const w = await started();
    await w.service.create('v', { onRemove: 'delete' });
    await w.service.publish('v', A);
    await expect(w.service.remove('v')).rejects.toThrow(/in use by 1 container mount/);
    expect(w.host.mounts.size).toBe(1);
    await w.service.unpublish('v', A);
    await w.service.remove('v');
    expect(w.backend.stateOf('v')).toBeUndefined();
    expect(w.host.mountpoints.size).toBe(0);
  });

  it('an invalid Create has no side effect', async () => {
    const w = await started({
      validate: (name, o) => {
        if (o.sizeBytes < 2 ** 20) throw new BerthError('INVALID_ARGUMENT', `volume ${name}: too small`);
      },
    });
    await expect(w.service.create('v', { size: '1KiB' })).rejects.toThrow(/too small/);
    await expect(w.service.create('v', { nope: '1' })).rejects.toThrow(/unknown option\(s\) nope/);
    await expect(w.service.create('-v', {})).rejects.toThrow(/invalid volume name/);
    expect(w.backend.faults.calls('create')).toBe(0);
    expect(w.service.list()).toEqual([]);
  });
});

describe('volume service: start after a crash', () => {
  it('a lost state file: a volume found mounted keeps unknown references; without an engine the first Unmount unmounts it', async () => {
    const w = await started();
    await w.service.create('v', {});
    await w.service.publish('v', A);
    writeFileSync(join(w.stateDir, 'state.json'), '{"version":1,"volumes":[]}');
    await w.restart();
    expect(readdirSync(w.stateDir).some((f) => f.startsWith('state.json.corrupt-'))).toBe(true);
    expect(viewOf('v')).toMatchObject({ mounted: true, consumers: 0 });
    expect(w.host.mounts.size).toBe(1);

    await w.service.unpublish('v', A);
    expect(viewOf('v')).toMatchObject({ mounted: false });
    expect(w.host.mounts.size).toBe(0);
  });

  it('an intact state file and a mount with no record: an interrupted Mount, unmounted at start', async () => {
    const w = await started();
    await w.service.create('v', {});
    await w.service.publish('v', A);
    await w.service.unpublish('v', A);
    w.host.present.add(w.backend.deviceOf('v')!);
    w.host.mounts.set(w.service.mountpointOf('v'), w.backend.deviceOf('v')!);
    await w.restart();
    expect(viewOf('v')).toMatchObject({ mounted: false, consumers: 0 });
    expect(w.host.mounts.size).toBe(0);
    expect(w.backend.isAttached('v')).toBe(false); // recover detached what no mount uses
  });

  it('a recorded mount that mountinfo no longer shows is dropped with its references', async () => {
    const w = await started();
    await w.service.create('v', {});
    await w.service.publish('v', A);
    w.host.mounts.clear();
    await w.restart();
    expect(viewOf('v')).toMatchObject({ mounted: false, consumers: 0 });
    expect(w.savedMounts('v')).toEqual({});
  });
});

describe('volume service: references reconciled with the engine', () => {
  it('drops the references of a volume no container holds and unmounts it; keeps those of a volume one holds', async () => {
    const inUse = new Set<string>(['held']);
    const w = await started({ engine: { volumesInUse: async () => inUse } });
    await w.service.create('held', {});
    await w.service.create('gone', {});
    await w.service.publish('held', A);
    await w.service.publish('gone', B);
    await w.service.reconcileReferences('test');
    expect(viewOf('held')).toMatchObject({ mounted: true, consumers: 1 });
    expect(viewOf('gone')).toMatchObject({ mounted: false, consumers: 0 });
    expect(w.backend.isAttached('gone')).toBe(false);
  });

  it('Remove asks the engine first: a reference no container holds does not block it', async () => {
    const w = await started({ engine: { volumesInUse: async () => new Set() } });
    await w.service.create('v', {});
    await w.service.publish('v', A);
    await w.service.remove('v');
    expect(w.backend.stateOf('v')).toBe('retained');
    expect(w.host.mounts.size).toBe(0);
  });

  it('an engine that does not answer changes nothing', async () => {
    const w = await started({
      engine: {
        volumesInUse: async () => {
          throw new Error('connect ENOENT /var/run/docker.sock');
        },
      },
    });
    await w.service.create('v', {});
    await w.service.publish('v', A);
    await w.service.reconcileReferences('test');
    expect(viewOf('v')).toMatchObject({ mounted: true, consumers: 1 });
  });
});

describe('Docker front end over the service', () => {
  it("answers Get, Path and List in Docker's terms from the service's view, and the answer cache follows each change", async () => {
    const w = await started();
    await w.docker.create('v', {});
    expect(await w.docker.get('v')).toEqual({
      Name: 'v',
      Mountpoint: '',
      CreatedAt: new Date(0).toISOString(),
      Status: { backend: 'fake', size: '64MiB', fs: 'ext4', onRemove: 'retain', mounted: false, containerMounts: 0 },
    });
    const mp = await w.docker.mount('v', A);
    expect(JSON.parse(w.docker.answers.path('v')!.toString())).toEqual({ Mountpoint: mp, Err: '' });
    expect(JSON.parse(w.docker.answers.get('v')!.toString())).toMatchObject({ Volume: { Status: { mounted: true, containerMounts: 1, device: w.backend.deviceOf('v') } } });
    await w.docker.unmount('v', A);
    expect(await w.docker.path('v')).toBe('');
    expect(JSON.parse(w.docker.answers.list().toString())).toEqual({ Volumes: await w.docker.list(), Err: '' });
  });
});

describe('volume service: what the reconciler asks', () => {
  it('ensureMounted mounts with no reference; releaseIfUnused lets go of it, and refuses while a consumer holds it', async () => {
    const w = await started();
    await w.service.create('v', {});
    await w.service.ensureMounted('v');
    expect(viewOf('v')).toMatchObject({ mounted: true, consumers: 0 });
    await w.service.publish('v', A);
    expect(await w.service.releaseIfUnused('v', 'test')).toBe(false);
    expect(w.host.mounts.size).toBe(1);
    await w.service.unpublish('v', A);
    await w.service.ensureMounted('v');
    expect(await w.service.releaseIfUnused('v', 'test')).toBe(true);
    expect(viewOf('v')).toMatchObject({ mounted: false });
    expect(w.backend.isAttached('v')).toBe(false);
  });

  it('refresh takes in what the backend lists and drops unmounted volumes it no longer lists', async () => {
    const w = await started();
    await w.service.create('kept', {});
    await w.service.create('gone', {});
    await w.backend.remove({ ...(await w.backend.find('gone'))!, options: { sizeBytes: 1, fs: 'ext4', onRemove: 'delete' } });
    await w.backend.create('new', { sizeBytes: 2 ** 26, fs: 'ext4', onRemove: 'retain' });
    await w.service.refresh();
    expect(w.service.names().sort()).toEqual(['kept', 'new']);
    expect(JSON.parse(w.docker.answers.list().toString()).Volumes.map((v: { Name: string }) => v.Name).sort()).toEqual(['kept', 'new']);
  });

  it('after a lost state file, an Unmount keeps the volume mounted while the engine lists a container using it', async () => {
    const inUse = new Set(['v']);
    const w = await started({ engine: { volumesInUse: async () => inUse } });
    await w.service.create('v', {});
    await w.service.publish('v', A);
    writeFileSync(join(w.stateDir, 'state.json'), 'not json');
    await w.restart();
    await w.service.unpublish('v', B);
    expect(viewOf('v')).toMatchObject({ mounted: true });
    inUse.clear();
    await w.service.reconcileReferences('test');
    expect(viewOf('v')).toMatchObject({ mounted: false });
    expect(w.host.mounts.size).toBe(0);
  });
});
