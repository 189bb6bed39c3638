import { createHash, randomBytes } from 'node:crypto';
import type {
  AttachVolumeCommandInput,
  AttachVolumeCommandOutput,
  CreateTagsCommandInput,
  Filter,
  CreateSnapshotCommandInput,
  CreateSnapshotCommandOutput,
  CreateVolumeCommandInput,
  CreateVolumeCommandOutput,
  DeleteTagsCommandInput,
  DeleteVolumeCommandInput,
  DescribeInstancesCommandInput,
  DescribeInstancesCommandOutput,
  DescribeInstanceTypesCommandInput,
  DescribeInstanceTypesCommandOutput,
  DescribeSnapshotsCommandInput,
  DescribeSnapshotsCommandOutput,
  DescribeTagsCommandInput,
  DescribeTagsCommandOutput,
  DescribeVolumesCommandInput,
  DescribeVolumesCommandOutput,
  DetachVolumeCommandInput,
  DetachVolumeCommandOutput,
  EC2Client,
  EC2ClientResolvedConfig,
  Instance,
  InstanceStateName,
  ModifyVolumeCommandInput,
  ModifyVolumeCommandOutput,
  DescribeVolumesModificationsCommandInput,
  DescribeVolumesModificationsCommandOutput,
  VolumeModification,
  ServiceInputTypes,
  ServiceOutputTypes,
  Snapshot,
  TagDescription,
  TagSpecification,
  Volume,
  VolumeAttachment,
  VolumeState,
  VolumeType,
} from '@aws-sdk/client-ec2';
import type { ResponseMetadata } from '@smithy/types';
import { mockClient, type AwsStub } from 'aws-sdk-client-mock';
import { ec2Error, internalError, invalidParameter, missingParameter, throttled, unavailable } from './ec2-errors.js';
import { checkFilterNames, matchesFilters, paginate, tagFilterValues, tagList } from './ec2-filters.js';
import { checkTags, checkVolumeConfig, DEVICE_PATTERN, ID_PATTERN, MAX_TAGS, SIZE_LIMITS } from './ec2-rules.js';
import { TokenBucket } from './token-bucket.js';
import { untilAborted } from '../../volume-plugin/backends/ebs/micro-batch.js';
import { INSTANCE_TYPES } from './instance-types.js';
import { attachmentLimitOf } from '../../lib/attachment-limits.js';
import { EC2_PORT_METHODS, ec2ActionOf, type Ec2Port } from '../../volume-plugin/backends/ebs/ec2-port.js';

/**
 * A stateful model of the part of EC2 that berth's EBS backend uses, served
 * behind aws-sdk-client-mock on one EC2Client instance, so that everything
 * above the SDK (facade, backend, reconciler) runs for real against rules EC2
 * enforces: ids, per-type limits, idempotency tokens, AZs, attachment states
 * with latency, tags with filters, paging and token-bucket throttling.
 *
 * Use:
 *   const model = new Ec2Model({ attachLatencyMs: 5 });
 *   const ec2 = new EC2Client({ region: model.region, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
 *   model.install(ec2);                       // or model.installBehindSdkRetries(ec2)
 *   const host = model.addInstance({ az: 'eu-west-1a', tags: { 'berth:host': 'h1' } });
 *   model.onAttached = async (volumeId, device) => { ...bind a loop device and a fake sysfs serial... };
 *   ... code under test calls ec2.send(...) ...
 *   await model.settled();                    // attach/detach/create transitions done
 *   expect(model.volume(id)).toMatchObject({ state: 'in-use', attachment: { instanceId: host, state: 'attached' } });
 *   expect(model.calls('AttachVolume')).toBe(1);
 *   model.dispose();                          // in afterEach
 *
 * Note on retries: aws-sdk-client-mock replaces `client.send` itself, so the
 * SDK's middleware stack (retry strategy, adaptive rate limiting, signing,
 * serialization) never runs: each `send` is exactly one model call and errors
 * reach the caller on the first attempt (`ec2-model.test.ts` checks this with
 * maxAttempts 5). With install() retrying is the caller's own code; with
 * installBehindSdkRetries() the SDK's retry strategy runs for real.
 *
 * Choices where EC2 is looser or undocumented:
 * - Size limits (CreateVolume, botocore 1.43): gp2 1-16384, gp3 1-65536, io1 4-16384,
 *   io2 4-65536, st1/sc1 125-16384, standard 1-1024 GiB.
 * - Unknown KMS keys: EC2 checks the key asynchronously ("the action can
 *   appear to complete, but eventually fails"). CreateVolume therefore
 *   succeeds with state 'creating', and the volume then turns to 'error'
 *   (or vanishes, with `unknownKmsKeyOutcome: 'deleted'`).
 * - Attaching needs the instance 'running' or 'stopped' (as EC2 allows),
 *   else IncorrectInstanceState; the volume 'available' (else VolumeInUse when
 *   attached, IncorrectState when creating/error).
 * - DeleteVolume removes the volume at once (EC2 shows 'deleting' briefly).
 * - Throttling groups (docs/design.md §6): AttachVolume, DetachVolume and
 *   DeleteVolume share one bucket of 50 refilled 5/s; CreateVolume 100, 5/s;
 *   CreateTags and DeleteTags share 100, 10/s; DescribeVolumes,
 *   DescribeInstances, DescribeTags 100, 20/s each (a DescribeVolumes with
 *   neither filters nor ids: 50, 10/s); ModifyVolume 50, 5/s.
 *   Throttling is checked before anything else; a throttled call changes nothing.
 * - Fleet runs (test/fakes/fleet.ts): latencies drawn per attachment
 *   (attachLatency/detachLatency), DescribeVolumes lagging the attachment
 *   (describeLagMs), a brownout (faults.serverFaultAll/throttleAll), and calls
 *   counted per caller (installBehindSdkRetries' `caller`).
 */
export class Ec2Model {
  readonly region: string;
  readonly accountId: string;
  readonly availabilityZones: readonly string[];
  attachLatencyMs: number;
  detachLatencyMs: number;
  /** Draws each attachment's latency (overrides attachLatencyMs): a distribution, for the fleet simulation. */
  attachLatency: (() => number) | undefined;
  /** Draws each detachment's latency (overrides detachLatencyMs), termination's included. */
  detachLatency: (() => number) | undefined;
  /**
   * EC2's eventual consistency (API reference, "Eventual consistency"): DescribeVolumes goes on
   * reporting a completed attachment as 'attaching' for this long; the instance sees the NVMe
   * namespace (onAttached) at once. Default 0.
   */
  describeLagMs: number;
  /**
   * EC2's eventual consistency for tags (EC2 Developer Guide, "Eventual consistency in the Amazon EC2
   * API": a change "might not be immediately visible to all subsequent commands"; no bound is stated):
   * DescribeVolumes (its Tags and tag filters) shows each volume's tags as they were this long ago, to
   * every reader, the writer included. Tags given at CreateVolume are visible with the volume. Default 0.
   */
  tagLagMs: number;
  createLatencyMs: number;
  /** Delay before every call is answered, like a network round trip. */
  apiLatencyMs: number;
  throttling: boolean;

  /**
   * Test-harness hook, awaited after the attach latency and before the
   * attachment turns 'attached' (so a test can bind a loop device and a fake
   * sysfs serial first). If it throws, the attachment stays 'attaching' and
   * the error is kept in `hookErrors`.
   */
  onAttached?: (volumeId: string, device: string, instanceId: string) => void | Promise<void>;
  /**
   * Awaited after the detach latency and before the volume turns 'available'.
   * Called only for attachments whose onAttached was called.
   */
  onDetached?: (volumeId: string, device: string, instanceId: string) => void | Promise<void>;
  /**
   * Online grow: awaited when a modification reaches 'optimizing', the point from which EC2 says the new
   * size is usable (EBS User Guide, "Monitor the progress of volume modifications"): a test grows the device
   * the host sees (the loop image, the fake NVMe namespace) here, as the NVMe controller's
   * namespace-attribute-changed event does on a Nitro host.
   */
  onOptimizing?: (volumeId: string, sizeGiB: number) => void | Promise<void>;
  /** Time from ModifyVolume ('modifying') to 'optimizing'. Default: attachLatencyMs. */
  modifyLatencyMs: number;
  /** Time from 'optimizing' to 'completed'. Default: 4 × modifyLatencyMs. */
  optimizeLatencyMs: number;
  /** Errors thrown by onAttached/onDetached. */
  readonly hookErrors: Error[] = [];

  /** Switches for fault tests; change them at any time. */
  readonly faults = {
    /** Volumes whose attachment stays 'attaching' until detached. */
    stuckAttaching: new Set<string>(),
    /** Volumes whose detach stays 'detaching' unless DetachVolume is called with Force. */
    stuckDetaching: new Set<string>(),
    /** Every call fails with RequestLimitExceeded. */
    throttleAll: false,
    /** Every call fails with a server fault (503 Unavailable), taking no token: an EC2 brownout. */
    serverFaultAll: false,
    /** The next N DescribeVolumes calls fail with server faults, alternating Unavailable (503) and InternalError (500); the last is InternalError. */
    failDescribeVolumes: 0,
    /** KMS key ids/ARNs/aliases the model treats as nonexistent. */
    unknownKmsKeys: new Set<string>(),
    /** Volumes whose snapshots end in state 'error' instead of 'completed' (zone moves, issue 22). */
    failingSnapshots: new Set<string>(),
    /** Volumes whose snapshots stay 'pending' until removed from this set (and settle then). */
    stuckSnapshots: new Set<string>(),
  };
  /** Time from CreateSnapshot ('pending') to 'completed' (zone moves, issue 22). */
  snapshotLatencyMs: number;

  private readonly failures = new Map<string, Error[]>();
  private readonly now: () => number;
  private readonly random: (() => number) | undefined;
  private readonly knownKmsKeys: ReadonlySet<string> | undefined;
  private readonly unknownKmsKeyOutcome: 'error' | 'deleted';
  private readonly maxVolumesPerInstance: number;
  private readonly buckets: Record<BucketName, TokenBucket>;
  private readonly instances = new Map<string, ModelInstance>();
  private readonly volumesById = new Map<string, ModelVolume>();
  /** Instance id → the volumes attached to it (any attachment state). */
  private readonly attachedTo = new Map<string, Set<ModelVolume>>();
  /** Volumes by tag key and value, kept by their IndexedTags (a volume deleted since stays until its tags change: look it up in volumesById). */
  private readonly volumesByTag = new Map<string, Map<string, Set<ModelVolume>>>();
  private readonly snapshots = new Map<string, ModelSnapshot>();
  private readonly clientTokens = new Map<string, { params: string; volumeId: string; response: Volume }>();
  private readonly callCounts = new Map<string, number>();
  private readonly callInputs = new Map<string, unknown[]>();
  private readonly requireDetachInstanceId: boolean;
  private readonly throttledCounts = new Map<string, number>();
  /** Per caller (installBehindSdkRetries' `caller`): calls, throttled and answered calls per command. */
  private readonly byCaller = new Map<string, Map<string, CallerCounts>>();
  private readonly pending = new Set<Promise<void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private seq = 0;
  private disposed = false;
  /** Every modification of each volume, oldest first (DescribeVolumesModifications; the rate rules). */
  private readonly modifications = new Map<string, VolumeModification[]>();

