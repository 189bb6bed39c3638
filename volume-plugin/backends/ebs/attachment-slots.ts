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

/**
 * This instance's attachment slots (docs/design.md §6, "Attachment limits"): the instance type's
 * limit, the volumes attached here and the network interfaces, so an AttachVolume past the limit
 * is refused with the reason before EC2 answers AttachmentLimitExceeded. Read from EC2 and IMDS
 * once, then kept by the facade (a claim before AttachVolume, a release once a detach completed);
 * a claim that finds no slot reads both again before it refuses, so a volume or an interface
 * detached behind berth's back never costs a false refusal.
 */
export class AttachmentSlots {
  private readonly attached = new Set<string>();
  /** Claims whose AttachVolume EC2 may not show yet: a refresh keeps them. */
  private readonly claiming = new Set<string>();
  private interfaces = 1;
  private loaded: Promise<void> | undefined;

  constructor(
    readonly limit: AttachmentLimit,
    private readonly sources: SlotSources,
  ) {}

  /** What uses slots now (as last read and kept). */
  use(): SlotUse {
    return { ebs: this.attached.size, networkInterfaces: this.interfaces };
  }

  used(): number {
    return slotsUsed(this.limit, this.use());
  }

  /** Reads the attached volumes and the interfaces again. */
  async refresh(signal?: AbortSignal): Promise<void> {
    const [ids, interfaces] = await Promise.all([this.sources.attachedVolumeIds(signal), this.sources.networkInterfaces()]);
    this.attached.clear();
    for (const id of [...ids, ...this.claiming]) this.attached.add(id);
    this.interfaces = interfaces;
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
    await this.load(signal);
    if (this.attached.has(volumeId)) return;
    if (ebsSlotsLeft(this.limit, this.use()) < 1) {
      await this.refresh(signal);
      if (this.attached.has(volumeId)) return;
      if (ebsSlotsLeft(this.limit, this.use()) < 1) {
        throw new BerthError(
          'LIMIT_EXCEEDED',
          `cannot attach ${volumeId}: no attachment slot left on this instance (${sayLimit(this.limit, this.use())}); detach a volume this host does not need, or run the node on an instance type with more EBS slots`,
        );
      }
    }
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
