import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { fakeWorld, type FakeWorld } from '../fakes/world.js';

/** The volume service's gauges (volume-plugin/service-metrics.ts), read from its local view at scrape time. */
const A = 'a'.repeat(64);
const GRACE_MS = 60_000;

let world: FakeWorld;
afterEach(async () => {
  await world?.service.flushUnmountGrace();
  world?.cleanup();
});

describe('volume gauges', () => {
  it('count what is mounted (a volume in its unmount grace included) and what is known', async () => {
    const registry = new Registry();
    world = fakeWorld({ unmountGraceMs: GRACE_MS, registry });
    await world.start();
    await world.service.create('v', {});
    await world.service.create('w', {});
    await world.service.publish('v', A);
    await world.service.unpublish('v', A);
    const text = await registry.metrics();
    expect(text).toMatch(/^berth_volumes_mounted 1$/m);
    expect(text).toMatch(/^berth_volumes_known 2$/m);
  });
});