  constructor(opts: Ec2ModelOptions = {}) {
    this.region = opts.region ?? 'eu-west-1';
    this.accountId = opts.accountId ?? '123456789012';
    this.availabilityZones = opts.availabilityZones ?? ['a', 'b', 'c'].map((suffix) => this.region + suffix);
    this.attachLatencyMs = opts.attachLatencyMs ?? 50;
    this.detachLatencyMs = opts.detachLatencyMs ?? this.attachLatencyMs;
    this.createLatencyMs = opts.createLatencyMs ?? 10;
    this.modifyLatencyMs = opts.modifyLatencyMs ?? this.attachLatencyMs;
    this.optimizeLatencyMs = opts.optimizeLatencyMs ?? 4 * this.modifyLatencyMs;
    this.snapshotLatencyMs = opts.snapshotLatencyMs ?? 20;
    this.attachLatency = opts.attachLatency;
    this.detachLatency = opts.detachLatency;
    this.describeLagMs = opts.describeLagMs ?? 0;
    this.tagLagMs = opts.tagLagMs ?? 0;
    this.apiLatencyMs = opts.apiLatencyMs ?? 0;
    this.throttling = opts.throttling ?? true;
    this.now = opts.now ?? Date.now;
    this.random = opts.random;
    this.knownKmsKeys = opts.knownKmsKeys ? new Set(opts.knownKmsKeys) : undefined;
    this.unknownKmsKeyOutcome = opts.unknownKmsKeyOutcome ?? 'error';
    this.maxVolumesPerInstance = opts.maxVolumesPerInstance ?? Infinity;
    this.requireDetachInstanceId = opts.requireDetachInstanceId ?? false;
    const limits = { ...DEFAULT_BUCKETS, ...opts.buckets };
    this.buckets = Object.fromEntries(
      Object.entries(limits).map(([name, limit]) => [name, new TokenBucket(limit.capacity, limit.refillPerSecond, this.now)]),
    ) as Record<BucketName, TokenBucket>;
  }

  /**
   * Mocks `send` of this client instance (other clients, and the class, stay
   * real) and answers every modelled command from the model; any other command
   * rejects with a "not modelled" Error. Returns the stub: `stub.commandCalls(
   * AttachVolumeCommand)` lists the calls, `stub.restore()` unmocks.
   */
  install(client: EC2Client): AwsStub<ServiceInputTypes, ServiceOutputTypes, EC2ClientResolvedConfig> {
    const stub = mockClient(client);
    stub.send.callsFake((command: { input: unknown }) => this.dispatch(command.constructor.name, command.input) as Promise<ServiceOutputTypes>);
    return stub;
  }

  /**
   * The alternative to install(): answers from inside the client's middleware
   * stack, after the SDK's retry middleware (finalizeRequest step, low
   * priority: after retry and signing, before any HTTP). The SDK's own retry
   * strategy (standard or adaptive, maxAttempts) then runs for real against
   * the model's throttling and faults; each attempt is one model call. Use it
   * to test that the facade's SDK retry configuration copes; install() is for
   * exact one-call-per-send assertions. Returns a function that removes it.
   */
  installBehindSdkRetries(client: EC2Client, caller?: string): () => void {
    const name = `berth-ec2-model-${randomBytes(4).toString('hex')}`;
    client.middlewareStack.add(
      (_next, context) => async (args) => {
        const output = await this.dispatch(context.commandName ?? '', args.input, caller);
        return { output: output as ServiceOutputTypes, response: {} };
      },
      { step: 'finalizeRequest', priority: 'low', name },
    );
    return () => void client.middlewareStack.remove(name);
  }

  /**
   * The model as an EC2 port (volume-plugin/backends/ebs/ec2-port.ts) with no SDK in between:
   * the same rules, throttling and faults, each port call one model call (like install()).
   * A call whose signal is already aborted fails as the SDK's HTTP handler fails it and never
   * reaches the model; one aborted while under way fails at once, while the model finishes it
   * (a request EC2 received is not undone by the caller going away).
   */
  port(): Ec2Port {
    const call =
      (action: string) =>
      (input: unknown, signal: AbortSignal): Promise<unknown> => {
        if (signal.aborted) return Promise.reject(sdkAbortError(signal));
        return untilAborted(this.dispatch(action, input), signal, sdkAbortError);
      };
    return Object.fromEntries(EC2_PORT_METHODS.map((method) => [method, call(ec2ActionOf(method))])) as unknown as Ec2Port;
  }

  // ---- harness: set up and inspect the world (no throttling, not counted) ----

  /** Adds an instance (default 'running') and returns its id `i-` + 17 hex. */
  addInstance(p: {
    az: string;
    state?: InstanceStateName;
    tags?: Record<string, string>;
    instanceId?: string;
    /**
     * An instance type of INSTANCE_TYPES (test/aws/instance-types.ts): AttachVolume then enforces its
     * attachment limit as EC2 does (shared: EBS volumes, network interfaces and NVMe instance store
     * together; dedicated: EBS volumes only). Omitted: m6i.large in answers, no limit enforced.
     */
    instanceType?: string;
    /** Network interfaces attached (shared limits count them). Default 1. */
    networkInterfaces?: number;
  }): string {
    if (p.instanceType !== undefined && !INSTANCE_TYPES[p.instanceType]) throw new Error(`Ec2Model: instance type ${p.instanceType} is not in test/aws/instance-types.ts`);
    this.checkAz(p.az);
    const instanceId = p.instanceId ?? this.newId('i');
    if (!ID_PATTERN.i.test(instanceId)) throw new Error(`Ec2Model: instance id ${instanceId} is not i- and 17 hex digits`);
    if (this.instances.has(instanceId)) throw new Error(`Ec2Model: instance ${instanceId} exists already`);
    this.instances.set(instanceId, {
      instanceId,
      reservationId: this.newId('r'),
      az: p.az,
      state: p.state ?? 'running',
      tags: new Map(Object.entries(p.tags ?? {})),
      launchTime: new Date(this.now()),
      seq: this.seq++,
      ...(p.instanceType !== undefined ? { instanceType: p.instanceType } : {}),
      networkInterfaces: p.networkInterfaces ?? 1,
    });
    return instanceId;
  }

  /**
   * Changes an instance's state. Entering 'shutting-down' or 'terminated'
   * detaches its volumes as EC2 does (onDetached fires; DeleteOnTermination
   * volumes are deleted, others turn 'available'); the promise settles when
   * those detachments have completed. Stopping keeps volumes attached.
   */
  setInstanceState(instanceId: string, state: InstanceStateName): Promise<void> {
    const instance = this.instances.get(instanceId);
    if (!instance) throw new Error(`Ec2Model: no instance ${instanceId}`);
    if (instance.state === 'terminated') throw new Error(`Ec2Model: instance ${instanceId} is terminated`);
    instance.state = state;
    if (state !== 'shutting-down' && state !== 'terminated') return Promise.resolve();
    const detaching = this.volumesOn(instanceId).map((volume) => {
        const attachment = volume.attachment!;
        if (attachment.state !== 'detaching') return this.startDetach(volume, attachment, { force: true, terminating: true });
        attachment.forced = true;
        attachment.terminating = true;
        return attachment.stalled ? this.track(this.finishDetach(volume, attachment)) : this.settled();
      });
    return Promise.all(detaching).then(() => undefined);
  }

  /**
   * Adds a volume ('available', or attached at once with `attachedTo`, firing
   * onAttached; await `settled()` for the hook). Returns `vol-` + 17 hex.
   */
  addVolume(p: {
    az: string;
    size: number;
    type?: VolumeType;
    tags?: Record<string, string>;
    attachedTo?: { instanceId: string; device: string; deleteOnTermination?: boolean };
    iops?: number;
    throughput?: number;
    encrypted?: boolean;
    kmsKeyId?: string;
    snapshotId?: string;
    volumeId?: string;
  }): string {
    this.checkAz(p.az);
    const type = p.type ?? 'gp3';
    const volumeId = p.volumeId ?? this.newId('vol');
    if (!ID_PATTERN.vol.test(volumeId)) throw new Error(`Ec2Model: volume id ${volumeId} is not vol- and 17 hex digits`);
    if (this.volumesById.has(volumeId)) throw new Error(`Ec2Model: volume ${volumeId} exists already`);
    const performance = checkVolumeConfig(type, p.size, p.iops, p.throughput);
    const volume: ModelVolume = {
      volumeId,
      seq: this.seq++,
      az: p.az,
      size: p.size,
      type,
      ...performance,
      encrypted: p.encrypted ?? p.kmsKeyId !== undefined,
      kmsKeyId: p.kmsKeyId ? this.kmsKeyArn(p.kmsKeyId) : p.encrypted ? this.defaultKmsKeyArn() : undefined,
      snapshotId: p.snapshotId ?? '',
      state: 'available',
      createTime: new Date(this.now()),
      tags: new Map(Object.entries(p.tags ?? {})),
    };
    if (p.attachedTo) {
      const instance = this.instances.get(p.attachedTo.instanceId);
      if (!instance) throw new Error(`Ec2Model: no instance ${p.attachedTo.instanceId}`);
      if (instance.az !== p.az) throw new Error(`Ec2Model: instance ${instance.instanceId} is in ${instance.az}, not ${p.az}`);
      if (this.attachmentAt(instance.instanceId, p.attachedTo.device)) throw new Error(`Ec2Model: ${p.attachedTo.device} is in use on ${instance.instanceId}`);
      const attachment: ModelAttachment = {
        instanceId: instance.instanceId,
        device: p.attachedTo.device,
        state: 'attached',
        attachTime: new Date(this.now()),
        deleteOnTermination: p.attachedTo.deleteOnTermination ?? false,
      };
      volume.state = 'in-use';
      this.setAttachment(volume, attachment);
      if (this.onAttached) attachment.attachHook = this.track(this.runHook(this.onAttached, volume, attachment));
    }
    this.register(volume);
    return volumeId;
  }

