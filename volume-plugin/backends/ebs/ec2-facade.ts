import type { CreateVolumeCommandInput, EC2Client, Filter, Volume } from '@aws-sdk/client-ec2';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { BerthError, errorMessage, isBerthError, StillWaiting } from '../../../lib/errors.js';
import { Semaphore } from '../../../lib/semaphore.js';
import type { AttachmentSlots } from './attachment-slots.js';
import { AttachmentWaits } from './attachment-waits.js';
import { attachMetrics, type AttachMetrics } from './attach-metrics.js';
import { DeviceNames } from './device-names.js';
import { type Ec2Bucket, FleetSchedule } from './fleet-schedule.js';
import { AttachNotSent, ClientTokenSpent, codeOf, ec2Error, FailedVolumeDeleted, isDeviceInUse, isNotFound, isServerFault, isThrottled } from './ec2-errors.js';
import type { Ec2Port } from './ec2-port.js';
import { attachmentOf, type InstanceInfo, tagsOf, type Tags } from './ec2-shapes.js';
import { DEFAULT_EC2_TIMING, type Ec2Timing } from './ec2-timing.js';
import { MicroBatch } from './micro-batch.js';
import { Pacer, pause, RetryGate } from './pacer.js';
import type { ScheduleStore } from './schedule-store.js';
import { SdkEc2 } from './sdk-ec2.js';

// What other modules imported from here before the split; each has one home now.
export { DEVICE_NAMES } from './device-names.js';
export { ClientTokenSpent, ec2Error, FailedVolumeDeleted, isNotFound, isThrottled } from './ec2-errors.js';
export { type Attachment, attachmentOf, type InstanceInfo, tagsOf, type Tags } from './ec2-shapes.js';
export { DEFAULT_EC2_TIMING, type Ec2Timing } from './ec2-timing.js';

/**
 * What berth does with EC2, over the EC2 port (ec2-port.ts). Retries of failed calls are the
 * SDK's (adaptive retry mode, set on the client), except refusals for the account's budget and
 * server faults of the calls made here, which this module retries itself (sdk-ec2.ts): mutations
 * paced (pacer.ts, Pacer), reads and tags behind one retry gate (pacer.ts, RetryGate); or, where a
 * schedule store is set, each on its turn in the account's shared EC2 schedule (fleet-schedule.ts,
 * falling back to the pacer and the gate while the store fails). It composes
 * what the SDK does not, each piece in a module of its own: batched lookups (micro-batch.ts),
 * mutations paced at the share of EC2's bucket this agent learns (pacer.ts), device-name rotation (device-names.ts), attachment waits
 * (attachment-waits.ts), stuck-attachment recovery, a bound on concurrent mutations, and errors
 * that name what was being done (ec2-errors.ts).
 *
 * Every method takes the caller's signal and every EC2 call carries it, so a call whose caller has
 * gone stops at once. A call no single caller owns (a lookup batched for several callers, the idle
 * detach) carries a signal that never aborts and ends on the SDK's own bounds (request timeout,
 * retries); each caller of a batched lookup stops waiting for it on its own signal.
 */
export interface Ec2FacadeDeps {
  /** The EC2 port; or `client`, an EC2Client the facade wraps in SdkEc2. */
  ec2?: Ec2Port;
  client?: EC2Client;
  /** This instance: attachments are made to it and polled for it. */
  instanceId: string;
  /**
   * Concurrent AttachVolume/DetachVolume calls and waits (EC2's mutating bucket holds 50 and
   * refills 5 per second). No default here: the agent's is BERTH_ATTACH_CONCURRENCY (agent/config.ts).
   */
  maxConcurrentAttachments: number;
  timing?: Partial<Ec2Timing>;
  /**
   * Whether this host shows the volume's own block device now (the NVMe namespace whose serial is
   * its id): attachment waits look there first and ask EC2 only as a safety net (attachment-waits.ts).
   * Leave it out where the host cannot tell (Xen); the waits then poll EC2.
   */
  attachedHere?: (volumeId: string) => Promise<boolean>;
  logger?: Logger;
  // Attachment limits and attach/detach metrics (issue 22 items 2 and 4).
  /** This instance's attachment slots: an attach past the type's limit is refused before AttachVolume. */
  slots?: AttachmentSlots;
  /** Attach and detach latency, detach pending, slots used/limit (attach-metrics.ts). */
  registry?: Registry;
  /**
   * The fleet's shared EC2 schedule (schedule-store.ts; issue 23): where set, this agent takes its
   * turns on the account's buckets from it. Unset: it paces itself alone (pacer.ts).
   */
  scheduleStore?: ScheduleStore;
}

