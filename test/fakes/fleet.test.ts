import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { step } from '../helpers/step.js';
import { runFleet, warmUpSdk, type FleetResult } from './fleet.js';
import { VirtualClock } from './virtual-clock.js';

/**
 * The fleet simulation in small (bench/fleet.ts runs it at 1 000 hosts): hosts running berth's
 * real EBS backend, reconciler and volume service share one account's EC2 buckets on a virtual
 * clock. What an SRE would see after an AZ's hosts are replaced at once: every host ready, none
 * stuck, no Mount failed for throttling, the account's describe budget left alone.
 */
let clock: VirtualClock | undefined;

beforeAll(async () => {
  await warmUpSdk();
});

afterEach(() => {
  clock?.uninstall();
  clock = undefined;
});

const describes = (r: FleetResult) => r.calls.get('DescribeVolumes')?.calls ?? 0;
const calls = (r: FleetResult) => [...r.calls.values()].reduce((a, c) => a + c.calls, 0);
const throttled = (r: FleetResult) => [...r.calls.values()].reduce((a, c) => a + c.throttled, 0);

describe('fleet simulation: hosts sharing one account', () => {
  it('12 hosts × 8 volumes replaced at once: every host ready near the floor the buckets allow, no Mount failed for throttling', async () => {
    clock = VirtualClock.install();
    const r = await step('replace 12 hosts × 8 volumes', () => runFleet({ hosts: 12, volumesPerHost: 8, agent: 'berth', scenario: 'replace', clock: clock!, steadyMs: 180_000 }));
    expect(r.stuck).toBe(0);
    expect(r.mountsFailedThrottled).toBe(0);
    expect(r.allReadyMs).toBeDefined();
    expect(r.allReadyMs!).toBeLessThan(1.5 * r.floor.ms);
    expect(r.calls.get('AttachVolume')?.answered).toBe(96);
    // 12 hosts fit in the bucket's burst and refill: under 5 % of the calls refused (every try counted, the SDK's included).
    expect(throttled(r) / calls(r)).toBeLessThan(0.05);
    // Attachments are seen from each host's NVMe namespaces: a few describes per host, not 4 a second while attaching.
    expect(describes(r)).toBeLessThan(12 * 20);
    // Steady state: the reconcile pass's one DescribeVolumes a minute.
    expect(r.steadyDescribesPerHostMinute).toBeLessThanOrEqual(2);
  });

  it('an EC2 brownout (every call throttled for 2 minutes) in the middle, each agent pacing itself (no schedule): no host gives up, and all are ready soon after it ends', async () => {
    clock = VirtualClock.install();
    const r = await step('replace with a brownout', () =>
      runFleet({ hosts: 12, volumesPerHost: 8, agent: 'berth', scenario: 'brownout', clock: clock!, schedule: false, brownout: { atMs: 25_000, forMs: 120_000, kind: 'throttle' } }),
    );
    expect(r.stuck).toBe(0);
    expect(r.mountsFailedThrottled).toBe(0);
    expect(r.brownoutEndMs).toBe(145_000);
    // Ready within a short while of the budget coming back (hosts wait at most 10 s between tries).
    expect(r.allReadyMs!).toBeLessThan(r.floor.ms + 30_000);
    // Reads do not multiply while EC2 refuses everything: each agent tries one at a time, the pause
    // doubling to 10 s (about 15 tries an agent in the 2 minutes), not each caller's read with the
    // SDK's 8 attempts under it (296 refused before).
    expect(r.calls.get('DescribeVolumes')!.throttled).toBeLessThan(12 * 20);
  });

  it("the same brownout on the account's shared schedule: the whole fleet probes at a tenth of each bucket's refill, and all are ready soon after it ends", async () => {
    clock = VirtualClock.install();
    const r = await step('replace with a brownout, shared schedule', () =>
      runFleet({ hosts: 12, volumesPerHost: 8, agent: 'berth', scenario: 'brownout', clock: clock!, brownout: { atMs: 25_000, forMs: 120_000, kind: 'throttle' } }),
    );
    expect(r.stuck).toBe(0);
    expect(r.mountsFailedThrottled).toBe(0);
    // The rate doubles every 10 s from a tenth of the refill: back at 5/s 33 s after the brownout.
    expect(r.allReadyMs!).toBeLessThan(r.floor.ms + 30_000);
    // Refusals at the fleet's floor rate (DescribeVolumes 2/s, CreateTags 1/s for 120 s), however many
    // hosts and callers wait: not each refused call's next try as soon as the store answers.
    expect(r.calls.get('DescribeVolumes')!.throttled).toBeLessThan(1.1 * 2 * 120);
    expect(r.calls.get('CreateTags')!.throttled).toBeLessThan(1.1 * 1 * 120);
    expect(r.schedule!.failed).toBe(0);
  });

  it("the schedule's store failing for 2 minutes mid-replacement: the agents pace themselves meanwhile, and every host is ready near the floor", async () => {
    clock = VirtualClock.install();
    const r = await step('replace with the store out', () =>
      runFleet({ hosts: 12, volumesPerHost: 8, agent: 'berth', scenario: 'replace', clock: clock!, scheduleOutage: { atMs: 25_000, forMs: 120_000 } }),
    );
    expect(r.stuck).toBe(0);
    expect(r.mountsFailedThrottled).toBe(0);
    expect(r.allReadyMs!).toBeLessThan(1.5 * r.floor.ms);
    expect(r.schedule!.failed).toBeGreaterThan(0);
    expect(r.calls.get('AttachVolume')?.answered).toBe(96);
  });

  it('a seeded run is repeatable: the same options give the same figures, host by host and call by call', async () => {
    // What makes bench/fleet.ts's figures comparable from one change to the next (docs/operations.md).
    const once = async () => {
      clock = VirtualClock.install();
      try {
        const r = await runFleet({ hosts: 10, volumesPerHost: 6, agent: 'berth', scenario: 'replace', clock, seed: 7 });
        return { allReadyMs: r.allReadyMs, hosts: r.hosts, mountsFailed: r.mountsFailed, calls: [...r.calls].sort(), otherCalls: [...r.otherCalls].sort() };
      } finally {
        clock.uninstall();
        clock = undefined;
      }
    };
    const first = await step('first run', once);
    const second = await step('second run', once);
    expect(first.hosts.every((h) => h.readyMs !== undefined)).toBe(true);
    expect(second).toEqual(first);
  });
});