  /** Adds a completed snapshot that CreateVolume can restore from; returns `snap-` + 17 hex. */
  addSnapshot(p: { size: number; encrypted?: boolean; kmsKeyId?: string; volumeId?: string; startTime?: Date; tags?: Record<string, string>; content?: string }): string {
    const snapshotId = this.newId('snap');
    this.snapshots.set(snapshotId, {
      snapshotId,
      seq: this.seq++,
      volumeId: p.volumeId ?? 'vol-ffffffff',
      size: p.size,
      encrypted: p.encrypted ?? false,
      kmsKeyId: p.kmsKeyId && this.kmsKeyArn(p.kmsKeyId),
      state: 'completed',
      progress: 100,
      startTime: p.startTime ?? new Date(this.now()),
      tags: new Map(Object.entries(p.tags ?? {})),
      content: p.content,
    });
    return snapshotId;
  }

  // ---- harness: content (zone moves, issue 22) ----
  // EC2 keeps no notion of a volume's bytes that berth can see; the model keeps one marker string per
  // volume so a test can show that data went volume → snapshot → volume: a snapshot holds its volume's
  // content as it was at CreateSnapshot ("point-in-time", EBS User Guide, "Amazon EBS snapshots"), and a
  // volume created from a snapshot starts with the snapshot's content.

  /** Sets the marker of a volume's data (what a test "writes"). */
  writeContent(volumeId: string, content: string): void {
    const volume = this.volumesById.get(volumeId);
    if (!volume) throw new Error(`Ec2Model: no volume ${volumeId}`);
    volume.content = content;
  }

  /** The marker of a volume's data; undefined for a volume nothing was written to. */
  content(volumeId: string): string | undefined {
    const volume = this.volumesById.get(volumeId);
    if (!volume) throw new Error(`Ec2Model: no volume ${volumeId}`);
    return volume.content;
  }

  /** A copy of the model's record of one snapshot. */
  snapshot(snapshotId: string): SnapshotView {
    const snapshot = this.snapshots.get(snapshotId);
    if (!snapshot) throw new Error(`Ec2Model: no snapshot ${snapshotId}`);
    return snapshotViewOf(snapshot);
  }

  /** Copies of every snapshot, in creation order. */
  snapshotList(): SnapshotView[] {
    return [...this.snapshots.values()].map(snapshotViewOf);
  }

  /** Lets snapshots of a volume in faults.stuckSnapshots complete now (as EC2 would, later). */
  releaseSnapshots(volumeId: string): void {
    this.faults.stuckSnapshots.delete(volumeId);
    for (const snapshot of this.snapshots.values()) if (snapshot.volumeId === volumeId && snapshot.state === 'pending') this.finishSnapshot(snapshot);
  }

  /** Sets tags on a volume or instance behind berth's back (drift). */
  setTags(resourceId: string, tags: Record<string, string>): void {
    const target = this.taggable(resourceId);
    for (const [key, value] of Object.entries(tags)) target.set(key, value);
  }

  /** Removes tags from a volume or instance behind berth's back. */
  removeTags(resourceId: string, keys: readonly string[]): void {
    const target = this.taggable(resourceId);
    for (const key of keys) target.delete(key);
  }

  /** Detaches a volume behind berth's back (as a console user would); settles when it is 'available'. */
  detachOutOfBand(volumeId: string): Promise<void> {
    const volume = this.volumesById.get(volumeId);
    if (!volume?.attachment) throw new Error(`Ec2Model: volume ${volumeId} is not attached`);
    if (volume.attachment.state === 'detaching') return Promise.resolve();
    return this.startDetach(volume, volume.attachment, { force: true, terminating: false });
  }

  /**
   * The next calls of `command` ('CreateTags' or 'CreateTagsCommand') fail
   * with these errors, one per call in order, after the throttling check and
   * before the model changes anything. Build them with `ec2Error()`.
   */
  failNext(command: string, ...errors: Error[]): void {
    const name = command.replace(/Command$/, '');
    this.failures.set(name, [...(this.failures.get(name) ?? []), ...errors]);
  }

  /** A copy of the model's record of one volume, for assertions. */
  volume(volumeId: string): VolumeView {
    const volume = this.volumesById.get(volumeId);
    if (!volume) throw new Error(`Ec2Model: no volume ${volumeId}`);
    return viewOf(volume);
  }

  /** Copies of every volume, in creation order. */
  volumes(): VolumeView[] {
    return [...this.volumesById.values()].map(viewOf);
  }

  /** Whether a volume exists (DeleteVolume removes it). */
  hasVolume(volumeId: string): boolean {
    return this.volumesById.has(volumeId);
  }

  /** A copy of the model's record of one instance. */
  instance(instanceId: string): InstanceView {
    const instance = this.instances.get(instanceId);
    if (!instance) throw new Error(`Ec2Model: no instance ${instanceId}`);
    return { instanceId, az: instance.az, state: instance.state, tags: Object.fromEntries(instance.tags) };
  }

  /** Calls received (throttled and failed ones included), for one command ('AttachVolume' or 'AttachVolumeCommand') or all. */
  calls(command?: string): number {
    if (command === undefined) return [...this.callCounts.values()].reduce((a, b) => a + b, 0);
    return this.callCounts.get(command.replace(/Command$/, '')) ?? 0;
  }

  /** Calls refused with RequestLimitExceeded, for one command or all. */
  throttledCalls(command?: string): number {
    if (command === undefined) return [...this.throttledCounts.values()].reduce((a, b) => a + b, 0);
    return this.throttledCounts.get(command.replace(/Command$/, '')) ?? 0;
  }

  /** The inputs of the calls received for one command, in order (throttled and failed ones included). */
  inputs<T = Record<string, unknown>>(command: string): T[] {
    return [...((this.callInputs.get(command.replace(/Command$/, '')) ?? []) as T[])];
  }

  /** Calls of one caller (installBehindSdkRetries' `caller`) per command: received, throttled, answered without error. */
  callsBy(caller: string): Map<string, CallerCounts> {
    return new Map([...(this.byCaller.get(caller) ?? [])].map(([k, v]) => [k, { ...v }]));
  }

  /** Resets the call counters and inputs (not the buckets). */
  resetCalls(): void {
    this.callCounts.clear();
    this.callInputs.clear();
    this.throttledCounts.clear();
    this.byCaller.clear();
  }

  /** Stops keeping every call's input (a fleet run makes millions of calls); inputs() then answers []. */
  keepInputs = true;

  /** Tokens left in a throttling bucket now. */
  tokens(bucket: BucketName): number {
    return this.buckets[bucket].available();
  }

  /** Resolves when every state change under way (attach, detach, create, hooks) has finished (at once after dispose). */
  async settled(): Promise<void> {
    while (this.pending.size > 0 && !this.disposed) await Promise.allSettled([...this.pending]);
  }

