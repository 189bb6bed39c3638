import {
  AttachVolumeCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteTagsCommand,
  DeleteVolumeCommand,
  DescribeInstancesCommand,
  DescribeTagsCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  EC2Client,
  EC2ServiceException,
  ModifyVolumeCommand,
  RunInstancesCommand,
  paginateDescribeVolumes,
  type Volume,
} from '@aws-sdk/client-ec2';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ec2Error } from './ec2-errors.js';
import { Ec2Model, type Ec2ModelOptions } from './ec2-model.js';

const REGION = 'eu-west-1';
const AZ = 'eu-west-1a';

let model: Ec2Model;
let ec2: EC2Client;

function setup(opts: Ec2ModelOptions = {}): void {
  model?.dispose();
  model = new Ec2Model({ region: REGION, attachLatencyMs: 5, createLatencyMs: 2, ...opts });
  ec2 = new EC2Client({ region: REGION, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  model.install(ec2);
}

beforeEach(() => setup());
afterEach(() => model.dispose());

/** The EC2 error a call failed with (fails the test if it succeeded). */
async function ec2ErrorOf(call: Promise<unknown>): Promise<EC2ServiceException> {
  const outcome = await call.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(outcome, 'the call should have failed').toBeInstanceOf(EC2ServiceException);
  return outcome as EC2ServiceException;
}

async function expectCode(call: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const error = await ec2ErrorOf(call);
  expect(error.name).toBe(code);
  if (message) expect(error.message).toMatch(message);
}

async function createAvailable(params: Partial<ConstructorParameters<typeof CreateVolumeCommand>[0]> = {}): Promise<string> {
  const out = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 10, VolumeType: 'gp3', ...params }));
  await model.settled();
  return out.VolumeId!;
}

async function describe1(volumeId: string): Promise<Volume> {
  const out = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }));
  return out.Volumes![0]!;
}

describe('Ec2Model: the SDK boundary', () => {
  it('answers through a real EC2Client, one model call per send: the SDK retry middleware does not run', async () => {
    const client = new EC2Client({ region: REGION, credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 5 });
    model.install(client);
    model.faults.throttleAll = true;
    const error = await ec2ErrorOf(client.send(new DescribeVolumesCommand({})));
    expect(error.name).toBe('RequestLimitExceeded');
    expect(error.$fault).toBe('client');
    expect(error.$metadata.httpStatusCode).toBe(503);
    expect(model.calls('DescribeVolumes')).toBe(1);
    expect(model.throttledCalls('DescribeVolumesCommand')).toBe(1);
  });

  it('installBehindSdkRetries: the SDK retry strategy runs around the model, one model call per attempt', async () => {
    const client = new EC2Client({ region: REGION, credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 3, retryMode: 'standard' });
    const remove = model.installBehindSdkRetries(client);
    model.faults.failDescribeVolumes = 1;
    const out = await client.send(new DescribeVolumesCommand({}));
    expect(out.$metadata.attempts).toBe(2);
    expect(model.calls('DescribeVolumes')).toBe(2);
    // Not retryable: one attempt.
    await expectCode(client.send(new DescribeVolumesCommand({ VolumeIds: ['vol-0123456789abcdef0'] })), 'InvalidVolume.NotFound');
    expect(model.calls('DescribeVolumes')).toBe(3);
    remove();
    expect(client.middlewareStack.identify().some((entry) => entry.startsWith('berth-ec2-model'))).toBe(false);
  });

  it('mocks only the instance it was installed on', () => {
    const other = new EC2Client({ region: REGION });
    expect(other.send).not.toBe(ec2.send);
    expect(Object.hasOwn(other, 'send')).toBe(false);
    expect(Object.hasOwn(ec2, 'send')).toBe(true);
  });

  it('rejects commands it does not model with a clear error', async () => {
    await expect(ec2.send(new RunInstancesCommand({ MinCount: 1, MaxCount: 1 }))).rejects.toThrow(/RunInstances is not modelled/);
  });

  it('failNext: the next calls of a command fail with the given errors, changing nothing', async () => {
    const volumeId = model.addVolume({ az: AZ, size: 1 });
    model.failNext('CreateTags', ec2Error('InternalError', 'boom', { fault: 'server' }), ec2Error('InvalidParameterValue', 'nope'));
    const tag = () => ec2.send(new CreateTagsCommand({ Resources: [volumeId], Tags: [{ Key: 'k', Value: 'v' }] }));
    await expectCode(tag(), 'InternalError');
    await expectCode(tag(), 'InvalidParameterValue');
    expect(model.volume(volumeId).tags).toEqual({});
    await tag();
    expect(model.volume(volumeId).tags).toEqual({ k: 'v' });
  });

  it('fails the next N DescribeVolumes with server faults, then answers', async () => {
    model.faults.failDescribeVolumes = 2;
    const first = await ec2ErrorOf(ec2.send(new DescribeVolumesCommand({})));
    const second = await ec2ErrorOf(ec2.send(new DescribeVolumesCommand({})));
    expect([first.name, first.$fault, first.$metadata.httpStatusCode]).toEqual(['Unavailable', 'server', 503]);
    expect([second.name, second.$fault, second.$metadata.httpStatusCode]).toEqual(['InternalError', 'server', 500]);
    await expect(ec2.send(new DescribeVolumesCommand({}))).resolves.toMatchObject({ Volumes: [] });
  });
});

