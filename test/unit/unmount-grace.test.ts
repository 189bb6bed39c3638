import { afterEach, describe, expect, it } from 'vitest';
import { fakeWorld, type FakeWorld } from '../fakes/world.js';

/**
 * The unmount grace (volume-plugin/unmount-grace.ts) as the service consults
 * it, over the in-memory fakes: the last reference starts it, the one mount
 * path and the one unmount path end it, a restart finishes one left behind.
 */
const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const GRACE_MS = 60_000;

let world: FakeWorld;
afterEach(async () => {
  await world?.service.flushUnmountGrace();
  world?.cleanup();
});

async function inGrace(graceMs = GRACE_MS) {
  world = fakeWorld({ unmountGraceMs: graceMs });
  await world.start();
  await world.service.create('v', {});
  await world.service.publish('v', A);
  await world.service.unpublish('v', A);
  return world;
}

describe('unmount grace, as the service consults it', () => {
  it('the last Unmount syncs and keeps the volume mounted; a Mount in the grace mounts nothing again', async () => {
    const w = await inGrace();
    expect(w.fs.faults.calls('sync')).toBe(1);
    expect(w.service.describe('v')).toMatchObject({ mounted: true, consumers: 0, unmountPending: true });
    await w.service.publish('v', B);
    expect(w.fs.faults.calls('mount')).toBe(1);
    expect(w.service.describe('v')).toMatchObject({ mounted: true, consumers: 1 });
    expect(w.service.describe('v')?.unmountPending).toBeUndefined();
  });

  it('Remove and host release in the grace unmount at once', async () => {
    const w = await inGrace();
    await w.service.remove('v');
    expect(w.host.mounts.size).toBe(0);
    expect(w.backend.stateOf('v')).toBe('retained');
    w.cleanup();

    const r = await inGrace();
    expect(await r.service.releaseIfUnused('v', 'test')).toBe(true);
    expect(r.host.mounts.size).toBe(0);
    expect(r.backend.isAttached('v')).toBe(false);
  });

  it('ends on its own: unmounted and released when the grace is over', async () => {
    const w = await inGrace(20);
    await new Promise((r) => setTimeout(r, 100));
    expect(w.host.mounts.size).toBe(0);
    expect(w.backend.isAttached('v')).toBe(false);
    expect(w.service.describe('v')).toMatchObject({ mounted: false });
  });

  it('agent shutdown unmounts every volume in its grace; a restart after a crash in the grace unmounts it', async () => {
    const w = await inGrace();
    await w.service.flushUnmountGrace();
    expect(w.host.mounts.size).toBe(0);
    w.cleanup();

    const c = await inGrace();
    await c.restart(); // the first service never finished its grace
    expect(c.host.mounts.size).toBe(0);
    expect(c.service.describe('v')).toMatchObject({ mounted: false });
  });
});