  /** Stops every timer; changes under way never complete. Call in afterEach. */
  dispose(): void {
    this.disposed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  // ---- the API ----

  private async dispatch(commandName: string, commandInput: unknown, caller?: string): Promise<unknown> {
    const name = commandName.replace(/Command$/, '');
    this.callCounts.set(name, (this.callCounts.get(name) ?? 0) + 1);
    if (this.keepInputs) {
      const inputs = this.callInputs.get(name) ?? [];
      inputs.push(commandInput ?? {});
      this.callInputs.set(name, inputs);
    }
    let counts: CallerCounts | undefined;
    if (caller !== undefined) {
      const perCaller = this.byCaller.get(caller) ?? new Map<string, CallerCounts>();
      this.byCaller.set(caller, perCaller);
      counts = perCaller.get(name) ?? { calls: 0, throttled: 0, answered: 0 };
      perCaller.set(name, counts);
      counts.calls += 1;
    }
    const handler = this.handlers[name];
    if (!handler) {
      throw new Error(`Ec2Model: ${name} is not modelled (modelled: ${Object.keys(this.handlers).join(', ')})`);
    }
    if (this.apiLatencyMs > 0) await this.delay(this.apiLatencyMs);
    if (this.faults.serverFaultAll) throw unavailable();
    if (this.faults.throttleAll || (this.throttling && !this.buckets[this.bucketOf(name, commandInput)].take())) {
      this.throttledCounts.set(name, (this.throttledCounts.get(name) ?? 0) + 1);
      if (counts) counts.throttled += 1;
      throw throttled();
    }
    if (name === 'DescribeVolumes' && this.faults.failDescribeVolumes > 0) {
      this.faults.failDescribeVolumes -= 1;
      throw this.faults.failDescribeVolumes % 2 === 0 ? internalError() : unavailable();
    }
    const failure = this.failures.get(name)?.shift();
    if (failure) throw failure;
    const output = handler((commandInput ?? {}) as never);
    if (counts) counts.answered += 1;
    return { ...output, $metadata: this.metadata() };
  }

  /**
   * The bucket a call draws on. DescribeVolumes without filters or ids is an "unfiltered and
   * unpaginated" describe with its own smaller bucket (docs/design.md §6).
   */
  private bucketOf(name: string, input: unknown): BucketName {
    if (name === 'DescribeVolumes') {
      const i = (input ?? {}) as DescribeVolumesCommandInput;
      if (!i.Filters?.length && !i.VolumeIds?.length) return 'describeVolumesUnfiltered';
    }
    return BUCKET_OF[name]!;
  }

  private readonly handlers: Record<string, (input: never) => object> = {
    CreateVolume: (input: CreateVolumeCommandInput) => this.createVolume(input),
    DescribeVolumes: (input: DescribeVolumesCommandInput) => this.describeVolumes(input),
    AttachVolume: (input: AttachVolumeCommandInput) => this.attachVolume(input),
    DetachVolume: (input: DetachVolumeCommandInput) => this.detachVolume(input),
    DeleteVolume: (input: DeleteVolumeCommandInput) => this.deleteVolume(input),
    ModifyVolume: (input: ModifyVolumeCommandInput) => this.modifyVolume(input),
    DescribeVolumesModifications: (input: DescribeVolumesModificationsCommandInput) => this.describeVolumesModifications(input),
    CreateTags: (input: CreateTagsCommandInput) => this.createTags(input),
    DeleteTags: (input: DeleteTagsCommandInput) => this.deleteTags(input),
    DescribeInstances: (input: DescribeInstancesCommandInput) => this.describeInstances(input),
    DescribeInstanceTypes: (input: DescribeInstanceTypesCommandInput) => this.describeInstanceTypes(input),
    DescribeTags: (input: DescribeTagsCommandInput) => this.describeTags(input),
    CreateSnapshot: (input: CreateSnapshotCommandInput) => this.createSnapshot(input),
    DescribeSnapshots: (input: DescribeSnapshotsCommandInput) => this.describeSnapshots(input),
  };

  // ---- snapshots (zone moves, issue 22) ----
  // EC2 API Reference, CreateSnapshot: "Creates a snapshot of an EBS volume"; the answer is the snapshot
  // in state 'pending'; it turns 'completed' (Progress '100%') or 'error' asynchronously. No ClientToken
  // parameter exists (unlike CreateVolume): a retried call makes a second snapshot, so a caller finds its
  // own by a tag it set (TagSpecifications, ResourceType 'snapshot'). The snapshot copies the volume's
  // size, encryption and KMS key ("Snapshots that are taken from encrypted volumes are automatically
  // encrypted"). A volume that is 'creating' or 'error' cannot be snapshotted (IncorrectState), and at
  // most 5 snapshots of one volume may be pending at once (SnapshotCreationPerVolumeRateExceeded; EBS
  // User Guide, "Create Amazon EBS snapshots": "a limit of five concurrent snapshots per volume" for
  // the API; the model's choice of the documented console/API figure). The model keeps no region-wide
  // snapshot quota. DescribeSnapshots: SnapshotIds (InvalidSnapshot.NotFound for a missing one), OwnerIds
  // ('self' or the account id), Filters (below), MaxResults 5..1000 with NextToken.
  private createSnapshot(input: CreateSnapshotCommandInput): Omit<CreateSnapshotCommandOutput, '$metadata'> {
    if (!input.VolumeId) throw missingParameter('The request must contain the parameter volumeId');
    const volume = this.findVolume(input.VolumeId);
    if (volume.state === 'creating' || volume.state === 'error') throw ec2Error('IncorrectState', `The volume '${volume.volumeId}' is '${volume.state}'.`);
    const pending = [...this.snapshots.values()].filter((s) => s.volumeId === volume.volumeId && s.state === 'pending').length;
    if (pending >= 5) throw ec2Error('SnapshotCreationPerVolumeRateExceeded', 'The maximum per volume CreateSnapshot request rate has been exceeded. Use an increasing or variable sleep interval between requests.');
    const tags = new Map<string, string>();
    for (const specification of input.TagSpecifications ?? []) {
      if (specification.ResourceType !== 'snapshot') throw invalidParameter(`'${specification.ResourceType}' is not a valid taggable resource type for this operation.`);
      for (const [key, value] of checkTags(specification.Tags ?? [])) tags.set(key, value);
    }
    if (input.DryRun) throw dryRun();
    const snapshot: ModelSnapshot = {
      snapshotId: this.newId('snap'),
      seq: this.seq++,
      volumeId: volume.volumeId,
      size: volume.size,
      encrypted: volume.encrypted,
      kmsKeyId: volume.kmsKeyId,
      state: 'pending',
      progress: 0,
      startTime: new Date(this.now()),
      description: input.Description,
      tags,
      content: volume.content,
    };
    this.snapshots.set(snapshot.snapshotId, snapshot);
    this.track(
      this.delay(this.snapshotLatencyMs / 2).then(async () => {
        if (snapshot.state === 'pending') snapshot.progress = 50;
        await this.delay(this.snapshotLatencyMs / 2);
        if (!this.faults.stuckSnapshots.has(snapshot.volumeId)) this.finishSnapshot(snapshot);
      }),
    );
    return this.describeSnapshot(snapshot);
  }

  private finishSnapshot(snapshot: ModelSnapshot): void {
    if (snapshot.state !== 'pending') return;
    if (this.faults.failingSnapshots.has(snapshot.volumeId)) {
      snapshot.state = 'error';
      snapshot.stateMessage = 'Snapshot creation failed';
      return;
    }
    snapshot.state = 'completed';
    snapshot.progress = 100;
  }

  private describeSnapshots(input: DescribeSnapshotsCommandInput): Omit<DescribeSnapshotsCommandOutput, '$metadata'> {
    const filters = input.Filters ?? [];
    checkFilterNames(filters, SNAPSHOT_FILTERS);
    let snapshots = [...this.snapshots.values()];
    if (input.SnapshotIds && input.SnapshotIds.length > 0) {
      for (const id of input.SnapshotIds) {
        if (!ID_PATTERN.snap.test(id)) throw ec2Error('InvalidSnapshotID.Malformed', `Invalid id: "${id}" (expecting "snap-...")`);
        if (!this.snapshots.has(id)) throw ec2Error('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`);
      }
      const wanted = new Set(input.SnapshotIds);
      snapshots = snapshots.filter((s) => wanted.has(s.snapshotId));
    }
    for (const owner of input.OwnerIds ?? []) {
      if (owner !== 'self' && owner !== this.accountId) snapshots = [];
    }
    snapshots = snapshots.filter((s) => matchesFilters(filters, (name) => snapshotFilterValues(s, name, this.accountId)));
    const page = paginate(snapshots, (s) => s.seq, {
      maxResults: input.MaxResults,
      nextToken: input.NextToken,
      min: 5,
      max: 1000,
      idsGiven: Boolean(input.SnapshotIds?.length),
      idsParameter: 'snapshotIds',
    });
    return { Snapshots: page.items.map((s) => this.describeSnapshot(s)), NextToken: page.nextToken };
  }

  private describeSnapshot(snapshot: ModelSnapshot): Snapshot {
    return {
      SnapshotId: snapshot.snapshotId,
      VolumeId: snapshot.volumeId,
      VolumeSize: snapshot.size,
      State: snapshot.state,
      StateMessage: snapshot.stateMessage,
      Progress: `${snapshot.progress}%`,
      StartTime: snapshot.startTime,
      OwnerId: this.accountId,
      Description: snapshot.description ?? '',
      Encrypted: snapshot.encrypted,
      KmsKeyId: snapshot.kmsKeyId,
      Tags: snapshot.tags.size > 0 ? tagList(snapshot.tags) : undefined,
    };
  }

  private createVolume(input: CreateVolumeCommandInput): Omit<CreateVolumeCommandOutput, '$metadata'> {
    const { ClientToken, DryRun: _dryRun, ...params } = input;
    // EC2 remembers a client token (for RunInstances "at least 24 hours after the termination"; the
    // model never forgets): the same token with the same parameters succeeds "without performing any
    // further actions" and answers the original volume, even one deleted since (then the original
    // answer, 'creating'); the same token with other parameters is IdempotentParameterMismatch.
    // https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html
    if (ClientToken !== undefined) {
      if (ClientToken.length > 64) throw invalidParameter('The client token must be at most 64 characters long.');
      const earlier = this.clientTokens.get(ClientToken);
      if (earlier) {
        if (earlier.params !== stableJson(params)) {
          throw ec2Error('IdempotentParameterMismatch', `The client token '${ClientToken}' was already used with different parameters.`);
        }
        const volume = this.volumesById.get(earlier.volumeId);
        return volume ? this.describeVolume(volume) : earlier.response;
      }
    }
    if (input.MultiAttachEnabled) throw new Error('Ec2Model: MultiAttachEnabled is not modelled');
    if (!input.AvailabilityZone) {
      if (input.AvailabilityZoneId) throw new Error('Ec2Model: AvailabilityZoneId is not modelled; use AvailabilityZone');
      throw missingParameter('The request must contain the parameter AvailabilityZone');
    }
    if (!this.availabilityZones.includes(input.AvailabilityZone)) {
      throw invalidParameter(`Invalid availability zone: [${input.AvailabilityZone}]`);
    }
    const type = input.VolumeType ?? 'gp2';
    if (!(type in SIZE_LIMITS)) throw invalidParameter(`Value (${type}) for parameter volumeType is invalid.`);
    let snapshot: ModelSnapshot | undefined;
    if (input.SnapshotId !== undefined) {
      if (!ID_PATTERN.snap.test(input.SnapshotId)) throw ec2Error('InvalidSnapshotID.Malformed', `Invalid id: "${input.SnapshotId}" (expecting "snap-...")`);
      snapshot = this.snapshots.get(input.SnapshotId);
      if (!snapshot) throw ec2Error('InvalidSnapshot.NotFound', `The snapshot '${input.SnapshotId}' does not exist.`);
      // A volume may be created from a snapshot only once it is completed (EC2 API Reference, CreateVolume).
      if (snapshot.state !== 'completed') throw ec2Error('IncorrectState', `Snapshot is in invalid state - ${snapshot.state}`);
    }
    if (input.Size === undefined && !snapshot) throw missingParameter('The request must contain the parameter size or snapshotId');
    const size = input.Size ?? snapshot!.size;
    if (snapshot && size < snapshot.size) {
      throw invalidParameter(`Volume of ${size}GiB is too small; the snapshot ${snapshot.snapshotId} needs at least ${snapshot.size}GiB.`);
    }
    const performance = checkVolumeConfig(type, size, input.Iops, input.Throughput);
    if (input.KmsKeyId !== undefined && !input.Encrypted && !snapshot?.encrypted) {
      throw ec2Error('InvalidParameterDependency', 'The parameter KmsKeyId requires the parameter Encrypted to be set.');
    }
    const tags = this.tagsFromSpecifications(input.TagSpecifications);
    if (input.DryRun) throw dryRun();

    const encrypted = Boolean(input.Encrypted) || Boolean(snapshot?.encrypted);
    const kmsKey = input.KmsKeyId ?? snapshot?.kmsKeyId;
    const volume: ModelVolume = {
      volumeId: this.newId('vol'),
      seq: this.seq++,
      az: input.AvailabilityZone,
      size,
      type: type as VolumeType,
      ...performance,
      encrypted,
      kmsKeyId: !encrypted ? undefined : kmsKey ? this.kmsKeyArn(kmsKey) : this.defaultKmsKeyArn(),
      snapshotId: snapshot?.snapshotId ?? '',
      state: 'creating',
      createTime: new Date(this.now()),
      tags,
      content: snapshot?.content,
    };
    this.register(volume);
    const keyIsUnknown = kmsKey !== undefined && !this.kmsKeyKnown(kmsKey);
    this.track(
      this.delay(this.createLatencyMs).then(() => {
        if (volume.state !== 'creating' || this.volumesById.get(volume.volumeId) !== volume) return;
        if (!keyIsUnknown) volume.state = 'available';
        else if (this.unknownKmsKeyOutcome === 'error') volume.state = 'error';
        else this.volumesById.delete(volume.volumeId);
      }),
    );
    const response = this.describeVolume(volume);
    if (ClientToken !== undefined) this.clientTokens.set(ClientToken, { params: stableJson(params), volumeId: volume.volumeId, response });
    return response;
  }

  private describeVolumes(input: DescribeVolumesCommandInput): Omit<DescribeVolumesCommandOutput, '$metadata'> {
    const filters = input.Filters ?? [];
    checkFilterNames(filters, VOLUME_FILTERS);
    // Only the volumes an indexed filter names can match it (a fleet run describes 8 000 volumes by id, by tag, by instance).
    let volumes: ModelVolume[];
    if (input.VolumeIds && input.VolumeIds.length > 0) {
      for (const id of input.VolumeIds) this.checkId('vol', id);
      const missing = input.VolumeIds.filter((id) => !this.volumesById.has(id));
      if (missing.length === 1) throw ec2Error('InvalidVolume.NotFound', `The volume '${missing[0]}' does not exist.`);
      if (missing.length > 1) throw ec2Error('InvalidVolume.NotFound', `The volumes '${missing.join(', ')}' do not exist.`);
      volumes = [...new Set(input.VolumeIds)].map((id) => this.volumesById.get(id)!).sort((a, b) => a.seq - b.seq);
    } else volumes = this.candidates(filters) ?? [...this.volumesById.values()];
    if (this.tagLagMs > 0) volumes = volumes.map((volume) => ({ ...volume, tags: this.visibleTags(volume) }));
    volumes = volumes.filter((volume) => matchesFilters(filters, (name) => volumeFilterValues(volume, name)));
    const page = paginate(volumes, (volume) => volume.seq, {
      maxResults: input.MaxResults,
      nextToken: input.NextToken,
      min: 5,
      max: 500,
      idsGiven: Boolean(input.VolumeIds?.length),
      idsParameter: 'volumeIds',
    });
    return { Volumes: page.items.map((volume) => this.describeVolume(volume)), NextToken: page.nextToken };
  }

  private attachVolume(input: AttachVolumeCommandInput): Omit<AttachVolumeCommandOutput, '$metadata'> {
    if (!input.Device) throw missingParameter('The request must contain the parameter device');
    if (!input.InstanceId) throw missingParameter('The request must contain the parameter instanceId');
    if (!input.VolumeId) throw missingParameter('The request must contain the parameter volumeId');
    const volume = this.findVolume(input.VolumeId);
    const instance = this.findInstance(input.InstanceId);
    if (!DEVICE_PATTERN.test(input.Device)) {
      throw invalidParameter(`Value (${input.Device}) for parameter device is invalid. ${input.Device} is not a valid EBS device name.`);
    }
    if (volume.attachment) throw ec2Error('VolumeInUse', `${volume.volumeId} is already attached to an instance`);
    if (volume.state !== 'available') throw ec2Error('IncorrectState', `${volume.volumeId} is not 'available'.`);
    if (instance.state !== 'running' && instance.state !== 'stopped') {
      throw ec2Error('IncorrectInstanceState', `Instance '${instance.instanceId}' is not 'running'.`);
    }
    if (volume.az !== instance.az) {
      throw ec2Error('InvalidVolume.ZoneMismatch', `The volume '${volume.volumeId}' is not in the same availability zone as instance '${instance.instanceId}'`);
    }
    if (this.attachmentAt(instance.instanceId, input.Device)) throw invalidParameter(`Attachment point ${input.Device} is already in use`);
    const attachedCount = this.volumesOn(instance.instanceId).length;
    if (attachedCount >= this.maxVolumesPerInstance) throw ec2Error('AttachmentLimitExceeded', 'Volume limit exceeded');
    const limit = instance.instanceType !== undefined ? attachmentLimitOf(INSTANCE_TYPES[instance.instanceType]!) : undefined;
    if (limit) {
      const others = limit.kind === 'shared' ? instance.networkInterfaces + limit.instanceStore : 0;
      if (attachedCount + others >= limit.maximum) throw ec2Error('AttachmentLimitExceeded', 'Volume limit exceeded');
    }
    if (input.DryRun) throw dryRun();

    const attachment: ModelAttachment = {
      instanceId: instance.instanceId,
      device: input.Device,
      state: 'attaching',
      attachTime: new Date(this.now()),
      deleteOnTermination: false,
    };
    volume.state = 'in-use';
    this.setAttachment(volume, attachment);
    this.track(this.completeAttach(volume, attachment));
    return attachmentOutput(volume.volumeId, attachment);
  }

  private detachVolume(input: DetachVolumeCommandInput): Omit<DetachVolumeCommandOutput, '$metadata'> {
    if (!input.VolumeId) throw missingParameter('The request must contain the parameter volumeId');
    // AWS makes InstanceId optional (API reference, DetachVolume); some EC2-compatible endpoints require it.
    if (this.requireDetachInstanceId && !input.InstanceId) throw missingParameter('The request must contain the parameter instanceId');
    const volume = this.findVolume(input.VolumeId);
    if (input.InstanceId !== undefined) this.findInstance(input.InstanceId);
    const attachment = volume.attachment;
    if (!attachment) throw ec2Error('IncorrectState', `Volume '${volume.volumeId}' is in the '${volume.state}' state.`);
    if ((input.InstanceId !== undefined && input.InstanceId !== attachment.instanceId) || (input.Device !== undefined && input.Device !== attachment.device)) {
      throw ec2Error('InvalidAttachment.NotFound', `The volume '${volume.volumeId}' is not attached to instance '${input.InstanceId ?? attachment.instanceId}' at ${input.Device ?? attachment.device}.`);
    }
    if (input.DryRun) throw dryRun();
    if (attachment.state === 'detaching') {
      if (input.Force) attachment.forced = true;
      if (input.Force && attachment.stalled) this.track(this.finishDetach(volume, attachment));
    } else {
      void this.startDetach(volume, attachment, { force: Boolean(input.Force), terminating: false });
    }
    return attachmentOutput(volume.volumeId, attachment);
  }

  private deleteVolume(input: DeleteVolumeCommandInput): object {
    if (!input.VolumeId) throw missingParameter('The request must contain the parameter volumeId');
    const volume = this.findVolume(input.VolumeId);
    if (volume.attachment) throw ec2Error('VolumeInUse', `Volume ${volume.volumeId} is currently attached to ${volume.attachment.instanceId}`);
    if (volume.state !== 'available' && volume.state !== 'error') {
      throw ec2Error('IncorrectState', `The volume '${volume.volumeId}' is '${volume.state}'.`);
    }
    if (input.DryRun) throw dryRun();
    this.volumesById.delete(volume.volumeId);
    return {};
  }

  private modifyVolume(input: ModifyVolumeCommandInput): Omit<ModifyVolumeCommandOutput, '$metadata'> {
    if (!input.VolumeId) throw missingParameter('The request must contain the parameter volumeId');
    const volume = this.findVolume(input.VolumeId);
    if (volume.state !== 'available' && volume.state !== 'in-use') {
      throw ec2Error('IncorrectState', `The volume '${volume.volumeId}' is '${volume.state}'.`);
    }
    if (input.MultiAttachEnabled) throw new Error('Ec2Model: MultiAttachEnabled is not modelled');
    const size = input.Size ?? volume.size;
    if (size < volume.size) throw invalidParameter(`New size cannot be smaller than existing size (${volume.size}GiB).`);
    const type = input.VolumeType ?? volume.type;
    if (!(type in SIZE_LIMITS)) throw invalidParameter(`Value (${type}) for parameter volumeType is invalid.`);
    const keepsType = type === volume.type;
    const performance = checkVolumeConfig(
      type,
      size,
      input.Iops ?? (keepsType && (type === 'io1' || type === 'io2' || type === 'gp3') ? volume.iops : undefined),
      input.Throughput ?? (keepsType && type === 'gp3' ? volume.throughput : undefined),
    );
    // The rate rules (ModifyVolume, API reference, read 2026-12-06): "you must wait for that modification to
    // reach the completed state before you can initiate another modification for the same volume. You can
    // modify a volume up to four times within a rolling 24-hour period". The error codes are the model's
    // choice: EC2's error list names IncorrectModificationState for a volume being modified; the 24-hour
    // limit's own code is not documented for EC2 (WorkspacesInstances calls it VolumeModificationRateExceeded).
    const history = this.modifications.get(volume.volumeId) ?? [];
    const open = history.find((m) => m.ModificationState !== 'completed' && m.ModificationState !== 'failed');
    if (open) {
      throw ec2Error('IncorrectModificationState', `Cannot modify volume ${volume.volumeId}: its modification started at ${open.StartTime?.toISOString()} is '${open.ModificationState}', not completed.`);
    }
    const dayAgo = this.now() - MODIFICATION_WINDOW_MS;
    const recent = history.filter((m) => (m.StartTime?.getTime() ?? 0) > dayAgo);
    if (recent.length >= MODIFICATIONS_PER_WINDOW) {
      const next = new Date(recent[0]!.StartTime!.getTime() + MODIFICATION_WINDOW_MS);
      throw ec2Error('VolumeModificationRateExceeded', `You've reached the maximum modification rate per volume limit (${MODIFICATIONS_PER_WINDOW} in 24 hours). Wait until ${next.toISOString()} before modifying volume ${volume.volumeId} again.`);
    }
    if (input.DryRun) throw dryRun();
    const original = { size: volume.size, type: volume.type, iops: volume.iops, throughput: volume.throughput };
    Object.assign(volume, { size, type, iops: performance.iops, throughput: performance.throughput });
    const modification: VolumeModification = {
      VolumeId: volume.volumeId,
      ModificationState: 'modifying',
      StartTime: new Date(this.now()),
      Progress: 0,
      OriginalSize: original.size,
      OriginalVolumeType: original.type,
      OriginalIops: original.iops,
      OriginalThroughput: original.throughput,
      TargetSize: size,
      TargetVolumeType: type,
      TargetIops: performance.iops,
      TargetThroughput: performance.throughput,
    };
    this.modifications.set(volume.volumeId, [...history, modification]);
    // modifying → optimizing (the new size usable; onOptimizing) → completed, with the model's latencies.
    void this.track(
      this.delay(this.modifyLatencyMs).then(async () => {
        modification.ModificationState = 'optimizing';
        modification.Progress = 10;
        try {
          await this.onOptimizing?.(volume.volumeId, size);
        } catch (err) {
          this.hookErrors.push(err as Error);
        }
        await this.delay(this.optimizeLatencyMs);
        modification.ModificationState = 'completed';
        modification.Progress = 100;
        modification.EndTime = new Date(this.now());
      }),
    );
    return { VolumeModification: { ...modification } };
  }

  /** The modifications of the volumes asked for (VolumeIds), or of every volume; only the VolumeIds parameter is modelled. */
  private describeVolumesModifications(input: DescribeVolumesModificationsCommandInput): Omit<DescribeVolumesModificationsCommandOutput, '$metadata'> {
    if (input.Filters?.length) throw new Error('Ec2Model: DescribeVolumesModifications filters are not modelled');
    const ids = input.VolumeIds ?? [...this.modifications.keys()];
    for (const id of ids) {
      this.findVolume(id);
      // A volume never modified: EC2 answers NotFound (aws-ebs-csi-driver, pkg/cloud: isAWSErrorModificationNotFound).
      if (!this.modifications.has(id)) throw ec2Error('InvalidVolumeModification.NotFound', `Modification for volume '${id}' does not exist.`);
    }
    return { VolumesModifications: ids.flatMap((id) => (this.modifications.get(id) ?? []).map((m) => ({ ...m }))) };
  }

  private createTags(input: CreateTagsCommandInput): object {
    const resources = input.Resources ?? [];
    if (resources.length === 0) throw missingParameter('The request must contain the parameter resourceIdSet');
    if (!input.Tags || input.Tags.length === 0) throw missingParameter('The request must contain the parameter tagSet');
    const tags = checkTags(input.Tags);
    const targets = resources.map((id) => this.taggableForApi(id));
    for (const target of targets) {
      const keys = new Set([...target.keys(), ...tags.keys()]);
      if (keys.size > MAX_TAGS) throw ec2Error('TagLimitExceeded', 'The maximum number of Tags for a resource has been reached.');
    }
    if (input.DryRun) throw dryRun();
    this.logTags(resources);
    for (const target of targets) for (const [key, value] of tags) target.set(key, value);
    return {};
  }

  private deleteTags(input: DeleteTagsCommandInput): object {
    const resources = input.Resources ?? [];
    if (resources.length === 0) throw missingParameter('The request must contain the parameter resourceIdSet');
    const targets = resources.map((id) => this.taggableForApi(id));
    if (input.DryRun) throw dryRun();
    this.logTags(resources);
    for (const target of targets) {
      if (!input.Tags) {
        target.clear();
        continue;
      }
      for (const tag of input.Tags) {
        if (tag.Key === undefined) continue;
        if (tag.Value === undefined || target.get(tag.Key) === tag.Value) target.delete(tag.Key);
      }
    }
    return {};
  }

  private describeInstances(input: DescribeInstancesCommandInput): Omit<DescribeInstancesCommandOutput, '$metadata'> {
    const filters = input.Filters ?? [];
    checkFilterNames(filters, INSTANCE_FILTERS);
    let instances = [...this.instances.values()];
    if (input.InstanceIds && input.InstanceIds.length > 0) {
      for (const id of input.InstanceIds) this.checkId('i', id);
      const missing = input.InstanceIds.filter((id) => !this.instances.has(id));
      if (missing.length > 0) {
        throw ec2Error('InvalidInstanceID.NotFound', `The instance ID${missing.length > 1 ? 's' : ''} '${missing.join(', ')}' do${missing.length > 1 ? '' : 'es'} not exist`);
      }
      const wanted = new Set(input.InstanceIds);
      instances = instances.filter((instance) => wanted.has(instance.instanceId));
    }
    instances = instances.filter((instance) => matchesFilters(filters, (name) => this.instanceFilterValues(instance, name)));
    const page = paginate(instances, (instance) => instance.seq, {
      maxResults: input.MaxResults,
      nextToken: input.NextToken,
      min: 5,
      max: 1000,
      idsGiven: Boolean(input.InstanceIds?.length),
      idsParameter: 'instanceIds',
    });
    return {
      Reservations: page.items.map((instance) => ({
        ReservationId: instance.reservationId,
        OwnerId: this.accountId,
        Instances: [this.describeInstance(instance)],
      })),
      NextToken: page.nextToken,
    };
  }

  private describeTags(input: DescribeTagsCommandInput): Omit<DescribeTagsCommandOutput, '$metadata'> {
    const filters = input.Filters ?? [];
    checkFilterNames(filters, TAG_FILTERS);
    const all: (TagDescription & { position: number })[] = [];
    const add = (ResourceId: string, ResourceType: 'volume' | 'instance', tags: Map<string, string>) => {
      for (const [Key, Value] of tags) all.push({ ResourceId, ResourceType, Key, Value, position: all.length });
    };
    for (const instance of this.instances.values()) add(instance.instanceId, 'instance', instance.tags);
    for (const volume of this.volumesById.values()) add(volume.volumeId, 'volume', volume.tags);
    const matching = all.filter((tag) =>
      matchesFilters(filters, (name) => {
        if (name === 'key') return [tag.Key!];
        if (name === 'value') return [tag.Value!];
        if (name === 'resource-id') return [tag.ResourceId!];
        if (name === 'resource-type') return [tag.ResourceType!];
        const resource = tag.ResourceType === 'volume' ? this.volumesById.get(tag.ResourceId!)?.tags : this.instances.get(tag.ResourceId!)?.tags;
        return tagFilterValues(name, resource ?? new Map()) ?? [];
      }),
    );
    const page = paginate(matching, (tag) => tag.position, {
      maxResults: input.MaxResults,
      nextToken: input.NextToken,
      min: 5,
      max: 1000,
      idsGiven: false,
      idsParameter: '',
    });
    return { Tags: page.items.map(({ position: _position, ...tag }) => tag), NextToken: page.nextToken };
  }

  // ---- attachment state machine ----

  private async completeAttach(volume: ModelVolume, attachment: ModelAttachment): Promise<void> {
    await this.delay(this.attachLatency?.() ?? this.attachLatencyMs);
    if (volume.attachment !== attachment || attachment.state !== 'attaching') return;
    if (this.faults.stuckAttaching.has(volume.volumeId)) return;
    if (this.onAttached) {
      attachment.attachHook = this.runHook(this.onAttached, volume, attachment);
      if (!(await attachment.attachHook)) return;
    }
    if (volume.attachment === attachment && attachment.state === 'attaching') {
      attachment.state = 'attached';
      attachment.attachedAt = this.now();
    }
  }

  private startDetach(volume: ModelVolume, attachment: ModelAttachment, how: { force: boolean; terminating: boolean }): Promise<void> {
    attachment.state = 'detaching';
    attachment.forced = how.force;
    attachment.terminating = how.terminating;
    return this.track(
      this.delay(this.detachLatency?.() ?? this.detachLatencyMs).then(() => {
        if (this.faults.stuckDetaching.has(volume.volumeId) && !attachment.forced) {
          attachment.stalled = true;
          return;
        }
        return this.finishDetach(volume, attachment);
      }),
    );
  }

  private async finishDetach(volume: ModelVolume, attachment: ModelAttachment): Promise<void> {
    attachment.stalled = false;
    if (attachment.attachHook) {
      const attached = await attachment.attachHook;
      if (attached && this.onDetached) await this.runHook(this.onDetached, volume, attachment);
    }
    if (volume.attachment !== attachment) return;
    this.setAttachment(volume, undefined);
    if (attachment.terminating && attachment.deleteOnTermination) this.volumesById.delete(volume.volumeId);
    else volume.state = 'available';
  }

  /** Runs a hook; true when it returned, false (error kept) when it threw. */
  private async runHook(hook: NonNullable<Ec2Model['onAttached']>, volume: ModelVolume, attachment: ModelAttachment): Promise<boolean> {
    try {
      await hook(volume.volumeId, attachment.device, attachment.instanceId);
      return true;
    } catch (error) {
      this.hookErrors.push(error instanceof Error ? error : new Error(String(error)));
      return false;
    }
  }

  // ---- helpers ----

  /**
   * The volumes that can match `filters`, in creation order, from the smallest index a filter
   * narrows to (volume-id, attachment.instance-id, or tag:<key> with values without wildcards
   * while tags show at once);
   * undefined when no filter is indexed. The filters are still applied to each one: this only
   * skips volumes that cannot match, and the order is volumesById's (creation, i.e. seq).
   */
  private candidates(filters: readonly Filter[]): ModelVolume[] | undefined {
    let best: Iterable<ModelVolume>[] | undefined;
    let bestSize = Infinity;
    for (const filter of filters) {
      const values = filter.Values ?? [];
      if (values.some((v) => /[*?\\]/.test(v))) continue;
      const name = filter.Name ?? '';
      let sources: Iterable<ModelVolume>[];
      if (name === 'volume-id') sources = [values.flatMap((id) => this.volumesById.get(id) ?? [])];
      else if (name === 'attachment.instance-id') sources = values.flatMap((id) => this.attachedTo.get(id) ?? []);
      // The tag index has the tags as they are now; with tagLagMs a reader sees older ones, so tag filters narrow nothing then.
      else if (name.startsWith('tag:') && name.length > 4 && this.tagLagMs <= 0) {
        const byValue = this.volumesByTag.get(name.slice(4));
        sources = values.flatMap((value) => byValue?.get(value) ?? []);
      } else continue;
      const size = sources.reduce((n, source) => n + (source instanceof Set ? source.size : (source as ModelVolume[]).length), 0);
      if (size < bestSize) {
        best = sources;
        bestSize = size;
      }
    }
    if (!best) return undefined;
    const found = new Set<ModelVolume>();
    for (const source of best) for (const volume of source) if (this.volumesById.get(volume.volumeId) === volume) found.add(volume);
    return [...found].sort((a, b) => a.seq - b.seq);
  }

  /** Adds a new volume, its tags indexed from now on. */
  private register(volume: ModelVolume): void {
    volume.tags = new IndexedTags(volume.tags, (key, old, value) => {
      if (old !== undefined) this.volumesByTag.get(key)?.get(old)?.delete(volume);
      if (value === undefined) return;
      let byValue = this.volumesByTag.get(key);
      if (!byValue) this.volumesByTag.set(key, (byValue = new Map()));
      let set = byValue.get(value);
      if (!set) byValue.set(value, (set = new Set()));
      set.add(volume);
    });
    this.volumesById.set(volume.volumeId, volume);
  }

  /** Volumes with an attachment (any state) to this instance, from the index setAttachment keeps. */
  private volumesOn(instanceId: string): ModelVolume[] {
    return [...(this.attachedTo.get(instanceId) ?? [])].sort((a, b) => a.seq - b.seq);
  }

  private setAttachment(volume: ModelVolume, attachment: ModelAttachment | undefined): void {
    if (volume.attachment) this.attachedTo.get(volume.attachment.instanceId)?.delete(volume);
    volume.attachment = attachment;
    if (attachment) {
      const set = this.attachedTo.get(attachment.instanceId) ?? new Set<ModelVolume>();
      set.add(volume);
      this.attachedTo.set(attachment.instanceId, set);
    }
  }

  /** Before a tag change (tagLagMs): the volumes' tags as they were until now. */
  private logTags(resourceIds: readonly string[]): void {
    if (this.tagLagMs <= 0) return;
    for (const id of resourceIds) {
      const volume = this.volumesById.get(id);
      if (volume) (volume.tagLog ??= []).push({ until: this.now(), tags: new Map(volume.tags) });
    }
  }

  /** The tags a reader sees now: as they were tagLagMs ago. */
  private visibleTags(volume: ModelVolume): Map<string, string> {
    const cutoff = this.now() - this.tagLagMs;
    const log = volume.tagLog;
    if (!log) return volume.tags;
    while (log.length > 0 && log[0]!.until <= cutoff) log.shift();
    return log[0]?.tags ?? volume.tags;
  }

  private describeVolume(volume: ModelVolume): Volume {
    const attachment = volume.attachment;
    const shown =
      attachment?.state === 'attached' && attachment.attachedAt !== undefined && this.now() - attachment.attachedAt < this.describeLagMs ? 'attaching' : attachment?.state;
    return {
      VolumeId: volume.volumeId,
      Size: volume.size,
      SnapshotId: volume.snapshotId,
      AvailabilityZone: volume.az,
      State: volume.state,
      CreateTime: volume.createTime,
      Attachments: attachment
        ? [
            {
              VolumeId: volume.volumeId,
              InstanceId: attachment.instanceId,
              Device: attachment.device,
              State: shown,
              AttachTime: attachment.attachTime,
              DeleteOnTermination: attachment.deleteOnTermination,
            },
          ]
        : [],
      Encrypted: volume.encrypted,
      KmsKeyId: volume.kmsKeyId,
      VolumeType: volume.type,
      Iops: volume.iops,
      Throughput: volume.throughput,
      Tags: volume.tags.size > 0 ? tagList(volume.tags) : undefined,
      MultiAttachEnabled: false,
    };
  }

  /**
   * DescribeInstanceTypes by InstanceTypes (the only way berth asks): the types of INSTANCE_TYPES;
   * an unknown one fails the call with InvalidInstanceType, as EC2 answers for a name it does not
   * offer. Filters are not modelled.
   */
  private describeInstanceTypes(input: DescribeInstanceTypesCommandInput): Omit<DescribeInstanceTypesCommandOutput, '$metadata'> {
    if (input.Filters?.length) throw new Error('Ec2Model: DescribeInstanceTypes filters are not modelled');
    const wanted = input.InstanceTypes ?? Object.keys(INSTANCE_TYPES);
    const unknown = wanted.filter((t) => !INSTANCE_TYPES[t]);
    if (unknown.length > 0) throw ec2Error('InvalidInstanceType', `The following supplied instance types do not exist: [${unknown.join(', ')}]`);
    return { InstanceTypes: wanted.map((t) => structuredClone(INSTANCE_TYPES[t]!)) };
  }

  private describeInstance(instance: ModelInstance): Instance {
    const attached = this.volumesOn(instance.instanceId);
    return {
      InstanceId: instance.instanceId,
      InstanceType: (instance.instanceType ?? 'm6i.large') as Instance['InstanceType'],
      State: { Code: STATE_CODES[instance.state], Name: instance.state },
      Placement: { AvailabilityZone: instance.az, Tenancy: 'default' },
      LaunchTime: instance.launchTime,
      Tags: instance.tags.size > 0 ? tagList(instance.tags) : undefined,
      BlockDeviceMappings: attached.map((volume) => ({
        DeviceName: volume.attachment!.device,
        Ebs: {
          VolumeId: volume.volumeId,
          Status: volume.attachment!.state,
          AttachTime: volume.attachment!.attachTime,
          DeleteOnTermination: volume.attachment!.deleteOnTermination,
        },
      })),
    };
  }

  private instanceFilterValues(instance: ModelInstance, name: string): string[] {
    const attached = () => this.volumesOn(instance.instanceId);
    switch (name) {
      case 'instance-id':
        return [instance.instanceId];
      case 'instance-state-name':
        return [instance.state];
      case 'availability-zone':
        return [instance.az];
      case 'block-device-mapping.volume-id':
        return attached().map((volume) => volume.volumeId);
      case 'block-device-mapping.device-name':
        return attached().map((volume) => volume.attachment!.device);
      case 'block-device-mapping.status':
        return attached().map((volume) => volume.attachment!.state);
      default:
        return tagFilterValues(name, instance.tags) ?? [];
    }
  }

  private tagsFromSpecifications(specifications: readonly TagSpecification[] | undefined): Map<string, string> {
    const tags = new Map<string, string>();
    for (const specification of specifications ?? []) {
      if (specification.ResourceType !== 'volume') {
        throw invalidParameter(`'${specification.ResourceType}' is not a valid taggable resource type for this operation.`);
      }
      for (const [key, value] of checkTags(specification.Tags ?? [])) tags.set(key, value);
    }
    if (tags.size > MAX_TAGS) throw ec2Error('TagLimitExceeded', 'The maximum number of Tags for a resource has been reached.');
    return tags;
  }

  private taggableForApi(id: string): Map<string, string> {
    if (id.startsWith('vol-')) return this.findVolume(id).tags;
    if (id.startsWith('i-')) return this.findInstance(id).tags;
    if (id.startsWith('snap-')) {
      const snapshot = this.snapshots.get(id);
      if (!snapshot) throw ec2Error('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`);
      return snapshot.tags;
    }
    throw ec2Error('InvalidID', `The ID '${id}' is not valid`);
  }

  private taggable(id: string): Map<string, string> {
    const tags = this.volumesById.get(id)?.tags ?? this.instances.get(id)?.tags;
    if (!tags) throw new Error(`Ec2Model: no volume or instance ${id}`);
    return tags;
  }

  private findVolume(id: string): ModelVolume {
    this.checkId('vol', id);
    const volume = this.volumesById.get(id);
    if (!volume) throw ec2Error('InvalidVolume.NotFound', `The volume '${id}' does not exist.`);
    return volume;
  }

  private findInstance(id: string): ModelInstance {
    this.checkId('i', id);
    const instance = this.instances.get(id);
    if (!instance) throw ec2Error('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    return instance;
  }

  private checkId(kind: 'vol' | 'i', id: string): void {
    if (ID_PATTERN[kind].test(id)) return;
    throw ec2Error(kind === 'vol' ? 'InvalidVolumeID.Malformed' : 'InvalidInstanceID.Malformed', `Invalid id: "${id}" (expecting "${kind}-...")`);
  }

  private checkAz(az: string): void {
    if (!this.availabilityZones.includes(az)) throw new Error(`Ec2Model: ${az} is not an AZ of ${this.region} (${this.availabilityZones.join(', ')})`);
  }

  private attachmentAt(instanceId: string, device: string): ModelAttachment | undefined {
    for (const volume of this.volumesOn(instanceId)) {
      if (volume.attachment?.device === device) return volume.attachment;
    }
    return undefined;
  }

  private kmsKeyKnown(key: string): boolean {
    if (this.faults.unknownKmsKeys.has(key)) return false;
    return this.knownKmsKeys === undefined || this.knownKmsKeys.has(key);
  }

  /** EC2 reports the key as a key ARN whatever form was given (aliases resolve to a fixed key here). */
  private kmsKeyArn(key: string): string {
    if (/^arn:aws[\w-]*:kms:[^:]+:\d{12}:key\//.test(key)) return key;
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(key)) return `arn:aws:kms:${this.region}:${this.accountId}:key/${key}`;
    return `arn:aws:kms:${this.region}:${this.accountId}:key/${uuidFrom(key)}`;
  }

  private defaultKmsKeyArn(): string {
    return this.kmsKeyArn('alias/aws/ebs');
  }

  private newId(prefix: 'vol' | 'i' | 'snap' | 'r'): string {
    if (this.random) {
      let hex = '';
      while (hex.length < 17) hex += Math.floor(this.random() * 0x1_0000_0000).toString(16).padStart(8, '0');
      return `${prefix}-${hex.slice(0, 17)}`;
    }
    return `${prefix}-${randomBytes(9).toString('hex').slice(0, 17)}`;
  }

  private metadata(): ResponseMetadata {
    return { httpStatusCode: 200, requestId: randomBytes(16).toString('hex'), attempts: 1, totalRetryDelay: 0 };
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.disposed) return;
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (!this.disposed) resolve();
      }, ms);
      this.timers.add(timer);
    });
  }

  private track<T>(work: Promise<T>): Promise<T> {
    const done = work.then(
      () => undefined,
      () => undefined,
    );
    this.pending.add(done);
    void done.then(() => this.pending.delete(done));
    return work;
  }
}