describe('Ec2Model: CreateVolume', () => {
  it('creates a tagged volume that is creating, then available, with an EC2-shaped id', async () => {
    const out = await ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: AZ,
        Size: 20,
        VolumeType: 'gp3',
        TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'berth:volume', Value: 'db' }] }],
      }),
    );
    expect(out.VolumeId).toMatch(/^vol-[0-9a-f]{17}$/);
    expect(out).toMatchObject({ State: 'creating', Size: 20, Iops: 3000, Throughput: 125, Encrypted: false });
    await model.settled();
    expect(model.volume(out.VolumeId!)).toMatchObject({ state: 'available', az: AZ, tags: { 'berth:volume': 'db' } });
    expect(await describe1(out.VolumeId!)).toMatchObject({ State: 'available', Tags: [{ Key: 'berth:volume', Value: 'db' }], Attachments: [] });
  });

  it('needs an availability zone of the region, and a size or snapshot', async () => {
    await expectCode(ec2.send(new CreateVolumeCommand({ Size: 1 })), 'MissingParameter', /AvailabilityZone/);
    await expectCode(ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 1 })), 'InvalidParameterValue', /availability zone/);
    await expectCode(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ })), 'MissingParameter', /size or snapshotId/);
    expect(model.volumes()).toEqual([]);
  });

  it.each([
    ['gp3', 16384, true],
    ['gp3', 65536, true],
    ['gp3', 65537, false],
    ['gp3', 0, false],
    ['gp2', 16384, true],
    ['io1', 3, false],
    ['io2', 65536, true],
    ['io2', 65537, false],
    ['st1', 124, false],
    ['st1', 125, true],
    ['sc1', 16385, false],
    ['standard', 1025, false],
  ] as const)('size limit: %s of %i GiB is accepted=%s', async (type, size, accepted) => {
    const iops = type === 'io1' || type === 'io2' ? 100 : undefined;
    const call = ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: size, VolumeType: type, Iops: iops }));
    if (accepted) await expect(call).resolves.toMatchObject({ Size: size, VolumeType: type });
    else await expectCode(call, 'InvalidParameterValue', /GiB/);
  });

  it.each([
    [{ VolumeType: 'gp2', Iops: 3000 }, 'InvalidParameterCombination'],
    [{ VolumeType: 'st1', Size: 500, Iops: 500 }, 'InvalidParameterCombination'],
    [{ VolumeType: 'gp3', Iops: 2999 }, 'InvalidParameterValue'],
    [{ VolumeType: 'gp3', Size: 200, Iops: 80001 }, 'InvalidParameterValue'],
    [{ VolumeType: 'gp3', Size: 10, Iops: 6000 }, 'InvalidParameterValue'], // above 500 IOPS per GiB
    [{ VolumeType: 'io1', Size: 100 }, 'MissingParameter'],
    [{ VolumeType: 'io1', Size: 2000, Iops: 64001 }, 'InvalidParameterValue'],
    [{ VolumeType: 'io2', Size: 16000, Iops: 256001 }, 'InvalidParameterValue'],
    [{ VolumeType: 'io1', Size: 100, Iops: 1000, Throughput: 200 }, 'InvalidParameterCombination'],
    [{ VolumeType: 'gp3', Throughput: 124 }, 'InvalidParameterValue'],
    [{ VolumeType: 'gp3', Size: 100, Iops: 16000, Throughput: 2001 }, 'InvalidParameterValue'],
    [{ VolumeType: 'gp3', Throughput: 1000 }, 'InvalidParameterValue'], // 3000 IOPS allow 750 MiB/s
  ] as const)('performance options %j fail with %s', async (params, code) => {
    await expectCode(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 10, ...params })), code);
    expect(model.volumes()).toEqual([]);
  });

  it('accepts the top of each range', async () => {
    await expect(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 160, VolumeType: 'gp3', Iops: 80000, Throughput: 2000 }))).resolves.toMatchObject({
      Iops: 80000,
      Throughput: 2000,
    });
    await expect(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 256, VolumeType: 'io2', Iops: 256000 }))).resolves.toMatchObject({ Iops: 256000 });
    await expect(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 1280, VolumeType: 'io1', Iops: 64000 }))).resolves.toMatchObject({ Iops: 64000 });
  });

  it('an unknown KMS key fails asynchronously like EC2: the volume turns to error', async () => {
    model.faults.unknownKmsKeys.add('alias/missing');
    const out = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 5, Encrypted: true, KmsKeyId: 'alias/missing' }));
    expect(out.State).toBe('creating');
    await model.settled();
    expect((await describe1(out.VolumeId!)).State).toBe('error');
    await expectCode(
      ec2.send(new AttachVolumeCommand({ VolumeId: out.VolumeId!, InstanceId: model.addInstance({ az: AZ }), Device: '/dev/xvdba' })),
      'IncorrectState',
    );
  });

  it('with unknownKmsKeyOutcome deleted, the volume vanishes instead', async () => {
    setup({ knownKmsKeys: ['alias/berth'], unknownKmsKeyOutcome: 'deleted' });
    const good = await createAvailable({ Encrypted: true, KmsKeyId: 'alias/berth' });
    const bad = await createAvailable({ Encrypted: true, KmsKeyId: 'alias/other' });
    expect((await describe1(good)).KmsKeyId).toMatch(/^arn:aws:kms:eu-west-1:123456789012:key\/[0-9a-f-]{36}$/);
    await expectCode(ec2.send(new DescribeVolumesCommand({ VolumeIds: [bad] })), 'InvalidVolume.NotFound');
  });

  it('KmsKeyId needs Encrypted; Encrypted alone uses the default key', async () => {
    await expectCode(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 5, KmsKeyId: 'alias/berth' })), 'InvalidParameterDependency');
    const id = await createAvailable({ Encrypted: true });
    expect(model.volume(id)).toMatchObject({ encrypted: true, kmsKeyId: expect.stringMatching(/^arn:aws:kms:/) });
  });

  it('restores from a known snapshot only, at least its size', async () => {
    const snapshotId = model.addSnapshot({ size: 8 });
    await expectCode(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, SnapshotId: 'snap-0123456789abcdef0' })), 'InvalidSnapshot.NotFound');
    await expectCode(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, SnapshotId: 'snap-x' })), 'InvalidSnapshotID.Malformed');
    await expectCode(ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, SnapshotId: snapshotId, Size: 4 })), 'InvalidParameterValue');
    const out = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, SnapshotId: snapshotId }));
    expect(out).toMatchObject({ Size: 8, SnapshotId: snapshotId });
  });

  it('ClientToken: the same token and parameters give the same volume; other parameters fail', async () => {
    const params = {
      AvailabilityZone: AZ,
      Size: 10,
      VolumeType: 'gp3' as const,
      ClientToken: 'berth-db-host1',
      TagSpecifications: [{ ResourceType: 'volume' as const, Tags: [{ Key: 'berth:volume', Value: 'db' }] }],
    };
    const first = await ec2.send(new CreateVolumeCommand(params));
    await model.settled();
    const again = await ec2.send(new CreateVolumeCommand({ ...params }));
    expect(again.VolumeId).toBe(first.VolumeId);
    expect(again.State).toBe('available');
    expect(model.volumes()).toHaveLength(1);
    await expectCode(ec2.send(new CreateVolumeCommand({ ...params, Size: 11 })), 'IdempotentParameterMismatch');
    expect(model.volumes()).toHaveLength(1);
  });

  it('ClientToken: a token is remembered after its volume is deleted: the same input answers the deleted volume, another input mismatches', async () => {
    const params = { AvailabilityZone: AZ, Size: 1, VolumeType: 'gp3' as const, ClientToken: 'spent' };
    const first = await ec2.send(new CreateVolumeCommand(params));
    await model.settled();
    await ec2.send(new DeleteVolumeCommand({ VolumeId: first.VolumeId! }));
    const replay = await ec2.send(new CreateVolumeCommand({ ...params }));
    expect(replay.VolumeId).toBe(first.VolumeId);
    expect(model.volumes()).toHaveLength(0);
    await expectCode(ec2.send(new CreateVolumeCommand({ ...params, Size: 2 })), 'IdempotentParameterMismatch');
    expect(model.inputs('CreateVolume')).toHaveLength(3);
  });

  it('requireDetachInstanceId: DetachVolume without InstanceId is MissingParameter, with it detaches', async () => {
    setup({ requireDetachInstanceId: true });
    const instance = model.addInstance({ az: AZ });
    const volumeId = model.addVolume({ az: AZ, size: 1, attachedTo: { instanceId: instance, device: '/dev/xvdba' } });
    await expectCode(ec2.send(new DetachVolumeCommand({ VolumeId: volumeId })), 'MissingParameter', /instanceId/);
    await ec2.send(new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: instance }));
    await model.settled();
    expect(model.volume(volumeId).attachment).toBeUndefined();
  });
});

