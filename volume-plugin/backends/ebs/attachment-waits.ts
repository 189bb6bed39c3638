import type { Volume } from '@aws-sdk/client-ec2';
import { BerthError } from '../../../lib/errors.js';
import { attachmentOf } from './ec2-shapes.js';
import type { Ec2Timing } from './ec2-timing.js';
import { pause } from './pacer.js';

/**
 * Waits on attachments by polling EC2 (docs/design.md §6): until a volume is attached to this
 * instance at the device asked (or reported stuck), or until it has no attachment. Every poll is a
 * lookup by id, which the caller batches (one DescribeVolumes serves every waiter of a tick). Each
 * wait ends at its deadline or when the caller's signal aborts, whichever comes first.
 */
export class AttachmentWaits {
  constructor(
    private readonly timing: Ec2Timing,
    private readonly instanceId: string,
    /** One volume by id (batched), undefined when EC2 does not know it. */
    private readonly volume: (volumeId: string, signal?: AbortSignal) => Promise<Volume | undefined>,
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

  /** Waits until the volume is attached here at `device`, or reports it stuck. */
  async attached(volumeId: string, device: string, deadline: number, signal?: AbortSignal): Promise<'attached' | 'stuck'> {
    const started = Date.now();
    const backoff = { wait: 0 };
    for (;;) {
      await pause(Math.min(this.pollDelay(started, backoff), Math.max(0, deadline - Date.now())), signal);
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