/**
 * The error the SDK's HTTP handler rejects an aborted request with (@smithy/node-http-handler,
 * buildAbortError): name 'AbortError', the signal's reason as `cause` when it is an Error.
 */
export function sdkAbortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return Object.assign(new Error('Request aborted', { cause: reason }), { name: 'AbortError' });
  return Object.assign(new Error(reason === undefined ? 'Request aborted' : String(reason)), { name: 'AbortError' });
}

export interface Ec2ModelOptions {
  /** Default 'eu-west-1'. */
  region?: string;
  /** Default `<region>a`, `b`, `c`. */
  availabilityZones?: readonly string[];
  accountId?: string;
  /** Time from AttachVolume to 'attached' (before onAttached). Default 50. */
  attachLatencyMs?: number;
  /** Time from DetachVolume to 'available' (before onDetached). Default: attachLatencyMs. */
  detachLatencyMs?: number;
  /** Draws each attachment's latency instead of attachLatencyMs (a distribution). */
  attachLatency?: () => number;
  /** Draws each detachment's latency instead of detachLatencyMs. */
  detachLatency?: () => number;
  /** How long DescribeVolumes still shows a completed attachment as 'attaching' (eventual consistency). Default 0. */
  describeLagMs?: number;
  /** How old the volume tags DescribeVolumes shows are (eventual consistency of CreateTags/DeleteTags). Default 0. */
  tagLagMs?: number;
  /** Time from CreateVolume ('creating') to 'available'. Default 10. */
  createLatencyMs?: number;
  /** Time from CreateSnapshot ('pending') to 'completed' (progress 50% half way). Default 20. */
  snapshotLatencyMs?: number;
  /** Delay before every call is answered. Default 0. */
  apiLatencyMs?: number;
  /** Time from ModifyVolume ('modifying') to 'optimizing'. Default: attachLatencyMs. */
  modifyLatencyMs?: number;
  /** Time from 'optimizing' to 'completed'. Default: 4 × modifyLatencyMs. */
  optimizeLatencyMs?: number;
  /** Token-bucket throttling with AWS's numbers. Default true. */
  throttling?: boolean;
  /** Override bucket sizes, e.g. for a bench. */
  buckets?: Partial<Record<BucketName, BucketLimit>>;
  /** Clock for buckets and timestamps. Default Date.now. */
  now?: () => number;
  /** Draws resource ids from this (a seeded generator makes a run repeatable). Default: node:crypto's randomBytes. */
  random?: () => number;
  /** KMS keys that exist; default: every key not in faults.unknownKmsKeys. */
  knownKmsKeys?: readonly string[];
  /** What happens to a volume created with an unknown KMS key: 'error' (default) or 'deleted'. */
  unknownKmsKeyOutcome?: 'error' | 'deleted';
  /** AttachmentLimitExceeded beyond this many volumes on one instance. Default unlimited (real Nitro: 27-127). */
  maxVolumesPerInstance?: number;
  /**
   * DetachVolume without InstanceId fails with MissingParameter, as on some
   * EC2-compatible endpoints (EC2 itself accepts it). Default false.
   */
  requireDetachInstanceId?: boolean;
}

