/**
 * The volume core's time budgets, in one place, each derived from the
 * deadline of the call it serves (docs/design.md §3, "Time budgets" in
 * docs/configuration.md).
 *
 * dockerd's plugin client gives up on Create and Mount after 2 minutes and on
 * every other call after 1 (moby volume/drivers/proxy.go). Work still running
 * after that is work dockerd will never see: it is stopped and undone. Every
 * wait inside a call is therefore a part of that call's deadline, never more.
 */
export const DEADLINES = { create: 120_000, mount: 120_000, other: 60_000 };

export type CallKind = keyof typeof DEADLINES;

/**
 * How long a call waits for a backend that is still starting (the EBS backend
 * reading the host's identity and credentials at boot, backends/deferred.ts):
 * the Mount's deadline less 20 s, so that the Mount still has time to fail
 * with the reason (and undo) before dockerd gives up on it.
 */
export const BACKEND_READY_WAIT_MS = DEADLINES.mount - 20_000;

/**
 * After an Unmount of a reference unknown since a rebuild while the engine
 * still lists a container using the volume (it may be that very container,
 * stopping), the references are checked again after this long.
 */
export const UNKNOWN_REFERENCE_RECHECK_MS = 2_000;

/**
 * Time limits of the tools the core and the loop backend run (lib/exec.ts
 * kills a tool at its limit). They are not shares of a call's deadline: a
 * tool given the call's signal stops with it (mkfs, mount, losetup --find),
 * so its limit only bounds a tool that hangs outside any call; fsck and grow
 * are not given the signal (a repair killed half way is worse than a late
 * answer) and a Mount that overran its deadline meanwhile is undone after
 * them. Generous for slow first-touch reads of a fresh EBS volume.
 */
export const TOOL_LIMITS = {
  /** blkid, blockdev: half a call that is not Create or Mount. */
  probeMs: DEADLINES.other / 2,
  mkfsMs: 300_000,
  fsckMs: 600_000,
  /** mount, umount, sync: one call that is not Create or Mount. */
  mountMs: DEADLINES.other,
  growMs: 600_000,
  chattrMs: 10_000,
  /** losetup (loop backend): half a call that is not Create or Mount. */
  losetupMs: DEADLINES.other / 2,
};
