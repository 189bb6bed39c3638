import { describe, expect, it } from 'vitest';
import { BACKEND_READY_WAIT_MS, DEADLINES, TOOL_LIMITS } from '../volume-plugin/budgets.js';
import { CONFIG_DEFAULTS, TIME_BUDGETS } from './config.js';

/** The time budgets (agent/config.ts TIME_BUDGETS, volume-plugin/budgets.ts): each inside the call it serves. */
describe('time budgets', () => {
  it("the waits of one Mount fit inside dockerd's Mount deadline, with time left to fail and undo", () => {
    expect(TIME_BUDGETS.moveWaitSeconds + TIME_BUDGETS.deviceWaitSeconds).toBeLessThan(DEADLINES.mount / 1000);
    expect(BACKEND_READY_WAIT_MS).toBeLessThan(DEADLINES.mount);
    expect(TIME_BUDGETS.shutdownGraceSeconds).toBeLessThanOrEqual(DEADLINES.other / 1000);
  });

  it('are the defaults of the settings and the tool limits, as they were', () => {
    expect(CONFIG_DEFAULTS).toMatchObject({
      BERTH_MOVE_WAIT_SECONDS: 60,
      BERTH_DEVICE_WAIT_SECONDS: 30,
      BERTH_CREDENTIALS_WAIT_SECONDS: 120,
      BERTH_SHUTDOWN_GRACE_SECONDS: 30,
      BERTH_UNMOUNT_GRACE_SECONDS: 10,
      BERTH_IDLE_DETACH_SECONDS: 600,
      BERTH_REFERENCE_CHECK_SECONDS: 60,
      BERTH_GROW_CHECK_SECONDS: 10,
      BERTH_RECONCILE_INTERVAL_SECONDS: 60,
      BERTH_CERT_POLL_SECONDS: 60,
    });
    expect(TOOL_LIMITS).toEqual({ probeMs: 30_000, mkfsMs: 300_000, fsckMs: 600_000, mountMs: 60_000, growMs: 600_000, chattrMs: 10_000, losetupMs: 30_000 });
  });
});
