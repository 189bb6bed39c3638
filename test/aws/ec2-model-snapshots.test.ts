import { CreateSnapshotCommand, CreateVolumeCommand, DescribeSnapshotsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { afterEach, describe, expect, it } from 'vitest';
import { Ec2Model } from './ec2-model.js';

/**
 * The model's snapshots behind the SDK (issue 22, zone moves): CreateSnapshot and DescribeSnapshots as
 * the EC2 API reference has them: pending → completed (or error) with progress, the volume's size,
 * encryption and KMS key copied, tags at creation, no ClientToken, restores only from a completed
 * snapshot, into any zone of the region, with the snapshot's data.
 */
const AZ = 'eu-west-1a';
const KMS = 'arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555';
let model: Ec2Model;
let ec2: EC2Client;
afterEach(() => model?.dispose());

function setup() {
  model = new Ec2Model({ snapshotLatencyMs: 40, createLatencyMs: 2 });
  ec2 = new EC2Client({ region: model.region, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  model.install(ec2);
}
const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { name?: string }) => e.name);

describe('EC2 model: snapshots', () => {
  it('pending with progress, then completed; copies size, encryption and KMS key; tags from TagSpecifications; a point-in-time copy of the data', async () => {
    setup();
    const vol = model.addVolume({ az: AZ, size: 30, type: 'io2', iops: 3000, encrypted: true, kmsKeyId: KMS });
    model.writeContent(vol, 'v1');
    const out = await ec2.send(new CreateSnapshotCommand({ VolumeId: vol, TagSpecifications: [{ ResourceType: 'snapshot', Tags: [{ Key: 'berth:move-of', Value: `${vol} m1` }] }] }));
    expect(out).toMatchObject({ State: 'pending', Progress: '0%', VolumeId: vol, VolumeSize: 30, Encrypted: true, KmsKeyId: KMS, OwnerId: model.accountId });
    expect(out.SnapshotId).toMatch(/^snap-[0-9a-f]{17}$/);
    model.writeContent(vol, 'v2 (after the snapshot)');
    const byTag = await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: [{ Name: 'tag:berth:move-of', Values: [`${vol} m1`] }] }));
    expect(byTag.Snapshots?.map((s) => s.SnapshotId)).toEqual([out.SnapshotId]);
    // Not restorable before it completes.
    expect(await code(ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'eu-west-1b', SnapshotId: out.SnapshotId })))).toBe('IncorrectState');
    await model.settled();
    const done = (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [out.SnapshotId!] }))).Snapshots![0]!;
    expect(done).toMatchObject({ State: 'completed', Progress: '100%' });
    // Restored into another zone of the region, encrypted with the snapshot's key, with the data as it was.
    const restored = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'eu-west-1b', SnapshotId: out.SnapshotId, VolumeType: 'io2', Iops: 3000 }));
    expect(restored).toMatchObject({ AvailabilityZone: 'eu-west-1b', Size: 30, Encrypted: true, KmsKeyId: KMS, SnapshotId: out.SnapshotId });
    expect(model.content(restored.VolumeId!)).toBe('v1');
    // No ClientToken: a second call is a second snapshot.
    await ec2.send(new CreateSnapshotCommand({ VolumeId: vol }));
    expect(model.snapshotList()).toHaveLength(2);
  });

  it('refuses what EC2 refuses: unknown or creating volumes, other resource types in TagSpecifications, a sixth pending snapshot; a failing snapshot ends in error', async () => {
    setup();
    expect(await code(ec2.send(new CreateSnapshotCommand({ VolumeId: 'vol-0123456789abcdef0' })))).toBe('InvalidVolume.NotFound');
    const creating = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: AZ, Size: 1 }));
    expect(await code(ec2.send(new CreateSnapshotCommand({ VolumeId: creating.VolumeId })))).toBe('IncorrectState');
    const vol = model.addVolume({ az: AZ, size: 1 });
    expect(await code(ec2.send(new CreateSnapshotCommand({ VolumeId: vol, TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'a', Value: 'b' }] }] })))).toBe('InvalidParameterValue');
    for (let i = 0; i < 5; i++) await ec2.send(new CreateSnapshotCommand({ VolumeId: vol }));
    expect(await code(ec2.send(new CreateSnapshotCommand({ VolumeId: vol })))).toBe('SnapshotCreationPerVolumeRateExceeded');
    const bad = model.addVolume({ az: AZ, size: 1 });
    model.faults.failingSnapshots.add(bad);
    const failed = await ec2.send(new CreateSnapshotCommand({ VolumeId: bad }));
    await model.settled();
    expect(model.snapshot(failed.SnapshotId!).state).toBe('error');
    expect(await code(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-0123456789abcdef0'] })))).toBe('InvalidSnapshot.NotFound');
    const completed = await ec2.send(new DescribeSnapshotsCommand({ Filters: [{ Name: 'volume-id', Values: [vol] }, { Name: 'status', Values: ['completed'] }] }));
    expect(completed.Snapshots).toHaveLength(5);
  });
});