export type BucketName = 'volumeMutating' | 'createVolume' | 'tags' | 'describeVolumes' | 'describeVolumesUnfiltered' | 'describeInstances' | 'describeTags' | 'modifyVolume' | 'createSnapshot' | 'describeSnapshots' | 'describeInstanceTypes';

/** One caller's calls of one command. */
export interface CallerCounts {
  calls: number;
  throttled: number;
  /** Answered without any error. */
  answered: number;
}
export interface BucketLimit {
  capacity: number;
  refillPerSecond: number;
}

/** What `volume()` returns: a copy, with tags as a record and the attachment if any. */
export interface VolumeView {
  volumeId: string;
  az: string;
  size: number;
  type: VolumeType;
  iops?: number;
  throughput?: number;
  encrypted: boolean;
  kmsKeyId?: string;
  snapshotId: string;
  state: VolumeState;
  createTime: Date;
  tags: Record<string, string>;
  attachment?: { instanceId: string; device: string; state: 'attaching' | 'attached' | 'detaching'; deleteOnTermination: boolean };
}

/** What `snapshot()` returns. */
export interface SnapshotView {
  snapshotId: string;
  volumeId: string;
  size: number;
  encrypted: boolean;
  kmsKeyId?: string;
  state: 'pending' | 'completed' | 'error';
  progress: number;
  startTime: Date;
  tags: Record<string, string>;
  content?: string;
}