/**
 * The signal of an EC2 call no single caller owns: it never aborts. A new one per call: the SDK
 * listens on a call's signal while the call is under way (its retry loop races the signal), so
 * one signal shared by every such call collected a listener per call in flight (a hundred hosts'
 * lookups in the fleet simulation: MaxListenersExceededWarning), though none was leaked.
 */
const noCaller = (): AbortSignal => new AbortController().signal;

export class Ec2Facade {
  readonly timing: Ec2Timing;
  readonly port: Ec2Port;
  private readonly instanceId: string;
  private readonly log: Logger | undefined;
  private readonly mutations: Semaphore;
  private readonly pacer: Pacer;
  /** The account-aware retry of this agent's reads and tags (pacer.ts). */
  private readonly gate: RetryGate;
  private readonly names: DeviceNames;
  private readonly waits: AttachmentWaits;
  private readonly byId: MicroBatch<Volume>;
  private readonly byName = new Map<string, MicroBatch<Volume>>();
  private readonly byInstance: MicroBatch<InstanceInfo>;
  private readonly instanceCache = new Map<string, { at: number; info: InstanceInfo | undefined }>();
  readonly slots: AttachmentSlots | undefined;
  private readonly metrics: AttachMetrics | undefined;
  /** The account's shared EC2 schedule (fleet-schedule.ts), when a store is set. */
  readonly schedule: FleetSchedule | undefined;

  constructor(deps: Ec2FacadeDeps) {
    if (!deps.ec2 && !deps.client) throw new Error('Ec2Facade needs an EC2 port (ec2) or an EC2Client (client)');
    this.port = deps.ec2 ?? new SdkEc2(deps.client!);
    this.instanceId = deps.instanceId;
    this.log = deps.logger;
    this.slots = deps.slots;
    this.metrics = deps.registry ? attachMetrics(deps.registry, () => this.slots) : undefined;
    this.mutations = new Semaphore(deps.maxConcurrentAttachments);
    this.timing = { ...DEFAULT_EC2_TIMING, ...deps.timing };
    this.pacer = new Pacer({
      burst: this.timing.mutationBurst,
      perSecond: this.timing.mutationsPerSecond,
      backoff: this.timing.mutationBackoff,
      recovery: this.timing.mutationRecovery,
      maxGapMs: this.timing.maxMutationGapMs,
      initialWindow: this.timing.mutationInitialWindow,
    });
    this.schedule = deps.scheduleStore
      ? new FleetSchedule({ store: deps.scheduleStore, ...(deps.logger ? { logger: deps.logger } : {}), ...(deps.registry ? { registry: deps.registry } : {}) })
      : undefined;
    this.gate = new RetryGate({ firstMs: this.timing.readRetryFirstMs, maxMs: this.timing.readRetryMaxMs, refused: (err) => isThrottled(err) || isServerFault(err) });
    this.names = new DeviceNames(this.instanceId, async () =>
      (await this.volumesByTags({}, [{ Name: 'attachment.instance-id', Values: [this.instanceId] }])).flatMap((v) =>
        (v.Attachments ?? []).filter((a) => a.InstanceId === this.instanceId && a.Device).map((a) => a.Device!),
      ),
    );
    this.waits = new AttachmentWaits(this.timing, this.instanceId, (id, signal) => this.volume(id, signal), deps.attachedHere);
    // The volume-id filter, unlike VolumeIds, does not fail the whole call for one unknown id.
    this.byId = new MicroBatch(this.timing.batchWindowMs, async (ids) => {
      const out = new Map<string, Volume[]>();
      for (let i = 0; i < ids.length; i += 199) {
        for (const v of await this.volumesByTags({}, [{ Name: 'volume-id', Values: ids.slice(i, i + 199) }])) out.set(v.VolumeId!, [v]);
      }
      return out;
    });
    // The instance-id filter, unlike InstanceIds, does not fail the whole call for one unknown id.
    this.byInstance = new MicroBatch(this.timing.batchWindowMs, async (ids) => {
      const out = new Map<string, InstanceInfo[]>();
      for (let i = 0; i < ids.length; i += 199) {
        for (const info of await this.describeInstances(ids.slice(i, i + 199))) out.set(info.instanceId, [info]);
      }
      return out;
    });
  }

