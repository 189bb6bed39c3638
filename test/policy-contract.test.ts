import { EC2Client } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { hostEbsPolicy } from '../infra/components/host-policy.js';
import { createEbsBackend } from '../volume-plugin/backends/ebs/ebs-backend.js';
import { Ec2Facade } from '../volume-plugin/backends/ebs/ec2-facade.js';
import { Ec2Model } from './aws/ec2-model.js';
import { allows } from './aws/iam-policy.js';
import { describeRequest, iamRecorder } from './aws/iam-requests.js';
import { FAST_TIMING } from './helpers/ebs.js';
import { AttachmentSlots, learnAttachmentLimit } from '../volume-plugin/backends/ebs/attachment-slots.js';
import { SdkEc2 } from '../volume-plugin/backends/ebs/sdk-ec2.js';

/**
 * The host's IAM policy against what berth's EBS backend really sends: every EC2 call of the
 * flows below, seen at the SDK boundary in front of the EC2 model, becomes the IAM requests EC2
 * authorizes (action, resource ARN, tag context, per the Service Authorization Reference for
 * EC2: CreateVolume is authorized on the volume and on its snapshot, its TagSpecifications as
 * ec2:CreateTags with ec2:CreateAction; Attach/Detach on the volume and the instance). Each must
 * be allowed by the policy infra declares, and each action the policy grants must be used.
 */
const REGION = 'eu-west-1';
const ACCOUNT = '111122223333';
const GiB = 1024 ** 3;

describe('host IAM policy against the EBS backend\'s calls', () => {
  it('allows every call the backend makes in its flows, and grants no EC2 action it never makes', async () => {
    const model = new Ec2Model({ region: REGION, accountId: ACCOUNT, attachLatencyMs: 5 });
    const az = `${REGION}a`;
    const me = model.addInstance({ az, tags: { 'berth:cluster': 'shop', 'berth:environment': 'prod', 'berth:host': 'shop-h1' } });
    const dead = model.addInstance({ az, state: 'stopped', tags: { 'berth:cluster': 'shop', 'berth:environment': 'prod', 'berth:host': 'shop-h1' } });
    const client = new EC2Client({ region: REGION, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' }, maxAttempts: 1 });
    model.installBehindSdkRetries(client);
    const seen = iamRecorder(model, client);
    // The attachment limit, learnt at the first attach as the agent learns it (agent/backend-factory.ts).
    const holder: { facade?: Ec2Facade } = {};
    const slots = new AttachmentSlots((signal) => learnAttachmentLimit(new SdkEc2(client), 'm6i.large', signal), {
      attachedVolumeIds: async (signal) => (await holder.facade!.volumesByTags({}, [{ Name: 'attachment.instance-id', Values: [me] }], signal)).map((v) => v.VolumeId!),
      networkInterfaces: () => Promise.resolve(1),
    });
    const backend = createEbsBackend({
      ec2: (holder.facade = new Ec2Facade({ client, instanceId: me, timing: FAST_TIMING, maxConcurrentAttachments: 4, slots })),
      // The device side is not what this test is about: the attachment's device "appears" at once.
      devices: { find: async () => undefined, waitFor: async (_id, device) => ({ path: device ?? '/dev/xvdf', name: 'xvdf' }) as never, attachedVolumeIds: async () => new Set<string>() },
      identity: { instanceId: me, az, region: REGION, hostId: 'shop-h1' },
      cluster: 'shop', environment: 'prod', defaults: { sizeBytes: GiB, fs: 'ext4' }, tagPrefix: 'berth:', idleDetachMs: 60_000, moveWaitMs: 500, deviceWaitMs: 500, modifyPollMs: 5,
    });
    const options = { sizeBytes: GiB, fs: 'ext4' as const, onRemove: 'retain' as const };

    // Create, attach, publish readiness, detach, remove and keep.
    const pg = await backend.create('pg', options);
    await backend.attach(pg);
    await backend.publishReadiness({ 'berth:ready': 'true', 'berth:ready-count': '1' }, [{ id: pg.id, tags: { 'berth:attached-to': me, 'berth:state': 'mounted' } }]);
    await backend.detach(pg);
    await backend.remove(pg);
    // A volume still attached to this host's dead instance moves here.
    model.addVolume({ az, size: 1, tags: { 'berth:managed-by': 'berth', 'berth:cluster': 'shop', 'berth:environment': 'prod', 'berth:host': 'shop-h1', 'berth:volume': 'old' }, attachedTo: { instanceId: dead, device: '/dev/xvdg' } });
    const oldRecord = (await backend.find('old'))!;
    await backend.attach(oldRecord);
    // berth resize: the modifications read, ModifyVolume, the wait for optimizing.
    await backend.resize!(oldRecord, { ...oldRecord.options, sizeBytes: 2 * GiB });
    // Restore from a snapshot of the cluster, then delete on remove.
    // DLM's snapshots carry the volume's tags (copyTags).
    const snap = model.addSnapshot({ size: 1, tags: { 'berth:cluster': 'shop', 'berth:environment': 'prod', 'berth:managed-by': 'berth' } });
    const restored = await backend.create('restored', { ...options, onRemove: 'delete', snapshotId: snap } as never);
    await backend.remove(restored);
    backend.close();

    const policy = hostEbsPolicy({ region: REGION, accountId: ACCOUNT, environment: 'prod', cluster: 'shop', hostId: 'shop-h1' });
    const denied = seen.filter((r) => !allows([policy], r.action, r.resource, r.ctx)).map(describeRequest);
    expect(seen.some((r) => r.resource.includes('::snapshot/')), 'the restore path ran').toBe(true);
    expect(slots.limit, 'the attachment limit was learnt').toMatchObject({ instanceType: 'm6i.large', maximum: 28 });
    expect(denied).toEqual([]);
    const granted = new Set(policy.Statement.flatMap((s) => s.Action).filter((a) => a.startsWith('ec2:')));
    const used = new Set(seen.map((r) => r.action));
    expect([...granted].filter((a) => !used.has(a)).sort(), 'granted but never used').toEqual([]);
  });
});
