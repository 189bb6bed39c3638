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
