import type {
  AttachVolumeCommandInput,
  AttachVolumeCommandOutput,
  CreateTagsCommandInput,
  CreateTagsCommandOutput,
  CreateSnapshotCommandInput,
  CreateSnapshotCommandOutput,
  CreateVolumeCommandInput,
  CreateVolumeCommandOutput,
  DeleteTagsCommandInput,
  DeleteTagsCommandOutput,
  DeleteVolumeCommandInput,
  DeleteVolumeCommandOutput,
  DescribeInstancesCommandInput,
  DescribeInstancesCommandOutput,
  DescribeInstanceTypesCommandInput,
  DescribeInstanceTypesCommandOutput,
  DescribeSnapshotsCommandInput,
  DescribeSnapshotsCommandOutput,
  DescribeVolumesCommandInput,
  DescribeVolumesCommandOutput,
  DetachVolumeCommandInput,
  DetachVolumeCommandOutput,
  // Online grow (berth resize): ModifyVolume and its progress.
  DescribeVolumesModificationsCommandInput,
  DescribeVolumesModificationsCommandOutput,
  ModifyVolumeCommandInput,
  ModifyVolumeCommandOutput,
} from '@aws-sdk/client-ec2';

/**
 * The EC2 port: the one seam between berth and EC2 (docs/design.md §6).
 *
 * One method per EC2 action berth uses, taking and returning the SDK v3
 * command's own input and output types, and failing exactly as the SDK does:
 * an error whose `name` is EC2's error code, with `$fault` ('client' |
 * 'server') and `$metadata`; an aborted call fails with the SDK's abort error
 * (`name` 'AbortError'). Nothing berth adds lives here: pacing, micro-batching,
 * device-name rotation and attachment waits sit above the port in modules of
 * their own, so a fake EC2 on this port still runs all of berth's own logic.
 *
 * Every method takes the caller's signal; the SDK implementation (sdk-ec2.ts)
 * passes it to `EC2Client.send` as `abortSignal`, so a call whose caller has
 * gone (a Mount past dockerd's deadline, an agent shutting down) stops at once.
 *
 * Implementations: `SdkEc2` (sdk-ec2.ts, over EC2Client); `Ec2Model.port()`
 * (test/aws/ec2-model.ts, the stateful in-memory fake). Methods are added, never
 * renamed (ModifyVolume, DescribeVolumesModifications, CreateSnapshot,
 * DescribeSnapshots join when online grow and zone
 * moves need them).
 */
export interface Ec2Port {
  describeVolumes(input: DescribeVolumesCommandInput, signal: AbortSignal): Promise<DescribeVolumesCommandOutput>;
  createVolume(input: CreateVolumeCommandInput, signal: AbortSignal): Promise<CreateVolumeCommandOutput>;
  deleteVolume(input: DeleteVolumeCommandInput, signal: AbortSignal): Promise<DeleteVolumeCommandOutput>;
  attachVolume(input: AttachVolumeCommandInput, signal: AbortSignal): Promise<AttachVolumeCommandOutput>;
  detachVolume(input: DetachVolumeCommandInput, signal: AbortSignal): Promise<DetachVolumeCommandOutput>;
  createTags(input: CreateTagsCommandInput, signal: AbortSignal): Promise<CreateTagsCommandOutput>;
  deleteTags(input: DeleteTagsCommandInput, signal: AbortSignal): Promise<DeleteTagsCommandOutput>;
  describeInstances(input: DescribeInstancesCommandInput, signal: AbortSignal): Promise<DescribeInstancesCommandOutput>;
  // Online grow (berth resize, docs/design.md §6 "Online grow").
  modifyVolume(input: ModifyVolumeCommandInput, signal: AbortSignal): Promise<ModifyVolumeCommandOutput>;
  describeVolumesModifications(input: DescribeVolumesModificationsCommandInput, signal: AbortSignal): Promise<DescribeVolumesModificationsCommandOutput>;
  // Attachment limits (issue 22 item 2): the instance type's EBS attachment limit and its kind.
  describeInstanceTypes(input: DescribeInstanceTypesCommandInput, signal: AbortSignal): Promise<DescribeInstanceTypesCommandOutput>;
  // Zone moves (issue 22, zone-move.ts): a snapshot of the node's volume, restored in the target zone.
  createSnapshot(input: CreateSnapshotCommandInput, signal: AbortSignal): Promise<CreateSnapshotCommandOutput>;
  describeSnapshots(input: DescribeSnapshotsCommandInput, signal: AbortSignal): Promise<DescribeSnapshotsCommandOutput>;
}

/** A port method's name; the EC2 action is the same name capitalised (`attachVolume` → AttachVolume). */
export type Ec2PortMethod = keyof Ec2Port;

/** Every port method, in declaration order (decorators and fakes iterate it). */
export const EC2_PORT_METHODS: readonly Ec2PortMethod[] = [
  'describeVolumes',
  'createVolume',
  'deleteVolume',
  'attachVolume',
  'detachVolume',
  'createTags',
  'deleteTags',
  'describeInstances',
  // Online grow.
  'modifyVolume',
  'describeVolumesModifications',
  // Attachment limits (issue 22 item 2).
  'describeInstanceTypes',
  // zone moves
  'createSnapshot',
  'describeSnapshots',
];

/** The EC2 action a port method calls (`attachVolume` → `AttachVolume`). */
export const ec2ActionOf = (method: Ec2PortMethod): string => method[0]!.toUpperCase() + method.slice(1);
