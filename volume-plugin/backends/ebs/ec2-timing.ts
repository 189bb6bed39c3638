import { DEADLINES } from '../../budgets.js';

/**
 * The EBS layer's time budgets, in one place (docs/design.md §6, "Time budgets"). Each wait of
 * this layer is bounded twice: by its own budget here, and by the caller's signal, which carries
 * the deadline of the call it serves (the core's DEADLINES, volume-plugin/budgets.ts: a Mount's is
 * dockerd's 120 s, docs/design.md §3).
 * Whichever ends first ends the wait; the budgets below are set so that, for a caller with a
 * deadline, the layer's own error (which says what EC2 reported) arrives before the caller's.
 */
export interface Ec2Timing {
  /** First poll after AttachVolume/DetachVolume: EBS attachments usually complete in 1–4 s. */
  firstPollMs: number;
  /** Each later poll waits this much longer than the one before (creation; attachment waits once past fastPollForMs). */
  pollFactor: number;
  maxPollMs: number;
  /**
   * Attachment waits past their first poll poll on one tick shared by every
   * waiter (aligned to the clock), so however many volumes are attaching, each
   * tick costs one batched DescribeVolumes (per 199 volumes).
   */
  pollTickMs: number;
  /** How long after its first poll a wait stays on the shared tick before backing off by pollFactor. */
  fastPollForMs: number;
  /** EC2 occasionally wedges an attachment in 'attaching'; after this long it is detached and tried again. */
  stuckAttachingMs: number;
  /**
   * Bound on one attach, retries included. It serves a Mount (or the reconciler's mount, which has
   * the same deadline): below the Mount's 120 s, so the attach fails with what EC2 says while the
   * Mount still has time to answer, and a caller's earlier deadline (its signal) cuts it sooner.
   */
  attachTimeoutMs: number;
  /** Bound on one detach (the idle detach has no caller; Remove's deadline, 60 s, cuts it sooner). */
  detachTimeoutMs: number;
  /** Bound on a new volume leaving 'creating' (from a snapshot this can take minutes; a Create's deadline, 120 s, cuts it sooner). */
  createTimeoutMs: number;
  /** Lookups by id issued within this window share one DescribeVolumes call. */
  batchWindowMs: number;
  /**
   * A CreateVolume answer naming a volume DescribeVolumes still does not know this long after
   * its CreateTime is a replay of a spent ClientToken (the volume was deleted), not a new volume.
   */
  unknownAfterCreateMs: number;
  /** How long what DescribeInstances said of an instance is reused (one lookup per reconcile pass, not per volume). */
  instanceCacheMs: number;
  /**
   * AttachVolume/DetachVolume sent at once, then per second: EC2's bucket for them (50, refilling
   * 5/s). Sent faster, they are throttled, and the SDK's adaptive retry then slows every call of
   * the client (its rate limiter is one per client), so the attachment polls see attachments late.
   */
  mutationBurst: number;
  mutationsPerSecond: number;
  /**
   * Sharing the account (docs/design.md §6): after a throttled (or 5xx) mutation the gap between
   * this agent's mutations grows ×mutationBackoff, after an accepted one it shrinks ×mutationRecovery,
   * never beyond maxMutationGapMs (pacer.ts).
   */
  mutationBackoff: number;
  mutationRecovery: number;
  maxMutationGapMs: number;
  /** Mutations in flight at first, doubling with each accepted one up to mutationBurst (slow start, pacer.ts). */
  mutationInitialWindow: number;
  /**
   * A read or tag call EC2 refuses (RequestLimitExceeded, or a server fault) is tried again after
   * readRetryFirstMs, doubling to readRetryMaxMs, one call of the agent at a time while EC2 refuses
   * (RetryGate, pacer.ts): the SDK's own retries of these refusals are off (sdk-ec2.ts).
   */
  readRetryFirstMs: number;
  readRetryMaxMs: number;
  /**
   * While an attachment is under way, how often this host looks for the volume's NVMe namespace
   * (its serial is the volume id): a local sysfs read, no EC2 call. Seeing it is seeing the
   * attachment complete; EC2 is asked only as the safety net below.
   */
  hostPollMs: number;
  /**
   * With the host watching, the first DescribeVolumes of an attachment wait comes this long
   * after AttachVolume (then backing off by pollFactor): it catches what the host cannot see
   * (an attachment that failed, or went to another instance), not the normal case.
   */
  safetyNetFirstMs: number;
}

export const DEFAULT_EC2_TIMING: Ec2Timing = {
  firstPollMs: 1_000,
  pollFactor: 1.8,
  maxPollMs: 10_000,
  // 4 DescribeVolumes/s per host while attachments are under way: a fifth of the account's refill (20/s).
  pollTickMs: 250,
  fastPollForMs: 20_000,
  stuckAttachingMs: 90_000,
  // The Mount's deadline less 20 s: room for the device to appear, fsck and mount after the attach.
  attachTimeoutMs: DEADLINES.mount - 20_000,
  detachTimeoutMs: 120_000,
  createTimeoutMs: 300_000,
  batchWindowMs: 20,
  unknownAfterCreateMs: 60_000,
  instanceCacheMs: 10_000,
  // One token under EC2's 50: a call that reaches EC2 sooner than an earlier one (the first call
  // of a client is the slowest) would otherwise find the bucket a fraction short.
  mutationBurst: 49,
  mutationsPerSecond: 5,
  // ×2 per throttle (once per round), ×0.5 per accepted call, at most 10 s apart: chosen on bench/fleet.ts
  // (docs/operations.md, "A fleet sharing one account", tried and dropped); a host never waits longer than
  // 10 s for a budget that came back.
  mutationBackoff: 2,
  mutationRecovery: 0.5,
  maxMutationGapMs: 10_000,
  mutationInitialWindow: 2,
  readRetryFirstMs: 1_000,
  // As the mutations' longest gap, and for the same reason: no agent sleeps longer through a budget that came back.
  readRetryMaxMs: 10_000,
  hostPollMs: 100,
  safetyNetFirstMs: 10_000,
};

