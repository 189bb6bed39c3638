import {
  AttachVolumeCommand,
  CreateSnapshotCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteTagsCommand,
  DeleteVolumeCommand,
  DescribeInstancesCommand,
  DescribeInstanceTypesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  type EC2Client,
} from '@aws-sdk/client-ec2';
import type { Ec2Port } from './ec2-port.js';

/**
 * The EC2 port over SDK v3's EC2Client: each method is one `client.send` with
 * the caller's signal as `abortSignal`. Retries of throttled and failed calls
 * are the client's (the agent builds it in adaptive retry mode,
 * agent/backend-factory.ts); errors reach the caller as the SDK throws them.
 */
export class SdkEc2 implements Ec2Port {
  constructor(readonly client: EC2Client) {}

  describeVolumes: Ec2Port['describeVolumes'] = (input, signal) => this.client.send(new DescribeVolumesCommand(input), { abortSignal: signal });
  createVolume: Ec2Port['createVolume'] = (input, signal) => this.client.send(new CreateVolumeCommand(input), { abortSignal: signal });
  deleteVolume: Ec2Port['deleteVolume'] = (input, signal) => this.client.send(new DeleteVolumeCommand(input), { abortSignal: signal });
  attachVolume: Ec2Port['attachVolume'] = (input, signal) => this.client.send(new AttachVolumeCommand(input), { abortSignal: signal });
  detachVolume: Ec2Port['detachVolume'] = (input, signal) => this.client.send(new DetachVolumeCommand(input), { abortSignal: signal });
  createTags: Ec2Port['createTags'] = (input, signal) => this.client.send(new CreateTagsCommand(input), { abortSignal: signal });
  deleteTags: Ec2Port['deleteTags'] = (input, signal) => this.client.send(new DeleteTagsCommand(input), { abortSignal: signal });
  describeInstances: Ec2Port['describeInstances'] = (input, signal) => this.client.send(new DescribeInstancesCommand(input), { abortSignal: signal });
  // Attachment limits (issue 22 item 2).
  describeInstanceTypes: Ec2Port['describeInstanceTypes'] = (input, signal) => this.client.send(new DescribeInstanceTypesCommand(input), { abortSignal: signal });
  // zone moves
  createSnapshot: Ec2Port['createSnapshot'] = (input, signal) => this.client.send(new CreateSnapshotCommand(input), { abortSignal: signal });
  describeSnapshots: Ec2Port['describeSnapshots'] = (input, signal) => this.client.send(new DescribeSnapshotsCommand(input), { abortSignal: signal });
}
