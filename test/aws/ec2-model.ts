import { randomBytes } from 'node:crypto';
import { EC2ServiceException, type EC2Client, type Filter, type Volume } from '@aws-sdk/client-ec2';

/**
 * A stateful model of the part of EC2 berth uses: volumes, instances,
 * attachments that take time, tags with filters, zone rules, ClientToken
 * idempotency and AWS's token-bucket throttling. It answers inside the SDK's
 * middleware stack, below the retry middleware: the SDK's own retries and
 * adaptive rate limiting run against it exactly as against EC2.
 * (aws-sdk-client-mock replaces `send` instead, which would skip them.)
 *
 * Errors have the SDK's shape for EC2 (EC2ServiceException, name = EC2 code).
 */

export type InstanceState = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';

interface ModelAttachment {
  instanceId: string;
  device: string;
  state: 'attaching' | 'attached' | 'detaching';
  attachTime: Date;
}

export interface ModelVolume {
  id: string;
  az: string;
  size: number;
  type: string;
  iops?: number;
  throughput?: number;
  encrypted: boolean;
  kmsKeyId?: string;
  snapshotId?: string;
  state: 'creating' | 'available' | 'in-use' | 'deleting' | 'error';
  tags: Map<string, string>;
  attachment?: ModelAttachment;
  createTime: Date;
}

export interface ModelInstance {
  id: string;
  az: string;
  state: InstanceState;
  tags: Map<string, string>;
}

interface Bucket {
  capacity: number;
  refillPerSecond: number;
  tokens: number;
  at: number;
}

/** EC2's request token buckets (per account and region) that matter here: DESIGN.md §6. */
const BUCKETS: Record<string, { capacity: number; refillPerSecond: number }> = {
  mutating: { capacity: 50, refillPerSecond: 5 },
  createVolume: { capacity: 100, refillPerSecond: 5 },
  tags: { capacity: 100, refillPerSecond: 10 },
  describe: { capacity: 100, refillPerSecond: 20 },
};
const BUCKET_OF: Record<string, string> = {
  AttachVolume: 'mutating',
  DetachVolume: 'mutating',
  DeleteVolume: 'mutating',
  CreateVolume: 'createVolume',
  CreateTags: 'tags',
  DeleteTags: 'tags',
  DescribeVolumes: 'describe',
  DescribeInstances: 'describe',
};

const SIZE_LIMITS: Record<string, [number, number]> = { gp2: [1, 16384], gp3: [1, 16384], io1: [4, 16384], io2: [4, 16384], st1: [125, 16384], sc1: [125, 16384], standard: [1, 1024] };
const IOPS_LIMITS: Record<string, [number, number]> = { gp3: [3000, 16000], io1: [100, 64000], io2: [100, 256000] };

const hex17 = () => randomBytes(9).toString('hex').slice(0, 17);

export function ec2Fault(code: string, message: string, server = false): EC2ServiceException {
  return new EC2ServiceException({
    name: code,
    $fault: server ? 'server' : 'client',
    $metadata: { httpStatusCode: server ? 503 : 400 },
    message,
  });
}

export interface Ec2ModelOptions {
  region?: string;
  /** Time from AttachVolume to 'attached' (EBS: usually 1–4 s). */
  attachLatencyMs?: number;
  detachLatencyMs?: number;
  createLatencyMs?: number;
  /** AWS's request buckets; off for tests that are about something else. */
  throttling?: boolean;
}

export class Ec2Model {
  readonly region: string;
  attachLatencyMs: number;
  detachLatencyMs: number;
  createLatencyMs: number;
  throttling: boolean;
  readonly volumes = new Map<string, ModelVolume>();
  readonly instances = new Map<string, ModelInstance>();
  readonly faults = {
    /** Volumes whose next attachment stays 'attaching' until detached. */
    stuckAttaching: new Set<string>(),
    /** Every call answered RequestLimitExceeded while true. */
    throttleAll: false,
    /** The next N DescribeVolumes calls fail with a server error. */
    failDescribeVolumes: 0,
    /** KMS keys CreateVolume refuses. */
    unknownKmsKeys: new Set<string>(),
  };
  /** Awaited before an attachment turns 'attached' (the test binds a device here). */
  onAttached?: (volumeId: string, device: string, instanceId: string) => void | Promise<void>;
  /** Awaited before a detached volume turns 'available'. */
  onDetached?: (volumeId: string, device: string, instanceId: string) => void | Promise<void>;
  private readonly counts = new Map<string, number>();
  private readonly tokens = new Map<string, { volumeId: string; params: string }>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(opts: Ec2ModelOptions = {}) {
    this.region = opts.region ?? 'eu-west-1';
    this.attachLatencyMs = opts.attachLatencyMs ?? 50;
    this.detachLatencyMs = opts.detachLatencyMs ?? 30;
    this.createLatencyMs = opts.createLatencyMs ?? 10;
    this.throttling = opts.throttling ?? true;
  }