describe('Ec2Model: tags', () => {
  it('CreateTags and DeleteTags work on volumes and instances', async () => {
    const volumeId = await createAvailable();
    const instanceId = model.addInstance({ az: AZ, tags: { Name: 'web' } });
    await ec2.send(new CreateTagsCommand({ Resources: [volumeId, instanceId], Tags: [{ Key: 'berth:host', Value: 'h1' }, { Key: 'x', Value: '1' }] }));
    expect(model.volume(volumeId).tags).toEqual({ 'berth:host': 'h1', x: '1' });
    expect(model.instance(instanceId).tags).toEqual({ Name: 'web', 'berth:host': 'h1', x: '1' });
    await ec2.send(new DeleteTagsCommand({ Resources: [volumeId], Tags: [{ Key: 'berth:host', Value: 'other' }, { Key: 'x' }] }));
    expect(model.volume(volumeId).tags).toEqual({ 'berth:host': 'h1' });
    await ec2.send(new DeleteTagsCommand({ Resources: [instanceId] }));
    expect(model.instance(instanceId).tags).toEqual({});
  });

  it('tagLagMs: DescribeVolumes shows tag changes (Tags and tag filters) that long after, to every reader; tags given at creation come with the volume', async () => {
    let t = 1_000_000;
    setup({ tagLagMs: 1_000, now: () => t });
    const volumeId = await createAvailable({ TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'berth:volume', Value: 'pg' }] }] });
    expect((await describe1(volumeId)).Tags).toEqual([{ Key: 'berth:volume', Value: 'pg' }]);
    await ec2.send(new CreateTagsCommand({ Resources: [volumeId], Tags: [{ Key: 'berth:move', Value: 'a' }] }));
    t += 400;
    await ec2.send(new CreateTagsCommand({ Resources: [volumeId], Tags: [{ Key: 'berth:move', Value: 'b' }] }));
    const moving = () => ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:berth:move', Values: ['a', 'b'] }] }));
    expect((await describe1(volumeId)).Tags).toEqual([{ Key: 'berth:volume', Value: 'pg' }]);
    expect((await moving()).Volumes).toEqual([]);
    expect(model.volume(volumeId).tags['berth:move']).toBe('b'); // the model's own view is current
    t += 600; // the first write is 1 s old, the second 0.6 s
    expect((await describe1(volumeId)).Tags).toContainEqual({ Key: 'berth:move', Value: 'a' });
    t += 400;
    expect((await describe1(volumeId)).Tags).toContainEqual({ Key: 'berth:move', Value: 'b' });
    await ec2.send(new DeleteTagsCommand({ Resources: [volumeId], Tags: [{ Key: 'berth:move' }] }));
    expect((await moving()).Volumes?.map((v) => v.VolumeId)).toEqual([volumeId]);
    t += 1_000;
    expect((await moving()).Volumes).toEqual([]);
  });

  it('an unknown id fails the whole call and tags nothing', async () => {
    const volumeId = await createAvailable();
    await expectCode(
      ec2.send(new CreateTagsCommand({ Resources: [volumeId, 'vol-0123456789abcdef0'], Tags: [{ Key: 'k', Value: 'v' }] })),
      'InvalidVolume.NotFound',
      /vol-0123456789abcdef0/,
    );
    await expectCode(ec2.send(new CreateTagsCommand({ Resources: ['i-0123456789abcdef0'], Tags: [{ Key: 'k', Value: 'v' }] })), 'InvalidInstanceID.NotFound');
    await expectCode(ec2.send(new DeleteTagsCommand({ Resources: ['vol-0123456789abcdef0'] })), 'InvalidVolume.NotFound');
    expect(model.volume(volumeId).tags).toEqual({});
  });

  it('rejects reserved and oversized tags', async () => {
    const volumeId = await createAvailable();
    await expectCode(ec2.send(new CreateTagsCommand({ Resources: [volumeId], Tags: [{ Key: 'aws:x', Value: 'v' }] })), 'InvalidParameterValue');
    await expectCode(ec2.send(new CreateTagsCommand({ Resources: [volumeId], Tags: [{ Key: 'k', Value: 'v'.repeat(257) }] })), 'InvalidParameterValue');
    const many = Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: '' }));
    await expectCode(ec2.send(new CreateTagsCommand({ Resources: [volumeId], Tags: many })), 'TagLimitExceeded');
  });

  it('DescribeTags filters by resource and key', async () => {
    const volumeId = await createAvailable({ TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'berth:volume', Value: 'db' }] }] });
    model.addInstance({ az: AZ, tags: { 'berth:volume': 'not-a-volume' } });
    const out = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: 'resource-type', Values: ['volume'] }, { Name: 'key', Values: ['berth:*'] }] }));
    expect(out.Tags).toEqual([{ ResourceId: volumeId, ResourceType: 'volume', Key: 'berth:volume', Value: 'db' }]);
  });
});