  /**
   * One AttachVolume/DetachVolume/DeleteVolume, paced (pacer.ts). A call EC2 refuses for the
   * account's budget (RequestLimitExceeded) or while browning out (a server fault) changed nothing
   * and is sent again, paced with a larger gap, until the caller's signal aborts or `deadline`
   * passes: an agent never gives up while the budget is merely slow (docs/design.md §6).
   */
  private async mutate<T>(call: () => Promise<T>, signal: AbortSignal | undefined, deadline: number, what: string): Promise<T> {
    // With the account's schedule, mutations always take a ticket (fleet-schedule.ts); without it, or while its store fails, the pacer.
    const scheduled = await this.onSchedule('mutating', call, signal, deadline, what, false);
    if (scheduled) return scheduled.value;
    for (let refused = 0; ; refused++) {
      await this.pacer.take(signal);
      const sentAt = Date.now();
      if (sentAt >= deadline) {
        this.pacer.done();
        throw new BerthError(
          'TIMEOUT',
          `${what}: still waiting for the account's EC2 budget when its time ran out (EC2 refused ${refused} tries; this agent sends ${this.pacer.rate.toFixed(2)} mutations/s now, sharing the account with the other hosts)`,
        );
      }
      try {
        const out = await call();
        this.pacer.succeeded();
        return out;
      } catch (err) {
        if (!(isThrottled(err) || isServerFault(err))) {
          this.pacer.done();
          throw err;
        }
        this.pacer.throttled(sentAt);
        if (signal?.aborted || Date.now() >= deadline) throw err;
        this.log?.debug({ err: codeOf(err), callsPerSecond: this.pacer.rate }, 'EC2 refused a mutation for the account\'s budget; sending it again, slower');
      }
    }
  }

  /**
   * A read or tag call (DescribeVolumes, DescribeInstances, CreateTags, DeleteTags) that EC2 refuses
   * for the account's budget, or while browning out, is tried again behind this agent's one
   * account-aware backoff (RetryGate: one call at a time tries while EC2 refuses, jittered, 1 s
   * doubling to 10 s) until the caller's signal aborts or `until`; the SDK does not retry these
   * refusals itself (sdk-ec2.ts). A Mount fails for throttling only when no retry within its
   * deadline could have won (docs/design.md §6).
   */
  private async untilAccepted<T>(bucket: Ec2Bucket, call: () => Promise<T>, signal: AbortSignal | undefined, until: number, what: string): Promise<T> {
    // With the account's schedule: straight while the bucket is not congested, with a ticket while it is (fleet-schedule.ts).
    if (this.schedule?.shared) {
      const scheduled = await this.onSchedule(bucket, call, signal, until, what, !(await this.schedule.congested(bucket)));
      if (scheduled) return scheduled.value;
    }
    return this.gate.run(call, signal, until);
  }

  /**
   * A call on the account's schedule (docs/design.md §6, "Sharing the account"): it waits for its
   * ticket's turn (unless `straight`: sent at once), and a refusal (RequestLimitExceeded, or a
   * server fault) cuts the bucket's rate for the whole fleet and takes a new ticket, until the
   * caller's signal or `deadline`. Undefined when the schedule's store failed, before or while
   * waiting: the caller then paces the call itself.
   */
  private async onSchedule<T>(bucket: Ec2Bucket, call: () => Promise<T>, signal: AbortSignal | undefined, deadline: number, what: string, straight: boolean): Promise<{ value: T } | undefined> {
    const schedule = this.schedule;
    if (!schedule) return undefined;
    for (let ticketed = !straight; ; ticketed = true) {
      if (ticketed && (await schedule.turn(bucket, signal, deadline, what)) === undefined) return undefined;
      const sentAt = Date.now();
      const seenCutAt = schedule.seenCut(bucket);
      try {
        return { value: await call() };
      } catch (err) {
        if (!(isThrottled(err) || isServerFault(err))) throw err;
        await schedule.refused(bucket, sentAt, seenCutAt);
        if (signal?.aborted || Date.now() >= deadline) throw err;
        this.log?.debug({ err: codeOf(err), bucket }, "EC2 refused a call for the account's budget; it takes a new turn in the account's schedule");
      }
    }
  }