export interface InstanceView {
  instanceId: string;
  az: string;
  state: InstanceStateName;
  tags: Record<string, string>;
}

/**
 * AWS, "Request throttling for the Amazon EC2 API" (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html):
 * a token bucket per action (or group) per account and Region; a request takes a token, one that
 * finds none fails with RequestLimitExceeded and takes nothing. Sizes as issue 23 lists them.
 */
export const DEFAULT_BUCKETS: Readonly<Record<BucketName, BucketLimit>> = {
  volumeMutating: { capacity: 50, refillPerSecond: 5 },
  createVolume: { capacity: 100, refillPerSecond: 5 },
  tags: { capacity: 100, refillPerSecond: 10 },
  describeVolumes: { capacity: 100, refillPerSecond: 20 },
  describeVolumesUnfiltered: { capacity: 50, refillPerSecond: 10 },
  describeInstances: { capacity: 100, refillPerSecond: 20 },
  describeTags: { capacity: 100, refillPerSecond: 20 },
  modifyVolume: { capacity: 50, refillPerSecond: 5 },
  // Like the other Describe actions (EC2's "Request throttling" page: non-mutating actions, 100 refill 20/s).
  describeInstanceTypes: { capacity: 100, refillPerSecond: 20 },
  // The model's choice (EC2 documents no per-action numbers for these): CreateVolume's numbers for
  // CreateSnapshot, the other Describe actions' for DescribeSnapshots.
  createSnapshot: { capacity: 100, refillPerSecond: 5 },
  describeSnapshots: { capacity: 100, refillPerSecond: 20 },
};