describe('Ec2Model: DescribeVolumes', () => {
  it('fails the whole call for an unknown or malformed id', async () => {
    const volumeId = await createAvailable();
    await expectCode(ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId, 'vol-0123456789abcdef0'] })), 'InvalidVolume.NotFound', /vol-0123456789abcdef0/);
    await expectCode(ec2.send(new DescribeVolumesCommand({ VolumeIds: ['db'] })), 'InvalidVolumeID.Malformed');
  });

  it('filters by tags, tag keys, wildcards, AZ, status and attachment', async () => {
    const instanceId = model.addInstance({ az: AZ });
    const db = model.addVolume({ az: AZ, size: 1, tags: { 'berth:volume': 'db', 'berth:host': 'h1' }, attachedTo: { instanceId, device: '/dev/xvdba' } });
    const cache = model.addVolume({ az: AZ, size: 1, tags: { 'berth:volume': 'cache', 'berth:host': 'h1' } });
    const other = model.addVolume({ az: 'eu-west-1b', size: 1, tags: { 'berth:volume': 'db', 'berth:host': 'h2' } });
    model.addVolume({ az: AZ, size: 1 });
    const ids = async (filters: { Name: string; Values: string[] }[]) =>
      ((await ec2.send(new DescribeVolumesCommand({ Filters: filters }))).Volumes ?? []).map((v) => v.VolumeId).sort();

    expect(await ids([{ Name: 'tag:berth:host', Values: ['h1'] }])).toEqual([db, cache].sort());
    expect(await ids([{ Name: 'tag:berth:volume', Values: ['db'] }, { Name: 'tag:berth:host', Values: ['h1', 'h2'] }])).toEqual([db, other].sort());
    expect(await ids([{ Name: 'tag-key', Values: ['berth:volume'] }])).toEqual([db, cache, other].sort());
    expect(await ids([{ Name: 'tag:berth:volume', Values: ['c*'] }])).toEqual([cache]);
    expect(await ids([{ Name: 'tag:berth:volume', Values: ['d?'] }, { Name: 'availability-zone', Values: ['eu-west-1b'] }])).toEqual([other]);
    expect(await ids([{ Name: 'attachment.instance-id', Values: [instanceId] }, { Name: 'attachment.status', Values: ['attached'] }])).toEqual([db]);
    expect(await ids([{ Name: 'attachment.device', Values: ['/dev/xvdba'] }])).toEqual([db]);
    expect(await ids([{ Name: 'status', Values: ['in-use'] }])).toEqual([db]);
    expect(await ids([{ Name: 'volume-id', Values: [cache] }])).toEqual([cache]);
    await expectCode(ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'colour', Values: ['red'] }] })), 'InvalidParameterValue', /colour/);
  });

  it('pages with MaxResults (5 to 500) and NextToken, and the SDK paginator reads every page', async () => {
    const created = Array.from({ length: 12 }, () => model.addVolume({ az: AZ, size: 1, tags: { 'berth:host': 'h1' } }));
    const first = await ec2.send(new DescribeVolumesCommand({ MaxResults: 5 }));
    expect(first.Volumes).toHaveLength(5);
    model.removeTags(created[0]!, ['berth:host']);
    const second = await ec2.send(new DescribeVolumesCommand({ MaxResults: 5, NextToken: first.NextToken }));
    const third = await ec2.send(new DescribeVolumesCommand({ MaxResults: 5, NextToken: second.NextToken }));
    expect(third.NextToken).toBeUndefined();
    expect([...first.Volumes!, ...second.Volumes!, ...third.Volumes!].map((v) => v.VolumeId)).toEqual(created);

    const seen: string[] = [];
    for await (const page of paginateDescribeVolumes({ client: ec2, pageSize: 5 }, { Filters: [{ Name: 'tag:berth:host', Values: ['h1'] }] })) {
      seen.push(...page.Volumes!.map((v) => v.VolumeId!));
    }
    expect(seen).toEqual(created.slice(1));

    await expectCode(ec2.send(new DescribeVolumesCommand({ MaxResults: 4 })), 'InvalidParameterValue');
    await expectCode(ec2.send(new DescribeVolumesCommand({ MaxResults: 501 })), 'InvalidParameterValue');
    await expectCode(ec2.send(new DescribeVolumesCommand({ MaxResults: 5, VolumeIds: [created[0]!] })), 'InvalidParameterCombination');
    await expectCode(ec2.send(new DescribeVolumesCommand({ NextToken: 'garbage' })), 'InvalidPaginationToken');
  });
});