  /**
   * One port call with the caller's signal, or one that never aborts (noCaller). A caller gone while
   * the call was in flight gets its own reason, not the SDK's AbortError.
   */
  private send<T>(call: (signal: AbortSignal) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    return call(signal ?? noCaller()).catch((err: unknown) => {
      signal?.throwIfAborted();
      throw err;
    });
  }

  /** Every volume carrying these tags (and matching the extra filters), all pages. */
  async volumesByTags(tags: Tags, extra: Filter[] = [], signal?: AbortSignal): Promise<Volume[]> {
    const Filters: Filter[] = [...Object.entries(tags).map(([k, v]) => ({ Name: `tag:${k}`, Values: [v] })), ...extra];
    const out: Volume[] = [];
    let NextToken: string | undefined;
    const until = Date.now() + this.timing.attachTimeoutMs;
    do {
      const input = { Filters, MaxResults: 500, ...(NextToken ? { NextToken } : {}) };
      const page = await this.untilAccepted('describeVolumes', () => this.send((s) => this.port.describeVolumes(input, s), signal), signal, until, `listing volumes tagged ${JSON.stringify(tags)}`).catch((err: unknown) => {
        throw ec2Error(err, `listing volumes tagged ${JSON.stringify(tags)}`);
      });
      out.push(...(page.Volumes ?? []));
      NextToken = page.NextToken;
    } while (NextToken);
    return out;
  }

  /**
   * One volume by id, or undefined when EC2 does not know it. Lookups that
   * arrive together (parallel attachment polls) share one DescribeVolumes.
   */
  async volume(volumeId: string, signal?: AbortSignal): Promise<Volume | undefined> {
    return (await this.byId.get(volumeId, signal))[0];
  }

  /**
   * Volumes whose tag `nameKey` is `name`, within the scope tags. Lookups
   * that arrive together (a boot reconcile's attaches) share one call.
   */
  async volumesNamed(scope: Tags, nameKey: string, name: string, signal?: AbortSignal): Promise<Volume[]> {
    const key = JSON.stringify([scope, nameKey]);
    let batch = this.byName.get(key);
    if (!batch) {
      batch = new MicroBatch(this.timing.batchWindowMs, async (names) => {
        const out = new Map<string, Volume[]>();
        for (let i = 0; i < names.length; i += 199) {
          for (const v of await this.volumesByTags(scope, [{ Name: `tag:${nameKey}`, Values: names.slice(i, i + 199) }])) {
            const n = tagsOf(v)[nameKey] ?? '';
            out.set(n, [...(out.get(n) ?? []), v]);
          }
        }
        return out;
      });
      this.byName.set(key, batch);
    }
    return batch.get(name, signal);
  }

