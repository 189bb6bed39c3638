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
import { isServerFault, isThrottled } from './ec2-errors.js';
import type { Ec2Port } from './ec2-port.js';

/**
 * Which errors leave the SDK's retry loop at once instead of being retried inside it.
 *
 * A mutating call (AttachVolume, DetachVolume, DeleteVolume) is sent once, whatever the error: the
 * facade's pacer, which learns the account's share from each refusal, resends it (docs/design.md §6).
 * The SDK's retries would resend it on their own schedule, outside the pacer, each resend another
 * call on the account's shared bucket.
 *
 * A read or tag call the facade makes (DescribeVolumes, DescribeInstances, CreateTags, DeleteTags)
 * leaves the loop when EC2 refuses it for the account's budget (RequestLimitExceeded) or is browning
 * out (a server fault): the facade tries it again behind the agent's one jittered, account-aware
 * backoff (pacer.ts, RetryGate), instead of the SDK's 8 quick attempts per call, which in a brownout
 * multiplied every read by 8 on a bucket shared with every other host. Network errors (no answer
 * from EC2) stay the SDK's to retry.
 *
 * A middleware inside the SDK's retry loop hands such an error out wrapped, which the retry
 * strategy does not retry, and send() unwraps it.
 */
class PassedOut extends Error {
  constructor(readonly original: unknown) {
    super('passed out of the SDK retry loop');
  }
}

type Stackable = { middlewareStack: { addRelativeTo: (...a: never[]) => void } };

function passOut<C extends Stackable>(command: C, when: (err: unknown) => boolean): C {
  (command.middlewareStack as unknown as { addRelativeTo(mw: unknown, o: object): void }).addRelativeTo(
    (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
      try {
        return await next(args);
      } catch (err) {
        throw when(err) ? new PassedOut(err) : err;
      }
    },
    { relation: 'after', toMiddleware: 'retryMiddleware', name: 'berthPassOut' },
  );
  return command;
}

/** Sent once: every error leaves the SDK's retry loop (mutations, paced by the facade). */
const once = <C extends Stackable>(command: C): C => passOut(command, () => true);
const refused = (err: unknown) => isThrottled(err) || isServerFault(err);

const unwrap = (err: unknown): never => {
  throw err instanceof PassedOut ? err.original : err;
};

/**
 * The EC2 port over SDK v3's EC2Client: each method is one `client.send` with
 * the caller's signal as `abortSignal`. Retries of failed calls are the client's
 * (the agent builds it in adaptive retry mode, agent/backend-factory.ts), except
 * for the mutating calls (once(), above) and for refusals of the facade's reads
 * and tags (refusalsOut(), below), which the facade retries; errors reach the
 * caller as the SDK throws them.
 */
export class SdkEc2 implements Ec2Port {
  /**
   * `refusals: 'caller'` (the default, for the facade, which retries them behind its RetryGate):
   * refusals of reads and tags leave the SDK's retry loop. `'sdk'`: the SDK retries them, for a
   * caller without a retry of its own (the operator's zone move, agent/cli.ts).
   */
  constructor(
    readonly client: Pick<EC2Client, 'send'>,
    options: { refusals?: 'caller' | 'sdk' } = {},
  ) {
    this.refusalsToCaller = (options.refusals ?? 'caller') === 'caller';
  }

  private readonly refusalsToCaller: boolean;

  /** Refusals for the budget and server faults leave the SDK's retry loop when the caller retries them. */
  private refusalsOut<C extends Stackable>(command: C): C {
    return this.refusalsToCaller ? passOut(command, refused) : command;
  }

  describeVolumes: Ec2Port['describeVolumes'] = (input, signal) => this.client.send(this.refusalsOut(new DescribeVolumesCommand(input)), { abortSignal: signal }).catch(unwrap);
  createVolume: Ec2Port['createVolume'] = (input, signal) => this.client.send(new CreateVolumeCommand(input), { abortSignal: signal });
  deleteVolume: Ec2Port['deleteVolume'] = (input, signal) => this.client.send(once(new DeleteVolumeCommand(input)), { abortSignal: signal }).catch(unwrap);
  attachVolume: Ec2Port['attachVolume'] = (input, signal) => this.client.send(once(new AttachVolumeCommand(input)), { abortSignal: signal }).catch(unwrap);
  detachVolume: Ec2Port['detachVolume'] = (input, signal) => this.client.send(once(new DetachVolumeCommand(input)), { abortSignal: signal }).catch(unwrap);
  createTags: Ec2Port['createTags'] = (input, signal) => this.client.send(this.refusalsOut(new CreateTagsCommand(input)), { abortSignal: signal }).catch(unwrap);
  deleteTags: Ec2Port['deleteTags'] = (input, signal) => this.client.send(this.refusalsOut(new DeleteTagsCommand(input)), { abortSignal: signal }).catch(unwrap);
  describeInstances: Ec2Port['describeInstances'] = (input, signal) => this.client.send(this.refusalsOut(new DescribeInstancesCommand(input)), { abortSignal: signal }).catch(unwrap);
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
