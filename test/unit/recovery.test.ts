import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { recoverAtStart } from '../../volume-plugin/recovery.js';
import { dict, type PersistedState } from '../../volume-plugin/state-store.js';
import { FakeBackend } from '../fakes/backend.js';
import { FakeFilesystem } from '../fakes/filesystem.js';
import { FakeHost } from '../fakes/host.js';

/** Recovery at start (volume-plugin/recovery.ts) on its own, over the in-memory backend and filesystem. */
const mountpointOf = (name: string) => `/mnt/${name}`;
const options = { sizeBytes: 2 ** 20, fs: 'ext4' as const, onRemove: 'retain' as const };

async function setUp(names: string[]) {
  const host = new FakeHost();
  const backend = new FakeBackend(host);
  const fs = new FakeFilesystem(host);
  const records = await Promise.all(names.map((n) => backend.create(n, options)));
  const state: PersistedState = { version: 1, volumes: dict() };
  const mountHere = (name: string) => {
    const device = backend.deviceOf(name)!;
    host.present.add(device);
    host.mounts.set(mountpointOf(name), device);
    return device;
  };
  return { host, backend, fs, records, state, mountHere, deps: { backend, fs, mountpointOf, log: silentLogger } };
}

describe('recovery at start', () => {
  it("takes in the backend's volumes and drops recorded ones it no longer lists, unless mounted", async () => {
    const t = await setUp(['listed']);
    const gone = { ...t.records[0]!, name: 'gone', id: 'fake:gone' };
    t.state.volumes.gone = { record: gone, mounts: dict(), mounted: false };
    t.state.volumes.mountedGone = { record: { ...gone, name: 'mountedGone' }, mounts: dict([['c', 1]]), mounted: true };
    t.host.mounts.set(mountpointOf('mountedGone'), '/dev/elsewhere');
    await recoverAtStart(t.state, false, t.deps);
    expect(Object.keys(t.state.volumes).sort()).toEqual(['listed', 'mountedGone']);
    expect(t.state.volumes.mountedGone).toMatchObject({ mounted: true, mounts: { c: 1 } });
  });

  it('answers from the state file when the backend cannot list', async () => {
    const t = await setUp(['v']);
    t.state.volumes.v = { record: t.records[0]!, mounts: dict(), mounted: false };
    t.backend.faults.fail('list', new Error('backend not ready'));
    await recoverAtStart(t.state, false, t.deps);
    expect(Object.keys(t.state.volumes)).toEqual(['v']);
  });

  it('unmounts a volume left in its unmount grace by an agent that died, and clears the mark', async () => {
    const t = await setUp(['v']);
    const device = t.mountHere('v');
    t.state.volumes.v = { record: t.records[0]!, mounts: dict(), mounted: true, devicePath: device, unmountPending: true };
    await recoverAtStart(t.state, false, t.deps);
    expect(t.host.mounts.size).toBe(0);
    expect(t.state.volumes.v).toMatchObject({ mounted: false });
    expect(t.state.volumes.v!.unmountPending).toBeUndefined();
    expect(t.backend.isAttached('v')).toBe(false); // recover: no mounted volume holds the device
  });

  it('keeps a marked volume that a container still holds, mounted', async () => {
    const t = await setUp(['v']);
    const device = t.mountHere('v');
    t.state.volumes.v = { record: t.records[0]!, mounts: dict([['c', 1]]), mounted: true, devicePath: device, unmountPending: true };
    await recoverAtStart(t.state, false, t.deps);
    expect(t.host.mounts.get(mountpointOf('v'))).toBe(device);
    expect(t.state.volumes.v).toMatchObject({ mounted: true, mounts: { c: 1 } });
    expect(t.backend.isAttached('v')).toBe(true);
  });

  it('a mount with no record: unmounted when the state file was intact, kept with unknown references when it was lost', async () => {
    const intact = await setUp(['v']);
    intact.mountHere('v');
    await recoverAtStart(intact.state, false, intact.deps);
    expect(intact.host.mounts.size).toBe(0);
    expect(intact.state.volumes.v).toMatchObject({ mounted: false });

    const lost = await setUp(['v']);
    lost.mountHere('v');
    await recoverAtStart(lost.state, true, lost.deps);
    expect(lost.host.mounts.size).toBe(1);
    expect(lost.state.volumes.v).toMatchObject({ mounted: true, unknownRefs: true });
  });
});
