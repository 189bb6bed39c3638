import {
  AttachVolumeCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteTagsCommand,
  DeleteVolumeCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  type CreateVolumeCommandInput,
  type EC2Client,
  type Filter,
  type Volume,
} from '@aws-sdk/client-ec2';
import type { Logger } from 'pino';
import { BerthError, errorMessage } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { Semaphore } from '../../../lib/semaphore.js';

/**
 * The one place berth calls EC2. Retries of throttled and failed calls are the
 * SDK's (adaptive retry mode, set on the client); this module adds what the
 * SDK does not: batched lookups, an attachment poller that checks our
 * instance and our device, device-name rotation, stuck-attachment recovery,
 * a bound on concurrent mutations, and errors that name what was being done.
 */

/** Waits and bounds of attachment handling, in one place so tests can shrink them. */
export interface Ec2Timing {
  /** First poll after AttachVolume/DetachVolume: EBS attachments usually complete in 1–4 s. */
  firstPollMs: number;
  /** Each later poll waits this much longer than the one before (creation; attachment waits once past fastPollForMs). */
  pollFactor: number;
  maxPollMs: number;
  /**
   * Attachment waits past their first poll poll on one tick shared by every
   * waiter (aligned to the clock), so however many volumes are attaching, each
   * tick costs one batched DescribeVolumes (per 199 volumes).
   */
  pollTickMs: number;
  /** How long after its first poll a wait stays on the shared tick before backing off by pollFactor. */
  fastPollForMs: number;
  /** EC2 occasionally wedges an attachment in 'attaching'; after this long it is detached and tried again. */
  stuckAttachingMs: number;
  /** Bound on one attach, retries included. */
  attachTimeoutMs: number;
  /** Bound on one detach. */
  detachTimeoutMs: number;
  /** Bound on a new volume leaving 'creating' (from a snapshot this can take minutes). */
  createTimeoutMs: number;
  /** Lookups by id issued within this window share one DescribeVolumes call. */
  batchWindowMs: number;
  /**
   * A CreateVolume answer naming a volume DescribeVolumes still does not know this long after
   * its CreateTime is a replay of a spent ClientToken (the volume was deleted), not a new volume.
   */
  unknownAfterCreateMs: number;
  /** How long what DescribeInstances said of an instance is reused (one lookup per reconcile pass, not per volume). */
  instanceCacheMs: number;
  /**
   * AttachVolume/DetachVolume sent at once, then per second: EC2's bucket for them (50, refilling
   * 5/s). Sent faster, they are throttled, and the SDK's adaptive retry then slows every call of
   * the client (its rate limiter is one per client), so the attachment polls see attachments late.
   */
  mutationBurst: number;
  mutationsPerSecond: number;
}

export const DEFAULT_EC2_TIMING: Ec2Timing = {
  firstPollMs: 1_000,
  pollFactor: 1.8,
  maxPollMs: 10_000,
  // 4 DescribeVolumes/s per host while attachments are under way: a fifth of the account's refill (20/s).
  pollTickMs: 250,
  fastPollForMs: 20_000,
  stuckAttachingMs: 90_000,
  attachTimeoutMs: 200_000,
  detachTimeoutMs: 120_000,
  createTimeoutMs: 300_000,
  batchWindowMs: 20,
  unknownAfterCreateMs: 60_000,
  instanceCacheMs: 10_000,
  // One token under EC2's 50: a call that reaches EC2 sooner than an earlier one (the first call
  // of a client is the slowest) would otherwise find the bucket a fraction short.
  mutationBurst: 49,
  mutationsPerSecond: 5,
};

/** Device names berth attaches at: /dev/xvdba … /dev/xvdzz (the root and early letters are the AMI's). */
export const DEVICE_NAMES: readonly string[] = (() => {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const out: string[] = [];
  for (const first of letters.slice(1)) for (const second of letters) out.push(`/dev/xvd${first}${second}`);
  return out;
})();

export type Tags = Record<string, string>;