  /**
   * CreateVolume, then waits until the volume is usable. Throws ClientTokenSpent when EC2 answers
   * for the token with an earlier volume that is gone (a replay), or refuses the token.
   */
  async createVolume(input: CreateVolumeCommandInput, what: string, signal?: AbortSignal): Promise<Volume> {
    const created = await this.send((s) => this.port.createVolume(input, s), signal).catch((err: unknown) => {
      if (codeOf(err) === 'IdempotentParameterMismatch') throw new ClientTokenSpent(`creating ${what}: EC2 said the ClientToken was used with other parameters`, { cause: err });
      throw ec2Error(err, `creating ${what}`);
    });
    const id = created.VolumeId!;
    const createdAt = created.CreateTime?.getTime() ?? Date.now();
    let wait = this.timing.firstPollMs;
    const deadline = Date.now() + this.timing.createTimeoutMs;
    for (let v: Volume = created; ; ) {
      const state = v.State;
      if (state === 'available' || state === 'in-use') return v;
      if (state === 'deleting' || state === 'deleted') throw new ClientTokenSpent(`creating ${what}: EC2 answered with ${id}, a volume that is ${state}`);
      if (state === 'error') {
        // EC2 checks KMS keys (and snapshots) after it answered: a broken volume must not keep the name.
        // Not the caller's signal: a caller gone must not leave a broken volume holding the name.
        await this.deleteVolume(id).catch((err: unknown) => this.log?.error({ volumeId: id, err: errorMessage(err) }, 'could not delete a volume EC2 failed to create'));
        throw new FailedVolumeDeleted(`creating ${what}: EC2 failed the new volume ${id} (state "error"; usually a KMS key berth cannot use, or a bad snapshot) and berth deleted it; check kmsKeyId/snapshotId and the instance role's KMS permissions`);
      }
      if (Date.now() > deadline) throw new BerthError('TIMEOUT', `creating ${what}: ${id} still "${state}" after ${this.timing.createTimeoutMs / 1000} s`);
      await pause(wait, signal);
      wait = Math.min(wait * this.timing.pollFactor, this.timing.maxPollMs);
      // Right after CreateVolume, DescribeVolumes may not know the id yet: keep waiting, but a
      // volume unknown long after its creation time is a deleted one EC2 answered the token with.
      const seen = await this.volume(id, signal);
      if (!seen && Date.now() - createdAt > this.timing.unknownAfterCreateMs) {
        throw new ClientTokenSpent(`creating ${what}: EC2 answered with ${id}, created ${new Date(createdAt).toISOString()}, which no longer exists`);
      }
      v = seen ?? v;
    }
  }

  async deleteVolume(volumeId: string, signal?: AbortSignal): Promise<void> {
    // DeleteVolume draws on the same bucket as AttachVolume/DetachVolume.
    await this.mutate(() => this.send((s) => this.port.deleteVolume({ VolumeId: volumeId }, s), signal), signal, Date.now() + this.timing.detachTimeoutMs, `deleting ${volumeId}`).catch((err: unknown) => {
      if (isNotFound(err)) return;
      throw ec2Error(err, `deleting ${volumeId}`);
    });
  }

