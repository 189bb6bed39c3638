import { BerthError } from '../../../lib/errors.js';
import type { _InstanceType } from '@aws-sdk/client-ec2';
import { attachmentLimitOf, ebsSlotsLeft, sayLimit, slotsUsed, type AttachmentLimit, type SlotUse } from '../../../lib/attachment-limits.js';
import type { Ec2Port } from './ec2-port.js';

/** Where the ledger reads what takes slots on this instance. */
export interface SlotSources {
  /** Volume ids attached (or attaching) to this instance, the root volume included (one DescribeVolumes). */
  attachedVolumeIds(signal?: AbortSignal): Promise<string[]>;
  /** Network interfaces attached now (IMDS network/interfaces/macs/). */
  networkInterfaces(): Promise<number>;
}

/** After a failed DescribeInstanceTypes, attaches go on unchecked (EC2 still decides) and berth asks again after this long. */
const RELEARN_AFTER_MS = 600_000;

/**
 * This instance's attachment slots (docs/design.md §6, "Attachment limits"): the instance type's
 * limit, the volumes attached here and the network interfaces, so an AttachVolume past the limit
 * is refused with the reason before EC2 answers AttachmentLimitExceeded. The limit is learnt at the
 * first attach (one DescribeInstanceTypes, with that caller's signal: the agent's start never waits
 * on EC2 for it); the attached volumes and interfaces are read then too, and kept by the facade (a
 * claim before AttachVolume, a release once a detach completed). A claim that finds no slot reads
 * both again before it refuses, so a volume or an interface detached behind berth's back never
 * costs a false refusal. When EC2 states no limit for the type (or cannot be asked), nothing is
 * refused here: EC2 alone decides, as before.
 */
export class AttachmentSlots {
  private readonly attached = new Set<string>();
  /** Claims whose AttachVolume EC2 may not show yet: a refresh keeps them. */
  private readonly claiming = new Set<string>();
  private interfaces = 1;
  private known: AttachmentLimit | undefined;
  private learnt: Promise<void> | undefined;
  private learntAt = 0;
  private loaded: Promise<void> | undefined;

  constructor(
    private readonly learn: (signal: AbortSignal) => Promise<AttachmentLimit | undefined>,
    private readonly sources: SlotSources,
    private readonly onLearnFailed?: (err: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** The type's limit, once learnt (undefined before, or when EC2 states none). */
  get limit(): AttachmentLimit | undefined {
    return this.known;
  }

  /** What uses slots now (as last read and kept). */
  use(): SlotUse {
    return { ebs: this.attached.size, networkInterfaces: this.interfaces };
  }

  used(): number {
    return this.known ? slotsUsed(this.known, this.use()) : this.attached.size;
  }

  /** Reads the attached volumes and the interfaces again. */
  async refresh(signal?: AbortSignal): Promise<void> {
    const [ids, interfaces] = await Promise.all([this.sources.attachedVolumeIds(signal), this.sources.networkInterfaces()]);
    this.attached.clear();
    for (const id of [...ids, ...this.claiming]) this.attached.add(id);
    this.interfaces = interfaces;
  }

  private learnLimit(signal: AbortSignal): Promise<void> {
    if (this.learnt && this.known === undefined && this.learntAt > 0 && this.now() - this.learntAt >= RELEARN_AFTER_MS) this.learnt = undefined;
    this.learnt ??= this.learn(signal).then(
      (limit) => {
        this.known = limit;
      },
      (err: unknown) => {
        // The caller's own abort is not EC2's answer: ask again at the next attach.
        if (signal.aborted) this.learnt = undefined;
        else {
          this.learntAt = this.now();
          this.onLearnFailed?.(err);
        }
      },
    );
    return this.learnt;
  }

  private load(signal?: AbortSignal): Promise<void> {
    this.loaded ??= this.refresh(signal).catch((err: unknown) => {
      this.loaded = undefined;
      throw err;
    });
    return this.loaded;
  }

  /**
   * Takes a slot for this volume (nothing when it holds one already), or refuses with
   * LIMIT_EXCEEDED and a sentence naming the limit and what uses it. Synchronous once loaded, so
   * concurrent claims cannot both take the last slot.
   */
  async claim(volumeId: string, signal?: AbortSignal): Promise<void> {
    await Promise.all([this.learnLimit(signal ?? new AbortController().signal), this.load(signal)]);
    const limit = this.known;
    if (!this.attached.has(volumeId) && limit && ebsSlotsLeft(limit, this.use()) < 1) {
      await this.refresh(signal);
      if (!this.attached.has(volumeId) && ebsSlotsLeft(limit, this.use()) < 1) {
        throw new BerthError(
          'LIMIT_EXCEEDED',
          `cannot attach ${volumeId}: no attachment slot left on this instance (${sayLimit(limit, this.use())}); detach a volume this host does not need, or run the node on an instance type with more EBS slots`,
        );
      }
    }
    if (this.attached.has(volumeId)) return;
    this.attached.add(volumeId);
    this.claiming.add(volumeId);
  }

  /** The claimed volume is attached (EC2 shows it from now on). */
  confirm(volumeId: string): void {
    this.claiming.delete(volumeId);
  }

  /** The volume no longer holds a slot here (its attach failed, or its detach completed). */
  release(volumeId: string): void {
    this.attached.delete(volumeId);
    this.claiming.delete(volumeId);
  }
}

/**
 * The instance type's attachment limit, from DescribeInstanceTypes (one call at start); undefined
 * when EC2 states none for the type (then EC2 alone decides, as before).
 */
export async function learnAttachmentLimit(port: Ec2Port, instanceType: string, signal: AbortSignal): Promise<AttachmentLimit | undefined> {
  const answer = await port.describeInstanceTypes({ InstanceTypes: [instanceType as _InstanceType] }, signal);
  const info = answer.InstanceTypes?.find((t) => t.InstanceType === instanceType);
  return info ? attachmentLimitOf(info) : undefined;
}
