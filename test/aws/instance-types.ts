import type { InstanceTypeInfo } from '@aws-sdk/client-ec2';

/**
 * A few real instance types as DescribeInstanceTypes answers for them, the members berth reads
 * only (EbsInfo.MaximumEbsAttachments and AttachmentLimitType, InstanceStorageInfo, NetworkInfo
 * .MaximumNetworkInterfaces). Values from the EC2 User Guide, "Amazon EBS volume limits for Amazon
 * EC2 instances" (volume_limits.html, read December 2026): most Nitro types share 28 slots between
 * EBS volumes, network interfaces and NVMe instance store; M7i/C7i/R7i and other listed families
 * have a dedicated EBS limit by size (medium … 12xlarge 32, 16xlarge 48, 24xlarge 64, 32xlarge 88,
 * 48xlarge 128). Instance store disk counts and interface maxima from the EC2 Instance Types guide.
 */
export const INSTANCE_TYPES: Readonly<Record<string, InstanceTypeInfo>> = {
  't3.medium': shared('t3.medium', 3),
  't3.large': shared('t3.large', 3),
  'm5.large': shared('m5.large', 3),
  'm6i.large': shared('m6i.large', 3),
  // 1 x 118 GB NVMe SSD instance store: it takes one of the 28 shared slots.
  'm6id.large': { ...shared('m6id.large', 3), InstanceStorageInfo: { TotalSizeInGB: 118, Disks: [{ SizeInGB: 118, Count: 1, Type: 'ssd' }], NvmeSupport: 'required' } },
  // 2 x 1900 GB NVMe SSD.
  'm6id.8xlarge': { ...shared('m6id.8xlarge', 8), InstanceStorageInfo: { TotalSizeInGB: 3800, Disks: [{ SizeInGB: 1900, Count: 2, Type: 'ssd' }], NvmeSupport: 'required' } },
  'm7i.large': dedicated('m7i.large', 32, 3),
  'c7i.16xlarge': dedicated('c7i.16xlarge', 48, 15),
  'm7i.48xlarge': dedicated('m7i.48xlarge', 128, 50),
};

function shared(type: string, interfaces: number): InstanceTypeInfo {
  return {
    InstanceType: type as InstanceTypeInfo['InstanceType'],
    Hypervisor: 'nitro',
    InstanceStorageSupported: false,
    EbsInfo: { EbsOptimizedSupport: 'default', EncryptionSupport: 'supported', NvmeSupport: 'required', MaximumEbsAttachments: 28, AttachmentLimitType: 'shared' },
    NetworkInfo: { MaximumNetworkInterfaces: interfaces },
  };
}

function dedicated(type: string, max: number, interfaces: number): InstanceTypeInfo {
  return { ...shared(type, interfaces), EbsInfo: { EbsOptimizedSupport: 'default', EncryptionSupport: 'supported', NvmeSupport: 'required', MaximumEbsAttachments: max, AttachmentLimitType: 'dedicated' } };
}