export function tagsOf(resource: { Tags?: { Key?: string; Value?: string }[] }): Tags {
  const out: Tags = {};
  for (const t of resource.Tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? '';
  return out;
}

/** sleep() that rejects with the signal's reason (the caller's own error), as throwIfAborted() does. */
const pause = (ms: number, signal?: AbortSignal) =>
  sleep(ms, signal).catch((err: unknown) => {
    signal?.throwIfAborted();
    throw err;
  });

const codeOf = (err: unknown): string => (err as { name?: string }).name ?? '';
export const isNotFound = (err: unknown) => /\.NotFound$|^InvalidVolumeID\.Malformed$/.test(codeOf(err));
export const isThrottled = (err: unknown) => /^(RequestLimitExceeded|Throttling|ThrottlingException)$/.test(codeOf(err));
const isDeviceInUse = (err: unknown) => codeOf(err) === 'InvalidParameterValue' && /already in use/i.test(errorMessage(err));
const isServerFault = (err: unknown) => (err as { $fault?: string }).$fault === 'server';

/** Wraps an EC2 error in a BerthError that says what berth was doing. */
export function ec2Error(err: unknown, doing: string): BerthError {
  if (err instanceof BerthError) return err;
  const code = codeOf(err);
  const why = `${doing}: EC2 said ${code ? `${code}: ` : ''}${errorMessage(err)}`;
  if (isThrottled(err)) return new BerthError('LIMIT_EXCEEDED', `${why} (still throttled after the SDK's retries; berth tries again on the next call or reconcile)`, { cause: err });
  if (isNotFound(err)) return new BerthError('NOT_FOUND', why, { cause: err });
  if (code === 'InvalidVolume.ZoneMismatch' || code === 'VolumeInUse' || code === 'IncorrectState' || code === 'IncorrectInstanceState') return new BerthError('CONFLICT', why, { cause: err });
  if (isServerFault(err) || code === '' || code === 'TimeoutError') return new BerthError('UNAVAILABLE', why, { cause: err });
  return new BerthError('INVALID_ARGUMENT', why, { cause: err });
}

/** Lets `burst` calls through at once, then `perSecond`, in arrival order (a local copy of EC2's token bucket). */
class Pacer {
  private tokens: number;
  private last = Date.now();
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {
    this.tokens = burst;
  }

  take(signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(async () => {
      for (;;) {
        signal?.throwIfAborted();
        const now = Date.now();
        this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
        this.last = now;
        if (this.tokens >= 1) {
          this.tokens -= 1;
          return;
        }
        await pause(((1 - this.tokens) / this.perSecond) * 1000, signal);
      }
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }
}

/** Keys asked for within one window are fetched together; each caller gets its key's values. */
class MicroBatch<T> {
  private pending: { keys: Set<string>; done: Promise<Map<string, T[]>> } | undefined;

  constructor(
    private readonly windowMs: number,
    private readonly fetch: (keys: string[]) => Promise<Map<string, T[]>>,
  ) {}

  async get(key: string): Promise<T[]> {
    if (!this.pending) {
      const keys = new Set<string>();
      const done = sleep(this.windowMs).then(() => {
        this.pending = undefined;
        return this.fetch([...keys]);
      });
      this.pending = { keys, done };
    }
    this.pending.keys.add(key);
    return (await this.pending.done).get(key) ?? [];
  }
}

/**
 * EC2 will not make a new volume for this ClientToken: it was used with other parameters
 * (IdempotentParameterMismatch), or its volume is gone (deleted, or failed and deleted).
 * The caller rotates the token, as aws-ebs-csi-driver does (pkg/cloud/cloud.go).
 */
export class ClientTokenSpent extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFLICT', message, options);
  }
}

/** EC2 failed a new volume after answering (state "error"), and berth deleted it: its token is spent too. */
export class FailedVolumeDeleted extends BerthError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

export interface Attachment {
  instanceId: string;
  device: string;
  state: string;
}

export function attachmentOf(volume: Volume): Attachment | undefined {
  const a = volume.Attachments?.find((x) => x.State !== 'detached');
  return a?.InstanceId && a.Device && a.State ? { instanceId: a.InstanceId, device: a.Device, state: a.State } : undefined;
}

export interface InstanceInfo {
  instanceId: string;
  state: string;
  az: string;
  tags: Tags;
}

export interface Ec2FacadeDeps {
  client: EC2Client;
  /** This instance: attachments are made to it and polled for it. */
  instanceId: string;
  /**
   * Concurrent AttachVolume/DetachVolume calls and waits (EC2's mutating bucket holds 50 and
   * refills 5 per second). No default here: the agent's is BERTH_ATTACH_CONCURRENCY (agent/config.ts).
   */
  maxConcurrentAttachments: number;
  timing?: Partial<Ec2Timing>;
  logger?: Logger;
}

export class Ec2Facade {
  readonly timing: Ec2Timing;
  private readonly client: EC2Client;
  private readonly instanceId: string;
  private readonly log: Logger | undefined;
  private readonly mutations: Semaphore;
  private readonly pacer: Pacer;
  /** Device names taken by an attach in flight, or reported in use by EC2. */
  private readonly reserved = new Set<string>();
  private readonly skip = new Set<string>();
  private nextName = 0;
  private namesSeeded: Promise<void> | undefined;
  private readonly byId: MicroBatch<Volume>;
  private readonly byName = new Map<string, MicroBatch<Volume>>();
  private readonly byInstance: MicroBatch<InstanceInfo>;
  private readonly instanceCache = new Map<string, { at: number; info: InstanceInfo | undefined }>();

  constructor(deps: Ec2FacadeDeps) {
    this.client = deps.client;
    this.instanceId = deps.instanceId;
    this.log = deps.logger;
    this.mutations = new Semaphore(deps.maxConcurrentAttachments);
    this.timing = { ...DEFAULT_EC2_TIMING, ...deps.timing };
    this.pacer = new Pacer(this.timing.mutationBurst, this.timing.mutationsPerSecond);
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

  /** Every volume carrying these tags (and matching the extra filters), all pages. */
  async volumesByTags(tags: Tags, extra: Filter[] = []): Promise<Volume[]> {
    const Filters: Filter[] = [...Object.entries(tags).map(([k, v]) => ({ Name: `tag:${k}`, Values: [v] })), ...extra];
    const out: Volume[] = [];
    let NextToken: string | undefined;
    do {
      const page = await this.client
        .send(new DescribeVolumesCommand({ Filters, MaxResults: 500, ...(NextToken ? { NextToken } : {}) }))
        .catch((err: unknown) => {
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
  async volume(volumeId: string): Promise<Volume | undefined> {
    return (await this.byId.get(volumeId))[0];
  }

  /**
   * Volumes whose tag `nameKey` is `name`, within the scope tags. Lookups
   * that arrive together (a boot reconcile's attaches) share one call.
   */
  async volumesNamed(scope: Tags, nameKey: string, name: string): Promise<Volume[]> {
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
    return batch.get(name);
  }

  /**
   * CreateVolume, then waits until the volume is usable. Throws ClientTokenSpent when EC2 answers
   * for the token with an earlier volume that is gone (a replay), or refuses the token.
   */
  async createVolume(input: CreateVolumeCommandInput, what: string): Promise<Volume> {
    const created = await this.client.send(new CreateVolumeCommand(input)).catch((err: unknown) => {
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
        await this.deleteVolume(id).catch((err: unknown) => this.log?.error({ volumeId: id, err: errorMessage(err) }, 'could not delete a volume EC2 failed to create'));
        throw new FailedVolumeDeleted(`creating ${what}: EC2 failed the new volume ${id} (state "error"; usually a KMS key berth cannot use, or a bad snapshot) and berth deleted it; check kmsKeyId/snapshotId and the instance role's KMS permissions`);
      }
      if (Date.now() > deadline) throw new BerthError('TIMEOUT', `creating ${what}: ${id} still "${state}" after ${this.timing.createTimeoutMs / 1000} s`);
      await sleep(wait);
      wait = Math.min(wait * this.timing.pollFactor, this.timing.maxPollMs);
      // Right after CreateVolume, DescribeVolumes may not know the id yet: keep waiting, but a
      // volume unknown long after its creation time is a deleted one EC2 answered the token with.
      const seen = await this.volume(id);
      if (!seen && Date.now() - createdAt > this.timing.unknownAfterCreateMs) {
        throw new ClientTokenSpent(`creating ${what}: EC2 answered with ${id}, created ${new Date(createdAt).toISOString()}, which no longer exists`);
      }
      v = seen ?? v;
    }
  }

  async deleteVolume(volumeId: string): Promise<void> {
    // DeleteVolume draws on the same bucket as AttachVolume/DetachVolume.
    await this.pacer.take();
    await this.client.send(new DeleteVolumeCommand({ VolumeId: volumeId })).catch((err: unknown) => {
      if (isNotFound(err)) return;
      throw ec2Error(err, `deleting ${volumeId}`);
    });
  }

  /** Sets tags on many resources in one call (EC2 allows it when the tags are the same). */
  async tag(resourceIds: string[], tags: Tags): Promise<void> {
    if (resourceIds.length === 0 || Object.keys(tags).length === 0) return;
    for (let i = 0; i < resourceIds.length; i += 1000) {
      const Resources = resourceIds.slice(i, i + 1000);
      await this.client.send(new CreateTagsCommand({ Resources, Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) })).catch((err: unknown) => {
        throw ec2Error(err, `tagging ${Resources.join(', ')}`);
      });
    }
  }

  async untag(resourceIds: string[], keys: string[]): Promise<void> {
    if (resourceIds.length === 0 || keys.length === 0) return;
    await this.client.send(new DeleteTagsCommand({ Resources: resourceIds, Tags: keys.map((Key) => ({ Key })) })).catch((err: unknown) => {
      throw ec2Error(err, `removing tags ${keys.join(', ')} from ${resourceIds.join(', ')}`);
    });
  }

  /**
   * What EC2 says of these instances; an instance it no longer knows is absent (as good as
   * terminated). Lookups made together share one DescribeInstances, and answers are reused for
   * `instanceCacheMs`: a boot that moves 21 volumes off one dead instance asks about it once.
   */
  async instances(ids: string[]): Promise<Map<string, InstanceInfo>> {
    const out = new Map<string, InstanceInfo>();
    await Promise.all(
      [...new Set(ids)].map(async (id) => {
        const cached = this.instanceCache.get(id);
        let info: InstanceInfo | undefined;
        if (cached && Date.now() - cached.at < this.timing.instanceCacheMs) info = cached.info;
        else {
          info = (await this.byInstance.get(id))[0];
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
    do {
      const page = await this.client
        .send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-id', Values: ids }], ...(NextToken ? { NextToken } : {}) }))
        .catch((err: unknown) => {
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
   * An aborted `signal` stops the wait at once (with the signal's reason); the attachment may
   * then be under way, and the caller detaches it (ebs-backend.ts).
   */
  async attach(volumeId: string, attachingAt?: string, signal?: AbortSignal): Promise<string> {
    // A Mount whose caller has gone leaves the queue of attachments at once (docs/design.md §3).
    return this.mutations.run(async () => {
      signal?.throwIfAborted();
      await this.seedDeviceNames();
      const deadline = Date.now() + this.timing.attachTimeoutMs;
      for (let attempt = 1; ; attempt++) {
        // An attachment already under way here (agent restarted mid-attach) is waited for, not repeated.
        const resuming = attempt === 1 && attachingAt !== undefined;
        const device = resuming ? attachingAt : this.takeDeviceName();
        this.reserved.add(device);
        try {
          if (!resuming) await this.pacer.take(signal);
          if (!resuming) await this.client.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: this.instanceId, Device: device }));
        } catch (err) {
          this.reserved.delete(device);
          if (isDeviceInUse(err) && attempt < 20) {
            this.skip.add(device);
            this.log?.warn({ volumeId, device }, 'EC2 says this device name is in use; skipping it from now on');
            continue;
          }
          throw ec2Error(err, `attaching ${volumeId} to ${this.instanceId} at ${device}`);
        }
        try {
          const outcome = await this.pollAttachment(volumeId, device, deadline, signal);
          if (outcome === 'attached') {
            this.skip.add(device);
            return device;
          }
          this.log?.warn({ volumeId, device, afterMs: this.timing.stuckAttachingMs }, 'attachment stuck in "attaching"; detaching and trying again');
          await this.detachAndWait(volumeId, this.instanceId, deadline, signal);
        } finally {
          this.reserved.delete(device);
        }
      }
    }, signal);
  }

  /**
   * How long a wait that started at `startedAt` sleeps before its next poll:
   * until firstPollMs has passed (EBS attachments take 1–4 s), then to the
   * next shared tick for fastPollForMs, then backing off by pollFactor from
   * the tick up to maxPollMs. The ×1.8 schedule alone left gaps of seconds
   * between an attachment completing and berth seeing it, although one
   * batched DescribeVolumes serves every waiter (bench/ebs-boot-reconcile.ts).
   */
  private pollDelay(startedAt: number, backoff: { wait: number }): number {
    const { firstPollMs, fastPollForMs, pollFactor, maxPollMs } = this.timing;
    const tick = Math.min(this.timing.pollTickMs, maxPollMs);
    const now = Date.now();
    const since = now - startedAt;
    if (since < firstPollMs) return firstPollMs - since;
    if (since < firstPollMs + fastPollForMs) return tick - (now % tick);
    backoff.wait = Math.min(Math.max(backoff.wait, tick) * pollFactor, maxPollMs);
    return backoff.wait;
  }

  /** Waits until the volume is attached here at `device`, or reports it stuck. */
  private async pollAttachment(volumeId: string, device: string, deadline: number, signal?: AbortSignal): Promise<'attached' | 'stuck'> {
    const started = Date.now();
    const backoff = { wait: 0 };
    for (;;) {
      await pause(Math.min(this.pollDelay(started, backoff), Math.max(0, deadline - Date.now())), signal);
      const v = await this.volume(volumeId);
      signal?.throwIfAborted();
      if (!v) throw new BerthError('NOT_FOUND', `${volumeId} disappeared while attaching`);
      const a = attachmentOf(v);
      if (a && a.instanceId === this.instanceId && a.device === device && a.state === 'attached') return 'attached';
      if (a && a.instanceId !== this.instanceId) {
        throw new BerthError('CONFLICT', `${volumeId} got attached to ${a.instanceId} while berth was attaching it to ${this.instanceId}`);
      }
      if (!a && v.State === 'available') throw new BerthError('UNAVAILABLE', `EC2 dropped the attachment of ${volumeId} at ${device} before it completed`);
      if (Date.now() - started >= this.timing.stuckAttachingMs) return 'stuck';
      if (Date.now() >= deadline) {
        throw new BerthError('TIMEOUT', `${volumeId} not attached to ${this.instanceId} within ${this.timing.attachTimeoutMs / 1000} s (EC2 says ${a?.state ?? v.State})`);
      }
    }
  }

  /**
   * Detaches the volume from the instance holding it (never forced) and waits until it is
   * available. Not attached is success. `known`: the volume as just described (saves a lookup).
   */
  async detach(volumeId: string, known?: Volume): Promise<void> {
    const held = known ?? (await this.volume(volumeId));
    const a = held && attachmentOf(held);
    if (!a) return;
    await this.mutations.run(() => this.detachAndWait(volumeId, a.instanceId, Date.now() + this.timing.detachTimeoutMs));
    if (a.instanceId === this.instanceId) this.skip.delete(a.device);
  }

  /** DetachVolume names the instance: some EC2-compatible endpoints require it, and EC2 then refuses to detach it from any other. */
  private async detachAndWait(volumeId: string, instanceId: string, deadline: number, signal?: AbortSignal): Promise<void> {
    try {
      await this.pacer.take();
      await this.client.send(new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId }));
    } catch (err) {
      // Already detached (IncorrectState) is what we wanted.
      if (codeOf(err) !== 'IncorrectState' && !isNotFound(err)) throw ec2Error(err, `detaching ${volumeId}`);
    }
    await this.waitAvailable(volumeId, deadline, signal);
  }

  /** Waits until the volume has no attachment (e.g. another host's agent released it); an aborted signal stops the wait. */
  async waitAvailable(volumeId: string, deadline: number, signal?: AbortSignal): Promise<Volume> {
    const started = Date.now();
    const backoff = { wait: 0 };
    for (;;) {
      signal?.throwIfAborted();
      const v = await this.volume(volumeId);
      if (!v) throw new BerthError('NOT_FOUND', `${volumeId} no longer exists`);
      if (v.State === 'available' && !attachmentOf(v)) return v;
      if (Date.now() >= deadline) {
        const a = attachmentOf(v);
        throw new BerthError('TIMEOUT', `${volumeId} still ${a ? `${a.state} to ${a.instanceId}` : v.State} when the wait ran out`);
      }
      await pause(Math.min(this.pollDelay(started, backoff), Math.max(0, deadline - Date.now())), signal);
    }
  }

  /** Device names of what is attached to this instance now, so rotation starts clear of them. */
  private seedDeviceNames(): Promise<void> {
    this.namesSeeded ??= this.volumesByTags({}, [{ Name: 'attachment.instance-id', Values: [this.instanceId] }]).then(
      (volumes) => {
        for (const v of volumes) for (const a of v.Attachments ?? []) if (a.InstanceId === this.instanceId && a.Device) this.skipIfInUse(a.Device);
      },
      (err: unknown) => {
        this.namesSeeded = undefined;
        throw err;
      },
    );
    return this.namesSeeded;
  }

  private skipIfInUse(device: string): void {
    if (DEVICE_NAMES.includes(device)) this.skip.add(device);
  }

  /** Next free name in the rotation; a name just given back is not handed out again at once. */
  private takeDeviceName(): string {
    for (let i = 0; i < DEVICE_NAMES.length; i++) {
      const name = DEVICE_NAMES[(this.nextName + i) % DEVICE_NAMES.length]!;
      if (this.reserved.has(name) || this.skip.has(name)) continue;
      this.nextName = (this.nextName + i + 1) % DEVICE_NAMES.length;
      this.reserved.add(name);
      return name;
    }
    throw new BerthError('LIMIT_EXCEEDED', `no free device name left for ${this.instanceId} (${DEVICE_NAMES.length} names, all in use or refused by EC2)`);
  }
}
