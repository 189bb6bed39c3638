import { DescribeInstanceTypesCommand, type _InstanceType, type EC2Client } from '@aws-sdk/client-ec2';
import { attachmentLimitOf, ebsSlotsLeft, sayLimit, type AttachmentLimit } from '../../lib/attachment-limits.js';
import { DEFAULT_HOST_INSTANCE_TYPE } from '../components/host-defaults.js';
import { ClusterInvariantError, type ClusterSpec } from './invariants.js';

/**
 * The EBS slots a new host of this type has for node volumes (docs/design.md §6, "Attachment
 * limits"): the type's limit less the root volume and, where the limit is shared, the primary
 * network interface and the NVMe instance store. Each node on the host attaches one volume.
 */
export function nodeSlotsOf(limit: AttachmentLimit): number {
  return ebsSlotsLeft(limit, { ebs: 1, networkInterfaces: 1 });
}

/** What the capacity check found: the limit, or why none was checked. */
export type CapacityCheck = { checked: true; limit: AttachmentLimit; slots: number } | { checked: false; why: string };

/**
 * Refuses (ClusterInvariantError, before anything is applied) a spec that places more nodes on one
 * host than its instance type can attach. The type's limit comes from DescribeInstanceTypes; when
 * EC2 states none, or cannot be asked, nothing is refused here (the agent still refuses past the
 * limit on the host, and EC2 itself), and the caller says so in the progress stream.
 */
export async function checkAttachmentCapacity(ec2: Pick<EC2Client, 'send'>, spec: ClusterSpec): Promise<CapacityCheck> {
  const type = spec.instanceType ?? DEFAULT_HOST_INSTANCE_TYPE;
  let limit: AttachmentLimit | undefined;
  try {
    const answer = await ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: [type as _InstanceType] }));
    const info = answer?.InstanceTypes?.find((t) => t.InstanceType === type);
    limit = info ? attachmentLimitOf(info) : undefined;
  } catch (err) {
    if ((err as { name?: string }).name === 'InvalidInstanceType') throw new ClusterInvariantError(`instance type ${type} does not exist in ${spec.region}`);
    return { checked: false, why: `could not read ${type}'s EBS attachment limit (${err instanceof Error ? err.message : String(err)})` };
  }
  if (!limit) return { checked: false, why: `EC2 states no EBS attachment limit for ${type}` };
  const slots = nodeSlotsOf(limit);
  const perHost = new Map<string, number>();
  for (const n of spec.nodes) perHost.set(n.host, (perHost.get(n.host) ?? 0) + 1);
  const over = [...perHost].filter(([, count]) => count > slots).sort(([a], [b]) => a.localeCompare(b));
  if (over.length > 0) {
    throw new ClusterInvariantError(
      `${over.map(([host, count]) => `host ${host} would carry ${count} nodes`).join(', ')}, but a ${type} host attaches at most ${slots} node volumes ` +
        `(${sayLimit(limit, { ebs: 1, networkInterfaces: 1 })}); spread the nodes over more hosts or choose an instance type with more EBS slots`,
    );
  }
  return { checked: true, limit, slots };
}