/** ModifyVolume's rate rule (API reference, read 2026-12-06): four modifications per volume in a rolling 24 hours. */
const MODIFICATIONS_PER_WINDOW = 4;
const MODIFICATION_WINDOW_MS = 24 * 3600_000;

const BUCKET_OF: Record<string, BucketName> = {
  AttachVolume: 'volumeMutating',
  DetachVolume: 'volumeMutating',
  DeleteVolume: 'volumeMutating',
  CreateVolume: 'createVolume',
  CreateTags: 'tags',
  DeleteTags: 'tags',
  DescribeVolumes: 'describeVolumes',
  DescribeInstances: 'describeInstances',
  DescribeTags: 'describeTags',
  ModifyVolume: 'modifyVolume',
  DescribeVolumesModifications: 'describeVolumes',
  DescribeInstanceTypes: 'describeInstanceTypes',
  CreateSnapshot: 'createSnapshot',
  DescribeSnapshots: 'describeSnapshots',
};

const SNAPSHOT_FILTERS = new Set(['snapshot-id', 'volume-id', 'status', 'owner-id', 'encrypted', 'volume-size', 'progress', 'tag-key', 'tag-value']);

function snapshotFilterValues(snapshot: ModelSnapshot, name: string, accountId: string): string[] {
  switch (name) {
    case 'snapshot-id':
      return [snapshot.snapshotId];
    case 'volume-id':
      return [snapshot.volumeId];
    case 'status':
      return [snapshot.state];
    case 'owner-id':
      return [accountId];
    case 'encrypted':
      return [String(snapshot.encrypted)];
    case 'volume-size':
      return [String(snapshot.size)];
    case 'progress':
      return [`${snapshot.progress}%`];
    default:
      return tagFilterValues(name, snapshot.tags) ?? [];
  }
}

function snapshotViewOf(snapshot: ModelSnapshot): SnapshotView {
  return {
    snapshotId: snapshot.snapshotId,
    volumeId: snapshot.volumeId,
    size: snapshot.size,
    encrypted: snapshot.encrypted,
    kmsKeyId: snapshot.kmsKeyId,
    state: snapshot.state,
    progress: snapshot.progress,
    startTime: snapshot.startTime,
    tags: Object.fromEntries(snapshot.tags),
    content: snapshot.content,
  };
}

const VOLUME_FILTERS = new Set([
  'volume-id',
  'status',
  'availability-zone',
  'size',
  'volume-type',
  'encrypted',
  'snapshot-id',
  'tag-key',
  'tag-value',
  'attachment.instance-id',
  'attachment.device',
  'attachment.status',
  'attachment.delete-on-termination',
]);
const INSTANCE_FILTERS = new Set([
  'instance-id',
  'instance-state-name',
  'availability-zone',
  'tag-key',
  'tag-value',
  'block-device-mapping.volume-id',
  'block-device-mapping.device-name',
  'block-device-mapping.status',
]);
const TAG_FILTERS = new Set(['key', 'value', 'resource-id', 'resource-type']);

const STATE_CODES: Record<InstanceStateName, number> = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
};

function volumeFilterValues(volume: ModelVolume, name: string): string[] {
  const attachment = volume.attachment;
  switch (name) {
    case 'volume-id':
      return [volume.volumeId];
    case 'status':
      return [volume.state];
    case 'availability-zone':
      return [volume.az];
    case 'size':
      return [String(volume.size)];
    case 'volume-type':
      return [volume.type];
    case 'encrypted':
      return [String(volume.encrypted)];
    case 'snapshot-id':
      return [volume.snapshotId];
    case 'attachment.instance-id':
      return attachment ? [attachment.instanceId] : [];
    case 'attachment.device':
      return attachment ? [attachment.device] : [];
    case 'attachment.status':
      return attachment ? [attachment.state] : [];
    case 'attachment.delete-on-termination':
      return attachment ? [String(attachment.deleteOnTermination)] : [];
    default:
      return tagFilterValues(name, volume.tags) ?? [];
  }
}

function attachmentOutput(volumeId: string, attachment: ModelAttachment): VolumeAttachment {
  return {
    VolumeId: volumeId,
    InstanceId: attachment.instanceId,
    Device: attachment.device,
    State: attachment.state,
    AttachTime: attachment.attachTime,
    DeleteOnTermination: attachment.deleteOnTermination,
  };
}

function viewOf(volume: ModelVolume): VolumeView {
  const attachment = volume.attachment;
  return {
    volumeId: volume.volumeId,
    az: volume.az,
    size: volume.size,
    type: volume.type,
    iops: volume.iops,
    throughput: volume.throughput,
    encrypted: volume.encrypted,
    kmsKeyId: volume.kmsKeyId,
    snapshotId: volume.snapshotId,
    state: volume.state,
    createTime: volume.createTime,
    tags: Object.fromEntries(volume.tags),
    attachment: attachment && {
      instanceId: attachment.instanceId,
      device: attachment.device,
      state: attachment.state,
      deleteOnTermination: attachment.deleteOnTermination,
    },
  };
}

const dryRun = () => ec2Error('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', { status: 412 });

/** JSON with sorted keys, so equal parameters compare equal whatever their key order. */
function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

function uuidFrom(text: string): string {
  const hex = createHash('sha256').update(text).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

interface ModelInstance {
  instanceId: string;
  reservationId: string;
  az: string;
  state: InstanceStateName;
  tags: Map<string, string>;
  launchTime: Date;
  seq: number;
  instanceType?: string;
  networkInterfaces: number;
}

interface ModelAttachment {
  instanceId: string;
  device: string;
  state: 'attaching' | 'attached' | 'detaching';
  attachTime: Date;
  deleteOnTermination: boolean;
  /** Settles true once onAttached returned (false if it threw). */
  attachHook?: Promise<boolean>;
  forced?: boolean;
  terminating?: boolean;
  /** A stuck detach waiting for Force. */
  stalled?: boolean;
  /** When it turned 'attached' (model clock), for describeLagMs. */
  attachedAt?: number;
}

interface ModelVolume {
  volumeId: string;
  seq: number;
  az: string;
  size: number;
  type: VolumeType;
  iops?: number;
  throughput?: number;
  encrypted: boolean;
  kmsKeyId?: string;
  snapshotId: string;
  state: VolumeState;
  createTime: Date;
  tags: Map<string, string>;
  /** Earlier tags and until when they held (tagLagMs), oldest first. */
  tagLog?: Array<{ until: number; tags: Map<string, string> }>;
  attachment?: ModelAttachment;
  /** The marker of the volume's data (writeContent). */
  content?: string;
}

interface ModelSnapshot {
  snapshotId: string;
  seq: number;
  volumeId: string;
  size: number;
  encrypted: boolean;
  kmsKeyId?: string;
  state: 'pending' | 'completed' | 'error';
  stateMessage?: string;
  progress: number;
  startTime: Date;
  description?: string;
  tags: Map<string, string>;
  content?: string;
}

/** A volume's tags that tell the model's tag index of every change (set, delete, clear). */
class IndexedTags extends Map<string, string> {
  private readonly changed: (key: string, old: string | undefined, value: string | undefined) => void;

  constructor(initial: ReadonlyMap<string, string>, changed: (key: string, old: string | undefined, value: string | undefined) => void) {
    super();
    this.changed = changed;
    for (const [key, value] of initial) this.set(key, value);
  }

  override set(key: string, value: string): this {
    this.changed(key, super.get(key), value);
    return super.set(key, value);
  }

  override delete(key: string): boolean {
    if (super.has(key)) this.changed(key, super.get(key), undefined);
    return super.delete(key);
  }

  override clear(): void {
    for (const [key, value] of this) this.changed(key, value, undefined);
    super.clear();
  }
}
