import type { Volume } from '@aws-sdk/client-ec2';
import { BerthError } from '../../../lib/errors.js';
import { attachmentOf } from './ec2-shapes.js';
import type { Ec2Timing } from './ec2-timing.js';
import type { DeviceResolver } from '../../devices/nvme.js';
import { pause } from './pacer.js';

/** Whether the host shows a volume's NVMe namespace (serial = volume id) now; on Xen never (a device there does not say which volume it is). */
export function attachedHereOf(devices: Pick<DeviceResolver, 'find'>): (volumeId: string) => Promise<boolean> {
  return async (volumeId) => (await devices.find(volumeId).catch(() => undefined))?.how === 'nvme-serial';
}

/**
 * Waits on attachments (docs/design.md §6): until a volume is attached to this instance at the
 * device asked (or reported stuck), or until it has no attachment. Where the host can see an
 * attachment complete (`attachedHere`: the NVMe namespace whose serial is the volume id), it
 * looks there every hostPollMs, a local read, and asks EC2 only as a safety net (first after
 * safetyNetFirstMs): a hundred hosts waiting at once then cost EC2's shared describe budget
 * almost nothing. Otherwise (Xen, tests without a host view) it polls EC2. Every EC2 poll is a
 * lookup by id, which the caller batches (one DescribeVolumes serves every waiter of a tick). Each
 * wait ends at its deadline or when the caller's signal aborts, whichever comes first.
 */
export class AttachmentWaits {
  constructor(
    private readonly timing: Ec2Timing,
    private readonly instanceId: string,
    /** One volume by id (batched), undefined when EC2 does not know it. */
    private readonly volume: (volumeId: string, signal?: AbortSignal) => Promise<Volume | undefined>,
    /** Whether this host shows the volume's own device now (NVMe serial); undefined where it cannot tell. */
    private readonly attachedHere?: (volumeId: string) => Promise<boolean>,
  ) {}

  /**
   * How long a wait that started at `startedAt` sleeps before its next poll:
   * until firstPollMs has passed (EBS attachments take 1–4 s), then to the
   * next shared tick for fastPollForMs, then backing off by pollFactor from
   * the tick up to maxPollMs. The ×1.8 schedule alone left gaps of seconds
   * between an attachment completing and berth seeing it, although one
   * batched DescribeVolumes serves every waiter (bench/ebs-boot-reconcile.ts).
   */
  pollDelay(startedAt: number, backoff: { wait: number }): number {
    const { firstPollMs, fastPollForMs, pollFactor, maxPollMs } = this.timing;
    const tick = Math.min(this.timing.pollTickMs, maxPollMs);
    const now = Date.now();
    const since = now - startedAt;
    if (since < firstPollMs) return firstPollMs - since;
    if (since < firstPollMs + fastPollForMs) return tick - (now % tick);
    backoff.wait = Math.min(Math.max(backoff.wait, tick) * pollFactor, maxPollMs);
    return backoff.wait;
  }

  /** Waits until the volume is attached here at `device` (or shows on this host), or reports it stuck. */
  async attached(volumeId: string, device: string, deadline: number, signal?: AbortSignal): Promise<'attached' | 'stuck'> {
    const started = Date.now();
    const backoff = { wait: 0 };
    const here = this.attachedHere;
    let nextAsk = started + this.timing.safetyNetFirstMs;
    for (;;) {
      if (here) {
        // The host's view every hostPollMs; EC2 only when the safety net is due.
        for (;;) {
          if (await here(volumeId)) return 'attached';
          const now = Date.now();
          if (now >= nextAsk || now >= deadline) break;
          await pause(Math.min(this.timing.hostPollMs, nextAsk - now, deadline - now), signal);
        }
        backoff.wait = Math.min(Math.max(backoff.wait, this.timing.safetyNetFirstMs) * this.timing.pollFactor, this.timing.maxPollMs);
        nextAsk = Date.now() + backoff.wait;
      } else {
        await pause(Math.min(this.pollDelay(started, backoff), Math.max(0, deadline - Date.now())), signal);
      }
      const v = await this.volume(volumeId, signal);
      signal?.throwIfAborted();
      if (!v) throw new BerthError('NOT_FOUND', `${volumeId} disappeared while attaching`);
      const a = attachmentOf(v);
      if (a && a.instanceId === this.instanceId && a.device === device && a.state === 'attached') return 'attached';
      if (a && a.instanceId !== this.instanceId) {
        throw new BerthError('CONFLICT', `${volumeId} got attached to ${a.instanceId} while berth was attaching it to ${this.instanceId}`);
      }
      if (!a && v.State === 'available') throw new BerthError('UNAVAILABLE', `EC2 dropped the attachment of ${volumeId} at ${device} before it completed`);
      if (Date.now() - started >= this.timing.stuckAttachingMs) return 'stuck';
      if (Date.now() >= deadline) {
        throw new BerthError('TIMEOUT', `${volumeId} not attached to ${this.instanceId} within ${this.timing.attachTimeoutMs / 1000} s (EC2 says ${a?.state ?? v.State})`);
      }
    }
  }

  /** Waits until the volume has no attachment (e.g. another host's agent released it); an aborted signal stops the wait. */
  async available(volumeId: string, deadline: number, signal?: AbortSignal): Promise<Volume> {
    const started = Date.now();
    const backoff = { wait: 0 };
    for (;;) {
      signal?.throwIfAborted();
      const v = await this.volume(volumeId, signal);
      if (!v) throw new BerthError('NOT_FOUND', `${volumeId} no longer exists`);
      if (v.State === 'available' && !attachmentOf(v)) return v;
      if (Date.now() >= deadline) {
        const a = attachmentOf(v);
        throw new BerthError('TIMEOUT', `${volumeId} still ${a ? `${a.state} to ${a.instanceId}` : v.State} when the wait ran out`);
      }
      await pause(Math.min(this.pollDelay(started, backoff), Math.max(0, deadline - Date.now())), signal);
    }
  }
}