  /** Answers the client's calls from this model, below the SDK's retry middleware. */
  install(client: EC2Client): EC2Client {
    client.middlewareStack.add(
      (_next, context) => async (args) => {
        const command = String((context as { commandName?: string }).commandName ?? '').replace(/Command$/, '');
        const output = await this.handle(command, args.input as Record<string, unknown>);
        return { output: { ...output, $metadata: {} }, response: {} } as never;
      },
      { step: 'deserialize', name: 'berthEc2Model', priority: 'high' },
    );
    return client;
  }

  /** Calls received, per command (or all). */
  calls(command?: string): number {
    if (command) return this.counts.get(command) ?? 0;
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }

  resetCalls(): void {
    this.counts.clear();
  }

  addInstance(p: { az: string; state?: InstanceState; tags?: Record<string, string>; instanceId?: string }): string {
    const id = p.instanceId ?? `i-${hex17()}`;
    this.instances.set(id, { id, az: p.az, state: p.state ?? 'running', tags: new Map(Object.entries(p.tags ?? {})) });
    return id;
  }

  /** Terminating (or stopping) an instance detaches its volumes, as EC2 does; they survive (DeleteOnTermination false). */
  async setInstanceState(id: string, state: InstanceState): Promise<void> {
    const instance = this.instances.get(id);
    if (!instance) throw new Error(`model: no instance ${id}`);
    instance.state = state;
    if (state === 'terminated' || state === 'stopped') {
      for (const v of this.volumes.values()) {
        if (v.attachment?.instanceId === id) {
          const { device } = v.attachment;
          v.attachment = undefined;
          v.state = 'available';
          await this.onDetached?.(v.id, device, id);
        }
      }
    }
  }

  addVolume(p: { az: string; size: number; type?: string; tags?: Record<string, string>; attachedTo?: { instanceId: string; device: string }; encrypted?: boolean }): string {
    const id = `vol-${hex17()}`;
    this.volumes.set(id, {
      id,
      az: p.az,
      size: p.size,
      type: p.type ?? 'gp3',
      encrypted: p.encrypted ?? true,
      state: p.attachedTo ? 'in-use' : 'available',
      tags: new Map(Object.entries(p.tags ?? {})),
      createTime: new Date(),
      ...(p.attachedTo ? { attachment: { ...p.attachedTo, state: 'attached' as const, attachTime: new Date() } } : {}),
    });
    return id;
  }

  volume(id: string): ModelVolume {
    const v = this.volumes.get(id);
    if (!v) throw new Error(`model: no volume ${id}`);
    return v;
  }

