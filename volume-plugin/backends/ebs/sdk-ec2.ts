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
  // Online grow.
  DescribeVolumesModificationsCommand,
  ModifyVolumeCommand,
  type EC2Client,
} from '@aws-sdk/client-ec2';
import type { Ec2Port } from './ec2-port.js';

/**
 * A mutating call (AttachVolume, DetachVolume, DeleteVolume) is sent once: the facade's pacer,
 * which learns the account's share from each refusal, resends it (docs/design.md §6). The SDK's
 * retries would resend it on their own schedule, outside the pacer, each resend another call on
 * the account's shared bucket. A middleware inside the SDK's retry loop hands the first attempt's
 * error out wrapped, which the retry strategy does not retry, and send() unwraps it.
 */
class SentOnce extends Error {
  constructor(readonly original: unknown) {
    super('sent once');
  }
}

function once<C extends { middlewareStack: { addRelativeTo: (...a: never[]) => void } }>(command: C): C {
  (command.middlewareStack as unknown as { addRelativeTo(mw: unknown, o: object): void }).addRelativeTo(
    (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
      try {
        return await next(args);
      } catch (err) {
        throw new SentOnce(err);
      }
    },
    { relation: 'after', toMiddleware: 'retryMiddleware', name: 'berthSentOnce' },
  );
  return command;
}

const unwrap = (err: unknown): never => {
  throw err instanceof SentOnce ? err.original : err;
};

/**
 * The EC2 port over SDK v3's EC2Client: each method is one `client.send` with
 * the caller's signal as `abortSignal`. Retries of throttled and failed calls
 * are the client's (the agent builds it in adaptive retry mode,
 * agent/backend-factory.ts), except for the mutating calls (once(), above);
 * errors reach the caller as the SDK throws them.
 */
export class SdkEc2 implements Ec2Port {
  constructor(readonly client: Pick<EC2Client, 'send'>) {}

  describeVolumes: Ec2Port['describeVolumes'] = (input, signal) => this.client.send(new DescribeVolumesCommand(input), { abortSignal: signal });
  createVolume: Ec2Port['createVolume'] = (input, signal) => this.client.send(new CreateVolumeCommand(input), { abortSignal: signal });
  deleteVolume: Ec2Port['deleteVolume'] = (input, signal) => this.client.send(once(new DeleteVolumeCommand(input)), { abortSignal: signal }).catch(unwrap);
  attachVolume: Ec2Port['attachVolume'] = (input, signal) => this.client.send(once(new AttachVolumeCommand(input)), { abortSignal: signal }).catch(unwrap);
  detachVolume: Ec2Port['detachVolume'] = (input, signal) => this.client.send(once(new DetachVolumeCommand(input)), { abortSignal: signal }).catch(unwrap);
  createTags: Ec2Port['createTags'] = (input, signal) => this.client.send(new CreateTagsCommand(input), { abortSignal: signal });
  deleteTags: Ec2Port['deleteTags'] = (input, signal) => this.client.send(new DeleteTagsCommand(input), { abortSignal: signal });
  describeInstances: Ec2Port['describeInstances'] = (input, signal) => this.client.send(new DescribeInstancesCommand(input), { abortSignal: signal });
  // Online grow.
  modifyVolume: Ec2Port['modifyVolume'] = (input, signal) => this.client.send(new ModifyVolumeCommand(input), { abortSignal: signal });
  describeVolumesModifications: Ec2Port['describeVolumesModifications'] = (input, signal) =>
    this.client.send(new DescribeVolumesModificationsCommand(input), { abortSignal: signal });
  // Attachment limits (issue 22 item 2).
  describeInstanceTypes: Ec2Port['describeInstanceTypes'] = (input, signal) => this.client.send(new DescribeInstanceTypesCommand(input), { abortSignal: signal });
  // zone moves
  createSnapshot: Ec2Port['createSnapshot'] = (input, signal) => this.client.send(new CreateSnapshotCommand(input), { abortSignal: signal });
  describeSnapshots: Ec2Port['describeSnapshots'] = (input, signal) => this.client.send(new DescribeSnapshotsCommand(input), { abortSignal: signal });
}