describe('Ec2Model: attach and detach', () => {
  it('attaching → onAttached awaited → attached; detaching → onDetached awaited → available', async () => {
    const events: string[] = [];
    model.onAttached = async (volumeId, device, instanceId) => {
      events.push(`hook-attach ${model.volume(volumeId).attachment?.state} ${device} ${instanceId === instance}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
      events.push('hook-attach done');
    };
    model.onDetached = async (volumeId, device) => {
      events.push(`hook-detach ${model.volume(volumeId).attachment?.state} ${device}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
      events.push('hook-detach done');
    };
    const instance = model.addInstance({ az: AZ });
    const volumeId = await createAvailable();
    const out = await ec2.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instance, Device: '/dev/xvdba' }));
    expect(out).toMatchObject({ State: 'attaching', InstanceId: instance, Device: '/dev/xvdba', VolumeId: volumeId });
    expect(await describe1(volumeId)).toMatchObject({ State: 'in-use', Attachments: [{ State: 'attaching', InstanceId: instance }] });
    await model.settled();
    expect(await describe1(volumeId)).toMatchObject({
      State: 'in-use',
      Attachments: [{ State: 'attached', InstanceId: instance, Device: '/dev/xvdba', DeleteOnTermination: false, AttachTime: expect.any(Date) }],
    });

    const detached = await ec2.send(new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: instance }));
    expect(detached.State).toBe('detaching');
    await model.settled();
    expect(await describe1(volumeId)).toMatchObject({ State: 'available', Attachments: [] });
    expect(events).toEqual(['hook-attach attaching /dev/xvdba true', 'hook-attach done', 'hook-detach detaching /dev/xvdba', 'hook-detach done']);
  });

  it('a hook that throws leaves the attachment attaching and keeps the error', async () => {
    model.onAttached = () => {
      throw new Error('no loop device');
    };
    const instance = model.addInstance({ az: AZ });
    const volumeId = await createAvailable();
    await ec2.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instance, Device: '/dev/xvdba' }));
    await model.settled();
    expect(model.volume(volumeId).attachment?.state).toBe('attaching');
    expect(model.hookErrors.map((e) => e.message)).toEqual(['no loop device']);
  });

  it('refuses a volume in use, another AZ, a busy device name, a bad device name, a stopped-for-good instance', async () => {
    const instance = model.addInstance({ az: AZ });
    const elsewhere = model.addInstance({ az: 'eu-west-1b' });
    const dead = model.addInstance({ az: AZ, state: 'terminated' });
    const attached = model.addVolume({ az: AZ, size: 1, attachedTo: { instanceId: instance, device: '/dev/xvdba' } });
    const free = model.addVolume({ az: AZ, size: 1 });
    const attach = (VolumeId: string, InstanceId: string, Device: string) => ec2.send(new AttachVolumeCommand({ VolumeId, InstanceId, Device }));

    await expectCode(attach(attached, instance, '/dev/xvdbb'), 'VolumeInUse', /already attached to an instance/);
    await expectCode(attach(free, elsewhere, '/dev/xvdba'), 'InvalidVolume.ZoneMismatch');
    await expectCode(attach(free, instance, '/dev/xvdba'), 'InvalidParameterValue', /Attachment point \/dev\/xvdba is already in use/);
    await expectCode(attach(free, instance, '/dev/nvme1n1'), 'InvalidParameterValue', /not a valid EBS device name/);
    await expectCode(attach(free, dead, '/dev/xvdba'), 'IncorrectInstanceState');
    await expectCode(attach('vol-0123456789abcdef0', instance, '/dev/xvdbc'), 'InvalidVolume.NotFound');
    await expectCode(attach(free, 'i-0123456789abcdef0', '/dev/xvdbc'), 'InvalidInstanceID.NotFound');
    expect(model.volume(free)).toMatchObject({ state: 'available', attachment: undefined });
  });

  it('a stuck volume stays attaching until it is detached', async () => {
    const instance = model.addInstance({ az: AZ });
    const volumeId = await createAvailable();
    model.faults.stuckAttaching.add(volumeId);
    let hookCalls = 0;
    model.onAttached = () => void hookCalls++;
    model.onDetached = () => void hookCalls++;
    await ec2.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instance, Device: '/dev/xvdba' }));
    await new Promise((resolve) => setTimeout(resolve, 30));
    await model.settled();
    expect(model.volume(volumeId).attachment?.state).toBe('attaching');
    await ec2.send(new DetachVolumeCommand({ VolumeId: volumeId, Force: true }));
    await model.settled();
    expect(model.volume(volumeId)).toMatchObject({ state: 'available', attachment: undefined });
    expect(hookCalls).toBe(0);
  });

  it('a stuck detach completes only when forced', async () => {
    const instance = model.addInstance({ az: AZ });
    const volumeId = model.addVolume({ az: AZ, size: 1, attachedTo: { instanceId: instance, device: '/dev/xvdba' } });
    model.faults.stuckDetaching.add(volumeId);
    await ec2.send(new DetachVolumeCommand({ VolumeId: volumeId }));
    await model.settled();
    expect(model.volume(volumeId).attachment?.state).toBe('detaching');
    await ec2.send(new DetachVolumeCommand({ VolumeId: volumeId, Force: true }));
    await model.settled();
    expect(model.volume(volumeId).state).toBe('available');
  });

  it('detach needs an attachment matching the instance and device given', async () => {
    const instance = model.addInstance({ az: AZ });
    const other = model.addInstance({ az: AZ });
    const volumeId = model.addVolume({ az: AZ, size: 1, attachedTo: { instanceId: instance, device: '/dev/xvdba' } });
    const free = model.addVolume({ az: AZ, size: 1 });
    await expectCode(ec2.send(new DetachVolumeCommand({ VolumeId: free })), 'IncorrectState', /available/);
    await expectCode(ec2.send(new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: other })), 'InvalidAttachment.NotFound');
    await expectCode(ec2.send(new DetachVolumeCommand({ VolumeId: volumeId, Device: '/dev/xvdbb' })), 'InvalidAttachment.NotFound');
    expect(model.volume(volumeId).attachment?.state).toBe('attached');
  });

  it('DeleteVolume only when available; then the volume is gone', async () => {
    const instance = model.addInstance({ az: AZ });
    const volumeId = model.addVolume({ az: AZ, size: 1, attachedTo: { instanceId: instance, device: '/dev/xvdba' } });
    await expectCode(ec2.send(new DeleteVolumeCommand({ VolumeId: volumeId })), 'VolumeInUse');
    await ec2.send(new DetachVolumeCommand({ VolumeId: volumeId }));
    await model.settled();
    await ec2.send(new DeleteVolumeCommand({ VolumeId: volumeId }));
    expect(model.hasVolume(volumeId)).toBe(false);
    await expectCode(ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] })), 'InvalidVolume.NotFound');
    await expectCode(ec2.send(new DeleteVolumeCommand({ VolumeId: volumeId })), 'InvalidVolume.NotFound');
  });

  it('terminating an instance detaches its volumes (onDetached fires); DeleteOnTermination volumes are deleted', async () => {
    const detachedHooks: string[] = [];
    model.onAttached = () => undefined;
    model.onDetached = (volumeId) => void detachedHooks.push(volumeId);
    const old = model.addInstance({ az: AZ, tags: { 'berth:host': 'h1' } });
    const data = model.addVolume({ az: AZ, size: 1, attachedTo: { instanceId: old, device: '/dev/xvdba' } });
    const root = model.addVolume({ az: AZ, size: 8, attachedTo: { instanceId: old, device: '/dev/xvda', deleteOnTermination: true } });
    await model.settled();
    const termination = model.setInstanceState(old, 'terminated');
    expect(model.volume(data).attachment?.state).toBe('detaching');
    await termination;
    expect(model.volume(data)).toMatchObject({ state: 'available', attachment: undefined });
    expect(model.hasVolume(root)).toBe(false);
    expect(detachedHooks.sort()).toEqual([data, root].sort());

    const replacement = model.addInstance({ az: AZ, tags: { 'berth:host': 'h1' } });
    await ec2.send(new AttachVolumeCommand({ VolumeId: data, InstanceId: replacement, Device: '/dev/xvdba' }));
    await model.settled();
    expect(model.volume(data).attachment).toMatchObject({ instanceId: replacement, state: 'attached' });
  });

  it('stopping an instance keeps its volumes attached', async () => {
    const instance = model.addInstance({ az: AZ });
    const volumeId = model.addVolume({ az: AZ, size: 1, attachedTo: { instanceId: instance, device: '/dev/xvdba' } });
    await model.setInstanceState(instance, 'stopped');
    expect(model.volume(volumeId).attachment?.state).toBe('attached');
  });

  it('drift helpers change the world behind the caller', async () => {
    const instance = model.addInstance({ az: AZ });
    const volumeId = model.addVolume({ az: AZ, size: 1, tags: { 'berth:host': 'h1' }, attachedTo: { instanceId: instance, device: '/dev/xvdba' } });
    await model.detachOutOfBand(volumeId);
    model.setTags(volumeId, { 'berth:host': 'h2' });
    expect(await describe1(volumeId)).toMatchObject({ State: 'available', Tags: [{ Key: 'berth:host', Value: 'h2' }] });
    expect(model.calls()).toBe(1);
  });

  it('ModifyVolume grows a volume and never shrinks it', async () => {
    const volumeId = await createAvailable({ Size: 10 });
    const out = await ec2.send(new ModifyVolumeCommand({ VolumeId: volumeId, Size: 20 }));
    expect(out.VolumeModification).toMatchObject({ OriginalSize: 10, TargetSize: 20 });
    expect((await describe1(volumeId)).Size).toBe(20);
    await expectCode(ec2.send(new ModifyVolumeCommand({ VolumeId: volumeId, Size: 5 })), 'InvalidParameterValue', /smaller/);
    await expectCode(ec2.send(new ModifyVolumeCommand({ VolumeId: volumeId, Size: 70000 })), 'InvalidParameterValue');
  });
});

