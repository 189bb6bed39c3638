import type { InstanceTypeInfo } from '@aws-sdk/client-ec2';

/**
 * How many EBS volumes an instance type can attach (docs/design.md §6, "Attachment limits"): the
 * one place both the agent (before AttachVolume) and the cluster API (before placing nodes on a
 * host) read EC2's rule from.
 *
 * EC2 User Guide, "Amazon EBS volume limits for Amazon EC2 instances" (volume_limits.html, read
 * December 2026): on Nitro instances the limit is either *dedicated* (M7a, M7i, C7i, R7i, R8g, …:
 * EBS volumes only, up to the limit, whatever network interfaces and NVMe instance store volumes
 * are attached) or *shared* (all other Nitro types, most with 28 slots: EBS volumes, network
 * interfaces and NVMe instance store volumes together). The root volume is an EBS volume and takes a
 * slot either way. DescribeInstanceTypes says which (EbsInfo.MaximumEbsAttachments,
 * EbsInfo.AttachmentLimitType `shared` | `dedicated`, both in botocore 1.43's ec2 model) and how many
 * NVMe instance store disks the type has (InstanceStorageInfo.Disks[].Count; on Nitro they are
 * always attached). A type that does not say (Xen, older answers) has no known limit: EC2 decides.
 */
export interface AttachmentLimit {
  readonly instanceType: string;
  readonly kind: 'shared' | 'dedicated';
  /** EbsInfo.MaximumEbsAttachments: every slot (shared) or every EBS slot (dedicated). */
  readonly maximum: number;
  /** NVMe instance store volumes of the type: they take shared slots. */
  readonly instanceStore: number;
}

/** What takes slots on one instance now. */
export interface SlotUse {
  /** EBS volumes attached or attaching, the root volume included. */
  readonly ebs: number;
  /** Network interfaces attached (IMDS network/interfaces/macs/). */
  readonly networkInterfaces: number;
}

/** The limit DescribeInstanceTypes gives for one type; undefined when EC2 does not state one. */
export function attachmentLimitOf(info: InstanceTypeInfo): AttachmentLimit | undefined {
  const maximum = info.EbsInfo?.MaximumEbsAttachments;
  if (maximum === undefined || !Number.isSafeInteger(maximum) || maximum < 1) return undefined;
  const nvmeStore = info.InstanceStorageInfo && info.InstanceStorageInfo.NvmeSupport !== 'unsupported';
  const instanceStore = nvmeStore ? (info.InstanceStorageInfo?.Disks ?? []).reduce((n, d) => n + (d.Count ?? 0), 0) : 0;
  return {
    instanceType: info.InstanceType ?? 'unknown',
    // EC2 added AttachmentLimitType for the dedicated families; a type without it shares its slots.
    kind: info.EbsInfo?.AttachmentLimitType === 'dedicated' ? 'dedicated' : 'shared',
    maximum,
    instanceStore,
  };
}

/** Slots in use: EBS volumes only (dedicated), or EBS volumes, interfaces and instance store (shared). */
export function slotsUsed(limit: AttachmentLimit, use: SlotUse): number {
  return limit.kind === 'dedicated' ? use.ebs : use.ebs + use.networkInterfaces + limit.instanceStore;
}

/** How many more EBS volumes fit (never below 0). */
export function ebsSlotsLeft(limit: AttachmentLimit, use: SlotUse): number {
  return Math.max(0, limit.maximum - slotsUsed(limit, use));
}

/** The limit and what uses it, as a sentence (for refusals, /readyz and the readiness tags). */
export function sayLimit(limit: AttachmentLimit, use: SlotUse): string {
  if (limit.kind === 'dedicated') {
    return `${limit.instanceType} attaches at most ${limit.maximum} EBS volumes (a dedicated limit); ${use.ebs} are attached, the root volume included`;
  }
  return (
    `${limit.instanceType} has ${limit.maximum} attachment slots shared by EBS volumes, network interfaces and NVMe instance store; ` +
    `${use.ebs} EBS volume(s) (the root volume included), ${use.networkInterfaces} network interface(s) and ${limit.instanceStore} instance store volume(s) use ${slotsUsed(limit, use)}`
  );
}