  /** Detaches a volume behind berth's back (an operator with the console). */
  async forceDetach(id: string): Promise<void> {
    const v = this.volume(id);
    if (!v.attachment) return;
    const { device, instanceId } = v.attachment;
    v.attachment = undefined;
    v.state = 'available';
    await this.onDetached?.(id, device, instanceId);
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  async handle(command: string, input: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.counts.set(command, (this.counts.get(command) ?? 0) + 1);
    if (this.faults.throttleAll) throw ec2Fault('RequestLimitExceeded', 'Request limit exceeded.');
    this.take(command);
    switch (command) {
      case 'CreateVolume':
        return this.createVolume(input);
      case 'DescribeVolumes':
        if (this.faults.failDescribeVolumes > 0) {
          this.faults.failDescribeVolumes--;
          throw ec2Fault('InternalError', 'An internal error has occurred', true);
        }
        return this.describeVolumes(input);
      case 'AttachVolume':
        return this.attachVolume(input);
      case 'DetachVolume':
        return this.detachVolume(input);
      case 'DeleteVolume':
        return this.deleteVolume(input);
      case 'CreateTags':
      case 'DeleteTags':
        return this.tags(command, input);
      case 'DescribeInstances':
        return this.describeInstances(input);
      default:
        throw new Error(`model: ${command} is not modelled`);
    }
  }

  private take(command: string): void {
    const group = BUCKET_OF[command];
    if (!this.throttling || !group) return;
    const spec = BUCKETS[group]!;
    const now = performance.now();
    const b = this.buckets.get(group) ?? { ...spec, tokens: spec.capacity, at: now };
    b.tokens = Math.min(b.capacity, b.tokens + ((now - b.at) / 1000) * b.refillPerSecond);
    b.at = now;
    this.buckets.set(group, b);
    if (b.tokens < 1) throw ec2Fault('RequestLimitExceeded', 'Request limit exceeded.');
    b.tokens -= 1;
  }

  private later(ms: number, fn: () => Promise<void> | void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      void fn();
    }, ms);
    this.timers.add(t);
  }

  private createVolume(i: Record<string, unknown>): Record<string, unknown> {
    const az = i.AvailabilityZone as string | undefined;
    if (!az || !az.startsWith(this.region)) throw ec2Fault('InvalidParameterValue', `Invalid availability zone: [${az}]`);
    const type = (i.VolumeType as string | undefined) ?? 'gp2';
    const size = i.Size as number | undefined;
    const limits = SIZE_LIMITS[type];
    if (!limits) throw ec2Fault('InvalidParameterValue', `Value (${type}) for parameter volumeType is invalid.`);
    if (size === undefined && !i.SnapshotId) throw ec2Fault('MissingParameter', 'The request must contain the parameter size or snapshotId');
    if (size !== undefined && (size < limits[0] || size > limits[1])) {
      throw ec2Fault('InvalidParameterValue', `Volume of ${size}GiB is too ${size < limits[0] ? 'small' : 'large'}; minimum is ${limits[0]}GiB, maximum is ${limits[1]}GiB for ${type}`);
    }
    const iops = i.Iops as number | undefined;
    if (iops !== undefined) {
      const r = IOPS_LIMITS[type];
      if (!r) throw ec2Fault('InvalidParameterCombination', `The parameter iops is not supported for ${type} volumes.`);
      if (iops < r[0] || iops > r[1]) throw ec2Fault('InvalidParameterValue', `Volume iops of ${iops} is outside ${r[0]}-${r[1]} for ${type}`);
    } else if (type === 'io1' || type === 'io2') {
      throw ec2Fault('MissingParameter', `The parameter iops must be specified for ${type} volumes.`);
    }
    if (i.Throughput !== undefined && type !== 'gp3') throw ec2Fault('InvalidParameterCombination', `The parameter throughput is not supported for ${type} volumes.`);
    const kms = i.KmsKeyId as string | undefined;
    // Real EC2 accepts an unusable key and fails the volume later (state "error"); the model refuses at once, which berth reports the same way.
    if (kms && this.faults.unknownKmsKeys.has(kms)) throw ec2Fault('InvalidKmsKey.NotFound', `The KMS key '${kms}' does not exist or is not accessible.`);
    if (i.SnapshotId) throw ec2Fault('InvalidSnapshot.NotFound', `The snapshot '${String(i.SnapshotId)}' does not exist.`);
    const { ClientToken, ...params } = i;
    const paramsKey = JSON.stringify(params);
    if (typeof ClientToken === 'string') {
      const seen = this.tokens.get(ClientToken);
      if (seen) {
        if (seen.params !== paramsKey) throw ec2Fault('IdempotentParameterMismatch', 'The client token you have provided is associated with a resource that has different parameters.');
        const v = this.volumes.get(seen.volumeId);
        if (v) return { ...this.volumeOut(v) };
      }
    }
    const id = `vol-${hex17()}`;
    const tags = new Map<string, string>();
    for (const spec of (i.TagSpecifications as { ResourceType?: string; Tags?: { Key: string; Value: string }[] }[] | undefined) ?? []) {
      if (spec.ResourceType === 'volume') for (const t of spec.Tags ?? []) tags.set(t.Key, t.Value);
    }
    const v: ModelVolume = {
      id,
      az,
      size: size ?? 8,
      type,
      ...(iops !== undefined ? { iops } : type === 'gp3' ? { iops: 3000 } : {}),
      ...(i.Throughput !== undefined ? { throughput: i.Throughput as number } : type === 'gp3' ? { throughput: 125 } : {}),
      encrypted: Boolean(i.Encrypted) || kms !== undefined,
      ...(kms ? { kmsKeyId: kms } : {}),
      state: 'creating',
      tags,
      createTime: new Date(),
    };
    this.volumes.set(id, v);
    if (typeof ClientToken === 'string') this.tokens.set(ClientToken, { volumeId: id, params: paramsKey });
    this.later(this.createLatencyMs, () => {
      if (v.state === 'creating') v.state = 'available';
    });
    return { ...this.volumeOut(v) };
  }

  private matches(v: ModelVolume, f: Filter): boolean {
    const values = f.Values ?? [];
    const name = f.Name ?? '';
    if (name.startsWith('tag:')) return values.includes(v.tags.get(name.slice(4)) ?? '\0');
    switch (name) {
      case 'tag-key':
        return values.some((k) => v.tags.has(k));
      case 'volume-id':
        return values.includes(v.id);
      case 'availability-zone':
        return values.includes(v.az);
      case 'status':
        return values.includes(v.state);
      case 'attachment.instance-id':
        return !!v.attachment && values.includes(v.attachment.instanceId);
      case 'attachment.device':
        return !!v.attachment && values.includes(v.attachment.device);
      case 'attachment.status':
        return !!v.attachment && values.includes(v.attachment.state);
      default:
        throw ec2Fault('InvalidParameterValue', `The filter '${name}' is invalid`);
    }
  }

  private describeVolumes(i: Record<string, unknown>): Record<string, unknown> {
    const ids = i.VolumeIds as string[] | undefined;
    let list = [...this.volumes.values()];
    if (ids?.length) {
      const missing = ids.filter((id) => !this.volumes.has(id));
      if (missing.length) throw ec2Fault('InvalidVolume.NotFound', `The volume '${missing.join(', ')}' does not exist.`);
      list = list.filter((v) => ids.includes(v.id));
    }
    for (const f of (i.Filters as Filter[] | undefined) ?? []) list = list.filter((v) => this.matches(v, f));
    const max = i.MaxResults as number | undefined;
    if (max !== undefined && (max < 5 || max > 500)) throw ec2Fault('InvalidParameterValue', 'MaxResults must be between 5 and 500');
    const start = i.NextToken ? Number(i.NextToken) : 0;
    const page = max ? list.slice(start, start + max) : list;
    const next = max && start + max < list.length ? String(start + max) : undefined;
    return { Volumes: page.map((v) => this.volumeOut(v)), ...(next ? { NextToken: next } : {}) };
  }

  private attachVolume(i: Record<string, unknown>): Record<string, unknown> {
    const v = this.volumes.get(i.VolumeId as string);
    if (!v) throw ec2Fault('InvalidVolume.NotFound', `The volume '${String(i.VolumeId)}' does not exist.`);
    const inst = this.instances.get(i.InstanceId as string);
    if (!inst) throw ec2Fault('InvalidInstanceID.NotFound', `The instance ID '${String(i.InstanceId)}' does not exist`);
    const device = i.Device as string;
    if (inst.state !== 'running') throw ec2Fault('IncorrectState', `Instance '${inst.id}' is not 'running'.`);
    if (v.az !== inst.az) throw ec2Fault('InvalidVolume.ZoneMismatch', `The volume '${v.id}' is not in the same availability zone as instance '${inst.id}'`);
    if (v.state !== 'available' || v.attachment) throw ec2Fault('VolumeInUse', `${v.id} is already attached to an instance`);
    for (const other of this.volumes.values()) {
      if (other.attachment?.instanceId === inst.id && other.attachment.device === device) {
        throw ec2Fault('InvalidParameterValue', `Invalid value '${device}' for unixDevice. Attachment point ${device} is already in use`);
      }
    }
    const attachment: ModelAttachment = { instanceId: inst.id, device, state: 'attaching', attachTime: new Date() };
    v.attachment = attachment;
    v.state = 'in-use';
    if (!this.faults.stuckAttaching.delete(v.id)) {
      this.later(this.attachLatencyMs, async () => {
        if (v.attachment !== attachment) return;
        await this.onAttached?.(v.id, device, inst.id);
        if (v.attachment === attachment) attachment.state = 'attached';
      });
    }
    return { VolumeId: v.id, InstanceId: inst.id, Device: device, State: 'attaching', AttachTime: attachment.attachTime };
  }

  private detachVolume(i: Record<string, unknown>): Record<string, unknown> {
    const v = this.volumes.get(i.VolumeId as string);
    if (!v) throw ec2Fault('InvalidVolume.NotFound', `The volume '${String(i.VolumeId)}' does not exist.`);
    const a = v.attachment;
    if (!a) throw ec2Fault('IncorrectState', `Volume '${v.id}' is in the 'available' state.`);
    if (i.InstanceId && i.InstanceId !== a.instanceId) throw ec2Fault('InvalidAttachment.NotFound', `Volume '${v.id}' is not attached to '${String(i.InstanceId)}'`);
    if (a.state !== 'detaching') {
      a.state = 'detaching';
      this.later(this.detachLatencyMs, async () => {
        if (v.attachment !== a) return;
        await this.onDetached?.(v.id, a.device, a.instanceId);
        if (v.attachment === a) {
          v.attachment = undefined;
          v.state = 'available';
        }
      });
    }
    return { VolumeId: v.id, InstanceId: a.instanceId, Device: a.device, State: 'detaching' };
  }

  private deleteVolume(i: Record<string, unknown>): Record<string, unknown> {
    const v = this.volumes.get(i.VolumeId as string);
    if (!v) throw ec2Fault('InvalidVolume.NotFound', `The volume '${String(i.VolumeId)}' does not exist.`);
    if (v.attachment || v.state !== 'available') throw ec2Fault('VolumeInUse', `Volume ${v.id} is currently attached to ${v.attachment?.instanceId ?? 'an instance'}`);
    this.volumes.delete(v.id);
    return {};
  }

  private tags(command: string, i: Record<string, unknown>): Record<string, unknown> {
    const resources = i.Resources as string[];
    const tags = (i.Tags as { Key: string; Value?: string }[] | undefined) ?? [];
    const targets = resources.map((id) => {
      const t = this.volumes.get(id) ?? this.instances.get(id);
      if (!t) throw ec2Fault(id.startsWith('i-') ? 'InvalidInstanceID.NotFound' : 'InvalidVolume.NotFound', `The ID '${id}' does not exist`);
      return t;
    });
    for (const t of targets) {
      for (const tag of tags) {
        if (command === 'CreateTags') t.tags.set(tag.Key, tag.Value ?? '');
        else if (tag.Value === undefined || t.tags.get(tag.Key) === tag.Value) t.tags.delete(tag.Key);
      }
    }
    return {};
  }

  private describeInstances(i: Record<string, unknown>): Record<string, unknown> {
    const ids = i.InstanceIds as string[] | undefined;
    let list = [...this.instances.values()];
    if (ids?.length) {
      const missing = ids.filter((id) => !this.instances.has(id));
      if (missing.length) throw ec2Fault('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
      list = list.filter((x) => ids.includes(x.id));
    }
    for (const f of (i.Filters as Filter[] | undefined) ?? []) {
      const values = f.Values ?? [];
      if (f.Name?.startsWith('tag:')) list = list.filter((x) => values.includes(x.tags.get(f.Name!.slice(4)) ?? '\0'));
      else if (f.Name === 'instance-state-name') list = list.filter((x) => values.includes(x.state));
      else throw ec2Fault('InvalidParameterValue', `The filter '${f.Name}' is invalid`);
    }
    return {
      Reservations: list.map((x) => ({
        Instances: [
          {
            InstanceId: x.id,
            State: { Name: x.state },
            Placement: { AvailabilityZone: x.az },
            Tags: [...x.tags].map(([Key, Value]) => ({ Key, Value })),
            BlockDeviceMappings: [...this.volumes.values()]
              .filter((v) => v.attachment?.instanceId === x.id)
              .map((v) => ({ DeviceName: v.attachment!.device, Ebs: { VolumeId: v.id, Status: v.attachment!.state } })),
          },
        ],
      })),
    };
  }

  private volumeOut(v: ModelVolume): Volume {
    return {
      VolumeId: v.id,
      Size: v.size,
      AvailabilityZone: v.az,
      State: v.state,
      VolumeType: v.type as Volume['VolumeType'],
      ...(v.iops !== undefined ? { Iops: v.iops } : {}),
      ...(v.throughput !== undefined ? { Throughput: v.throughput } : {}),
      Encrypted: v.encrypted,
      ...(v.kmsKeyId ? { KmsKeyId: v.kmsKeyId } : {}),
      ...(v.snapshotId ? { SnapshotId: v.snapshotId } : {}),
      CreateTime: v.createTime,
      Tags: [...v.tags].map(([Key, Value]) => ({ Key, Value })),
      Attachments: v.attachment
        ? [{ VolumeId: v.id, InstanceId: v.attachment.instanceId, Device: v.attachment.device, State: v.attachment.state, AttachTime: v.attachment.attachTime, DeleteOnTermination: false }]
        : [],
    };
  }
}