describe('Ec2Model: DescribeInstances', () => {
  it('filters by tag and state and lists attached volumes as block device mappings', async () => {
    const running = model.addInstance({ az: AZ, tags: { 'berth:host': 'h1' } });
    const gone = model.addInstance({ az: AZ, tags: { 'berth:host': 'h1' }, state: 'terminated' });
    model.addInstance({ az: 'eu-west-1b', tags: { 'berth:host': 'h2' } });
    const volumeId = model.addVolume({ az: AZ, size: 1, attachedTo: { instanceId: running, device: '/dev/xvdba' } });

    const out = await ec2.send(
      new DescribeInstancesCommand({ Filters: [{ Name: 'tag:berth:host', Values: ['h1'] }, { Name: 'instance-state-name', Values: ['running', 'pending'] }] }),
    );
    const instances = out.Reservations!.flatMap((r) => r.Instances!);
    expect(instances).toHaveLength(1);
    expect(instances[0]).toMatchObject({
      InstanceId: running,
      State: { Name: 'running', Code: 16 },
      Placement: { AvailabilityZone: AZ },
      Tags: [{ Key: 'berth:host', Value: 'h1' }],
      BlockDeviceMappings: [{ DeviceName: '/dev/xvdba', Ebs: { VolumeId: volumeId, Status: 'attached' } }],
    });
    const byId = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [gone] }));
    expect(byId.Reservations![0]!.Instances![0]!.State).toEqual({ Name: 'terminated', Code: 48 });
    await expectCode(ec2.send(new DescribeInstancesCommand({ InstanceIds: ['i-0123456789abcdef0'] })), 'InvalidInstanceID.NotFound');
  });
});