  /** Sets tags on many resources in one call (EC2 allows it when the tags are the same). */
  async tag(resourceIds: string[], tags: Tags, signal?: AbortSignal): Promise<void> {
    if (resourceIds.length === 0 || Object.keys(tags).length === 0) return;
    for (let i = 0; i < resourceIds.length; i += 1000) {
      const Resources = resourceIds.slice(i, i + 1000);
      const input = { Resources, Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) };
      await this.untilAccepted('tags', () => this.send((s) => this.port.createTags(input, s), signal), signal, Date.now() + this.timing.attachTimeoutMs, `tagging ${Resources.join(', ')}`).catch((err: unknown) => {
        throw ec2Error(err, `tagging ${Resources.join(', ')}`);
      });
    }
  }

  async untag(resourceIds: string[], keys: string[], signal?: AbortSignal): Promise<void> {
    if (resourceIds.length === 0 || keys.length === 0) return;
    const input = { Resources: resourceIds, Tags: keys.map((Key) => ({ Key })) };
    await this.untilAccepted('tags', () => this.send((s) => this.port.deleteTags(input, s), signal), signal, Date.now() + this.timing.attachTimeoutMs, `removing tags ${keys.join(', ')} from ${resourceIds.join(', ')}`).catch((err: unknown) => {
      throw ec2Error(err, `removing tags ${keys.join(', ')} from ${resourceIds.join(', ')}`);
    });
  }

  /**
   * What EC2 says of these instances; an instance it no longer knows is absent (as good as
   * terminated). Lookups made together share one DescribeInstances, and answers are reused for
   * `instanceCacheMs`: a boot that moves 21 volumes off one dead instance asks about it once.
   */
  async instances(ids: string[], signal?: AbortSignal): Promise<Map<string, InstanceInfo>> {
    const out = new Map<string, InstanceInfo>();
    await Promise.all(
      [...new Set(ids)].map(async (id) => {
        const cached = this.instanceCache.get(id);
        let info: InstanceInfo | undefined;
        if (cached && Date.now() - cached.at < this.timing.instanceCacheMs) info = cached.info;
        else {
          info = (await this.byInstance.get(id, signal))[0];
          this.instanceCache.set(id, { at: Date.now(), info });
        }
        if (info) out.set(id, info);
      }),
    );
    return out;
  }

  private async describeInstances(ids: string[]): Promise<InstanceInfo[]> {
    const out: InstanceInfo[] = [];
    let NextToken: string | undefined;
    const until = Date.now() + this.timing.attachTimeoutMs;
    do {
      const input = { Filters: [{ Name: 'instance-id', Values: ids }], ...(NextToken ? { NextToken } : {}) };
      const page = await this.untilAccepted('describeInstances', () => this.port.describeInstances(input, noCaller()), undefined, until, `describing instances ${ids.join(', ')}`).catch((err: unknown) => {
        throw ec2Error(err, `describing instances ${ids.join(', ')}`);
      });
      for (const r of page.Reservations ?? []) {
        for (const i of r.Instances ?? []) {
          out.push({ instanceId: i.InstanceId!, state: i.State?.Name ?? 'unknown', az: i.Placement?.AvailabilityZone ?? '', tags: tagsOf(i) });
        }
      }
      NextToken = page.NextToken;
    } while (NextToken);
    return out;
  }

  /**
   * Attaches an available volume to this instance and waits until EC2 reports
   * it attached here, at the name asked. Returns that device name.
   * `attachingAt`: the volume is already 'attaching' here at that name.
   * The wait ends at attachTimeoutMs or when `signal` aborts (with the signal's reason), whichever
   * comes first; the attachment may then be under way, and the caller detaches it (ebs-backend.ts).
   * An attach that got no AttachVolume through to EC2 (refused for the budget until its time ran
   * out, or its caller gone while it waited for a turn) fails with AttachNotSent: nothing to undo.
   */
  async attach(volumeId: string, attachingAt?: string, signal?: AbortSignal): Promise<string> {
    /** Whether an attachment may be under way: an AttachVolume EC2 did not refuse, or the one `attachingAt` names. */
    let sent = attachingAt !== undefined;
    try {
      return await this.attachSlotted(volumeId, attachingAt, signal, () => (sent = true));
    } catch (err) {
      if (!sent && (err instanceof StillWaiting || (signal?.aborted && err === signal.reason))) {
        throw new AttachNotSent(isBerthError(err) ? err.code : 'TIMEOUT', errorMessage(err), { cause: err });
      }
      throw err;
    }
  }

  /** attach() in a mutation slot and an attachment slot; `sent` is told when an AttachVolume may have reached EC2. */
  private attachSlotted(volumeId: string, attachingAt: string | undefined, signal: AbortSignal | undefined, sent: () => void): Promise<string> {
    // A Mount whose caller has gone leaves the queue of attachments at once (docs/design.md §3).
    return this.mutations.run(async () => {
      signal?.throwIfAborted();
      // A new attachment needs a slot (docs/design.md §6, "Attachment limits"); one under way holds one.
      if (attachingAt === undefined && this.slots) {
        try {
          await this.slots.claim(volumeId, signal);
        } catch (err) {
          if (isBerthError(err, 'LIMIT_EXCEEDED')) this.metrics?.refused();
          throw err;
        }
      }
      const started = performance.now();
      try {
        const device = await this.attachHeld(volumeId, attachingAt, signal, sent);
        this.slots?.confirm(volumeId);
        this.metrics?.attached(performance.now() - started);
        return device;
      } catch (err) {
        if (attachingAt === undefined) this.slots?.release(volumeId);
        throw err;
      }
    }, signal);
  }

  /** attach() within its mutation slot and attachment slot. */
  private async attachHeld(volumeId: string, attachingAt: string | undefined, signal: AbortSignal | undefined, sent: () => void): Promise<string> {
    {
      await this.names.seed();
      let deadline = Date.now() + this.timing.attachTimeoutMs;
      for (let attempt = 1; ; attempt++) {
        // An attachment already under way here (agent restarted mid-attach) is waited for, not repeated.
        const resuming = attempt === 1 && attachingAt !== undefined;
        const device = resuming ? attachingAt : this.names.take();
        this.names.reserve(device);
        try {
          if (!resuming) {
            const attachVolume = (s: AbortSignal) =>
              this.port.attachVolume({ VolumeId: volumeId, InstanceId: this.instanceId, Device: device }, s).catch((err: unknown) => {
                // Anything but a refusal (the budget, a brownout's fault, a device name in use: nothing changed) may have attached it.
                if (!(isThrottled(err) || isServerFault(err) || isDeviceInUse(err))) sent();
                throw err;
              });
            await this.mutate(() => this.send(attachVolume, signal), signal, deadline, `attaching ${volumeId}`);
            // The budget was for getting the call through; EC2 has it now, and its attachment gets a wait of its own.
            deadline = Math.max(deadline, Date.now() + this.timing.stuckAttachingMs + this.timing.maxPollMs);
          }
          sent();
        } catch (err) {
          this.names.release(device);
          if (isDeviceInUse(err) && attempt < 20) {
            this.names.markInUse(device);
            this.log?.warn({ volumeId, device }, 'EC2 says this device name is in use; skipping it from now on');
            continue;
          }
          signal?.throwIfAborted();
          // The pacer's time ran out while EC2 kept refusing (mutate's TIMEOUT): nothing is attached; a later try goes through.
          if (isBerthError(err, 'TIMEOUT')) throw new StillWaiting(err.code, err.message, { cause: err });
          throw ec2Error(err, `attaching ${volumeId} to ${this.instanceId} at ${device}`);
        }
        try {
          const outcome = await this.waits.attached(volumeId, device, deadline, signal);
          if (outcome === 'attached') {
            this.names.markInUse(device);
            return device;
          }
          this.log?.warn({ volumeId, device, afterMs: this.timing.stuckAttachingMs }, 'attachment stuck in "attaching"; detaching and trying again');
          // The attachment slot stays claimed: the volume is attached again at once.
          await this.detachAndWaitUnmetered(volumeId, this.instanceId, deadline, signal);
        } finally {
          this.names.release(device);
        }
      }
    }
  }

  /**
   * Detaches the volume from the instance holding it (never forced) and waits until it is
   * available. Not attached is success. `known`: the volume as just described (saves a lookup).
   * The wait ends at detachTimeoutMs or when `signal` aborts, whichever comes first.
   */
  async detach(volumeId: string, known?: Volume, signal?: AbortSignal): Promise<void> {
    const held = known ?? (await this.volume(volumeId, signal));
    const a = held && attachmentOf(held);
    if (!a) return;
    await this.mutations.run(() => this.detachAndWait(volumeId, a.instanceId, Date.now() + this.timing.detachTimeoutMs, signal), signal);
    if (a.instanceId === this.instanceId) this.names.free(a.device);
  }

  /** DetachVolume names the instance: some EC2-compatible endpoints require it, and EC2 then refuses to detach it from any other. */
  private async detachAndWait(volumeId: string, instanceId: string, deadline: number, signal?: AbortSignal): Promise<void> {
    const started = performance.now();
    try {
      await this.detachAndWaitUnmetered(volumeId, instanceId, deadline, signal);
      if (instanceId === this.instanceId) this.slots?.release(volumeId);
      this.metrics?.detached(performance.now() - started);
    } finally {
      this.metrics?.detachPending(performance.now() - started);
    }
  }

  private async detachAndWaitUnmetered(volumeId: string, instanceId: string, deadline: number, signal?: AbortSignal): Promise<void> {
    try {
      await this.mutate(() => this.send((s) => this.port.detachVolume({ VolumeId: volumeId, InstanceId: instanceId }, s), signal), signal, deadline, `detaching ${volumeId}`);
    } catch (err) {
      signal?.throwIfAborted();
      // Already detached (IncorrectState) is what we wanted.
      if (codeOf(err) !== 'IncorrectState' && !isNotFound(err)) throw ec2Error(err, `detaching ${volumeId}`);
    }
    await this.waitAvailable(volumeId, deadline, signal);
  }

  /** Waits until the volume has no attachment (e.g. another host's agent released it); an aborted signal stops the wait. */
  waitAvailable(volumeId: string, deadline: number, signal?: AbortSignal): Promise<Volume> {
    return this.waits.available(volumeId, deadline, signal);
  }
}
