import { EC2Client } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { hostEbsPolicy } from '../infra/components/host-policy.js';
import { createEbsBackend } from '../volume-plugin/backends/ebs/ebs-backend.js';
import { Ec2Facade } from '../volume-plugin/backends/ebs/ec2-facade.js';
import { Ec2Model } from './aws/ec2-model.js';
import { allows, type RequestContext } from './aws/iam-policy.js';
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

interface IamRequest { action: string; resource: string; ctx: RequestContext }

/** `snapshotTags`: the model keeps no snapshot tags; DLM's snapshots carry the volume's (copyTags). */
function recorder(model: Ec2Model, client: EC2Client, snapshotTags: Map<string, Record<string, string>>): IamRequest[] {
  const seen: IamRequest[] = [];
  const arn = (type: string, id: string) => (type === 'snapshot' ? `arn:aws:ec2:${REGION}::snapshot/${id}` : `arn:aws:ec2:${REGION}:${ACCOUNT}:${type}/${id}`);
  const resourceTags = (id: string): RequestContext => {
    const tags = id.startsWith('vol-') ? model.volume(id).tags : id.startsWith('i-') ? model.instance(id).tags : snapshotTags.get(id) ?? {};
    return Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v]));
  };
  const requestTags = (tags: Array<{ Key?: string; Value?: string }>): RequestContext => ({
    'aws:TagKeys': tags.map((t) => t.Key!), ...Object.fromEntries(tags.map((t) => [`aws:RequestTag/${t.Key!}`, t.Value ?? ''])),
  });
  const add = (action: string, type: string, id: string, ctx: RequestContext = {}) => seen.push({ action, resource: arn(type, id), ctx: { ...resourceTags(id), ...ctx } });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      const command = context.commandName ?? '';
      switch (command) {
        case 'DescribeVolumesCommand': case 'DescribeInstancesCommand': case 'DescribeVolumesModificationsCommand': case 'DescribeInstanceTypesCommand':
          seen.push({ action: `ec2:${command.replace(/Command$/, '')}`, resource: '*', ctx: {} });
          break;
        case 'CreateVolumeCommand': {
          const tags = ((input['TagSpecifications'] as Array<{ Tags: Array<{ Key: string; Value: string }> }> | undefined) ?? []).flatMap((s) => s.Tags);
          seen.push({ action: 'ec2:CreateVolume', resource: arn('volume', '*'), ctx: requestTags(tags) });
          if (input['SnapshotId']) add('ec2:CreateVolume', 'snapshot', String(input['SnapshotId']));
          if (tags.length > 0) seen.push({ action: 'ec2:CreateTags', resource: arn('volume', '*'), ctx: { ...requestTags(tags), 'ec2:CreateAction': 'CreateVolume' } });
          break;
        }
        case 'AttachVolumeCommand': case 'DetachVolumeCommand': {
          const action = `ec2:${command.replace(/Command$/, '')}`;
          const volumeId = String(input['VolumeId']);
          add(action, 'volume', volumeId);
          const instanceId = (input['InstanceId'] as string | undefined) ?? model.volume(volumeId).attachment?.instanceId;
          if (instanceId) add(action, 'instance', instanceId);
          break;
        }
        case 'DeleteVolumeCommand': case 'ModifyVolumeCommand':
          add(`ec2:${command.replace(/Command$/, '')}`, 'volume', String(input['VolumeId']));
          break;
        case 'CreateTagsCommand': case 'DeleteTagsCommand':
          for (const id of input['Resources'] as string[]) {
            add(`ec2:${command.replace(/Command$/, '')}`, id.startsWith('vol-') ? 'volume' : 'instance', id, requestTags(input['Tags'] as Array<{ Key: string; Value?: string }>));
          }
          break;
        default:
          throw new Error(`policy-contract: ${command} has no IAM mapping here: add it`);
      }
      return next(args);
    },
    { step: 'finalizeRequest', priority: 'high', name: 'berth-iam-recorder' },
  );
  return seen;
}

describe('host IAM policy against the EBS backend\'s calls', () => {
  it('allows every call the backend makes in its flows, and grants no EC2 action it never makes', async () => {
    const model = new Ec2Model({ region: REGION, accountId: ACCOUNT, attachLatencyMs: 5 });
    const az = `${REGION}a`;
    const me = model.addInstance({ az, tags: { 'berth:cluster': 'shop', 'berth:environment': 'prod', 'berth:host': 'shop-h1' } });
    const dead = model.addInstance({ az, state: 'stopped', tags: { 'berth:cluster': 'shop', 'berth:environment': 'prod', 'berth:host': 'shop-h1' } });
    const client = new EC2Client({ region: REGION, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' }, maxAttempts: 1 });
    model.installBehindSdkRetries(client);
    const snapshotTags = new Map<string, Record<string, string>>();
    const seen = recorder(model, client, snapshotTags);
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
    const snap = model.addSnapshot({ size: 1 });
    snapshotTags.set(snap, { 'berth:cluster': 'shop', 'berth:environment': 'prod', 'berth:managed-by': 'berth' });
    const restored = await backend.create('restored', { ...options, onRemove: 'delete', snapshotId: snap } as never);
    await backend.remove(restored);
    backend.close();

    const policy = hostEbsPolicy({ region: REGION, accountId: ACCOUNT, environment: 'prod', cluster: 'shop', hostId: 'shop-h1' });
    const denied = seen.filter((r) => !allows([policy], r.action, r.resource, r.ctx)).map((r) => `${r.action} on ${r.resource} ${JSON.stringify(r.ctx)}`);
    expect(seen.some((r) => r.resource.includes('::snapshot/')), 'the restore path ran').toBe(true);
    expect(slots.limit, 'the attachment limit was learnt').toMatchObject({ instanceType: 'm6i.large', maximum: 28 });
    expect(denied).toEqual([]);
    const granted = new Set(policy.Statement.flatMap((s) => s.Action).filter((a) => a.startsWith('ec2:')));
    const used = new Set(seen.map((r) => r.action));
    expect([...granted].filter((a) => !used.has(a)).sort(), 'granted but never used').toEqual([]);
  });
});