describe('Ec2Model: throttling with AWS token buckets', () => {
  let clock = 0;
  beforeEach(() => {
    clock = 0;
    setup({ now: () => clock });
  });

  it('60 AttachVolume in one burst: 50 pass, 10 RequestLimitExceeded; 1 s later 5 more pass', async () => {
    const instance = model.addInstance({ az: AZ });
    const volumes = Array.from({ length: 66 }, () => model.addVolume({ az: AZ, size: 1 }));
    const device = (i: number) => `/dev/xvd${String.fromCharCode(98 + Math.floor(i / 26))}${String.fromCharCode(97 + (i % 26))}`;
    const attach = (i: number) => ec2.send(new AttachVolumeCommand({ VolumeId: volumes[i]!, InstanceId: instance, Device: device(i) }));

    const burst = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => attach(i)));
    const names = burst.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as Error).name));
    expect(names.filter((n) => n === 'ok')).toHaveLength(50);
    expect(names.filter((n) => n === 'RequestLimitExceeded')).toHaveLength(10);
    expect(model.volumes().filter((v) => v.attachment)).toHaveLength(50);

    clock += 1000;
    const after = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => attach(60 + i)));
    expect(after.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    // DetachVolume shares the bucket, DescribeVolumes has its own.
    await expectCode(ec2.send(new DetachVolumeCommand({ VolumeId: volumes[0]! })), 'RequestLimitExceeded');
    await expect(ec2.send(new DescribeVolumesCommand({}))).resolves.toBeDefined();
    expect(model.throttledCalls('AttachVolume')).toBe(11);
  });

  it('DescribeVolumes: 100 at once, then 20 per second; without filters or ids 50, then 10 per second, in a bucket of their own', async () => {
    const filtered = () => ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:k', Values: ['v'] }] }));
    const burst = await Promise.allSettled(Array.from({ length: 101 }, filtered));
    expect(burst.filter((r) => r.status === 'rejected')).toHaveLength(1);
    const unfiltered = await Promise.allSettled(Array.from({ length: 51 }, () => ec2.send(new DescribeVolumesCommand({}))));
    expect(unfiltered.filter((r) => r.status === 'rejected')).toHaveLength(1);
    clock += 500;
    const half = await Promise.allSettled(Array.from({ length: 11 }, filtered));
    expect(half.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
    const halfUnfiltered = await Promise.allSettled(Array.from({ length: 6 }, () => ec2.send(new DescribeVolumesCommand({}))));
    expect(halfUnfiltered.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
  });

  it('CreateVolume refills 5/s and CreateTags 10/s', async () => {
    setup({ now: () => clock, buckets: { createVolume: { capacity: 2, refillPerSecond: 5 }, tags: { capacity: 1, refillPerSecond: 10 } } });
    const create = () => ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 1 }));
    await create();
    await create();
    await expectCode(create(), 'RequestLimitExceeded');
    expect(model.volumes()).toHaveLength(2);
    clock += 200;
    await create();
    const volumeId = model.volumes()[0]!.volumeId;
    const tag = () => ec2.send(new CreateTagsCommand({ Resources: [volumeId], Tags: [{ Key: 'k', Value: 'v' }] }));
    await tag();
    await expectCode(ec2.send(new DeleteTagsCommand({ Resources: [volumeId] })), 'RequestLimitExceeded');
    expect(model.volume(volumeId).tags).toEqual({ k: 'v' });
    clock += 100;
    await tag();
  });

  it('behind the SDK adaptive retry, a burst of 60 attaches all completes once the bucket refills', async () => {
    setup();
    const client = new EC2Client({ region: REGION, credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 10, retryMode: 'adaptive' });
    model.installBehindSdkRetries(client);
    const instance = model.addInstance({ az: AZ });
    const volumes = Array.from({ length: 60 }, () => model.addVolume({ az: AZ, size: 1 }));
    const device = (i: number) => `/dev/xvd${String.fromCharCode(98 + Math.floor(i / 26))}${String.fromCharCode(97 + (i % 26))}`;
    await Promise.all(volumes.map((VolumeId, i) => client.send(new AttachVolumeCommand({ VolumeId, InstanceId: instance, Device: device(i) }))));
    await model.settled();
    expect(model.volumes().every((v) => v.attachment?.state === 'attached')).toBe(true);
    expect(model.throttledCalls('AttachVolume')).toBeGreaterThanOrEqual(10);
  });

  it('can be switched off', async () => {
    setup({ throttling: false });
    const burst = await Promise.allSettled(Array.from({ length: 150 }, () => ec2.send(new DescribeVolumesCommand({}))));
    expect(burst.every((r) => r.status === 'fulfilled')).toBe(true);
  });
});
