import type { EC2Client } from '@aws-sdk/client-ec2';
import type { Ec2Model } from './ec2-model.js';
import type { RequestContext } from './iam-policy.js';

/**
 * Turns each EC2 call a client sends (seen at the SDK boundary, in front of the EC2 model) into the IAM
 * requests EC2 authorizes for it, per the Service Authorization Reference for Amazon EC2 ("Actions,
 * resources, and condition keys for Amazon EC2") and the EC2/EBS User Guides' policy examples:
 * - Describe* actions: no resource-level permissions, one request on '*'.
 * - CreateVolume: on the new volume (`aws:RequestTag/*`, `aws:TagKeys` from its TagSpecifications) and,
 *   with a SnapshotId, on that snapshot (its `aws:ResourceTag/*`); its TagSpecifications are a second
 *   authorization, ec2:CreateTags on the new volume with `ec2:CreateAction = CreateVolume`.
 * - CreateSnapshot: on the volume (its resource tags) and on the new snapshot (request tags); tags at
 *   creation as ec2:CreateTags on the snapshot with `ec2:CreateAction = CreateSnapshot`.
 * - AttachVolume/DetachVolume: on the volume and on the instance.
 * - DeleteVolume, ModifyVolume: on the volume. CreateTags/DeleteTags: on each resource, with the
 *   request's tags (`aws:TagKeys`, `aws:RequestTag/*`) and the resource's.
 * Snapshot ARNs carry no account (`arn:aws:ec2:<region>::snapshot/<id>`). A command without a mapping
 * here fails the test that sent it, so a new EC2 call is never silently unchecked.
 */
export interface IamRequest { action: string; resource: string; ctx: RequestContext }

export function iamRecorder(model: Ec2Model, client: EC2Client): IamRequest[] {
  const seen: IamRequest[] = [];
  const { region, accountId } = model;
  const arn = (type: string, id: string) => (type === 'snapshot' ? `arn:aws:ec2:${region}::snapshot/${id}` : `arn:aws:ec2:${region}:${accountId}:${type}/${id}`);
  const typeOf = (id: string) => (id.startsWith('vol-') ? 'volume' : id.startsWith('snap-') ? 'snapshot' : 'instance');
  const resourceTags = (id: string): RequestContext => {
    const tags = id.startsWith('vol-') ? model.volume(id).tags : id.startsWith('i-') ? model.instance(id).tags : model.snapshot(id).tags;
    return Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v]));
  };
  const requestTags = (tags: Array<{ Key?: string; Value?: string }>): RequestContext => ({
    'aws:TagKeys': tags.map((t) => t.Key!), ...Object.fromEntries(tags.map((t) => [`aws:RequestTag/${t.Key!}`, t.Value ?? ''])),
  });
  const specTags = (input: Record<string, unknown>) => ((input['TagSpecifications'] as Array<{ Tags: Array<{ Key: string; Value: string }> }> | undefined) ?? []).flatMap((s) => s.Tags);
  const add = (action: string, id: string, ctx: RequestContext = {}) => seen.push({ action, resource: arn(typeOf(id), id), ctx: { ...resourceTags(id), ...ctx } });
  const created = (action: string, type: 'volume' | 'snapshot', tags: Array<{ Key: string; Value: string }>) => {
    seen.push({ action, resource: arn(type, '*'), ctx: requestTags(tags) });
    if (tags.length > 0) seen.push({ action: 'ec2:CreateTags', resource: arn(type, '*'), ctx: { ...requestTags(tags), 'ec2:CreateAction': action.replace(/^ec2:/, '') } });
  };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      const command = context.commandName ?? '';
      const action = `ec2:${command.replace(/Command$/, '')}`;
      switch (command) {
        case 'DescribeVolumesCommand': case 'DescribeInstancesCommand': case 'DescribeVolumesModificationsCommand': case 'DescribeInstanceTypesCommand': case 'DescribeSnapshotsCommand':
          seen.push({ action, resource: '*', ctx: {} });
          break;
        case 'CreateVolumeCommand':
          created(action, 'volume', specTags(input));
          if (input['SnapshotId']) add(action, String(input['SnapshotId']));
          break;
        case 'CreateSnapshotCommand':
          add(action, String(input['VolumeId']));
          created(action, 'snapshot', specTags(input));
          break;
        case 'AttachVolumeCommand': case 'DetachVolumeCommand': {
          const volumeId = String(input['VolumeId']);
          add(action, volumeId);
          const instanceId = (input['InstanceId'] as string | undefined) ?? model.volume(volumeId).attachment?.instanceId;
          if (instanceId) add(action, instanceId);
          break;
        }
        case 'DeleteVolumeCommand': case 'ModifyVolumeCommand':
          add(action, String(input['VolumeId']));
          break;
        case 'CreateTagsCommand': case 'DeleteTagsCommand':
          for (const id of input['Resources'] as string[]) add(action, id, requestTags(input['Tags'] as Array<{ Key: string; Value?: string }>));
          break;
        default:
          throw new Error(`iam-requests: ${command} has no IAM mapping here: add it`);
      }
      return next(args);
    },
    { step: 'finalizeRequest', priority: 'high', name: 'berth-iam-recorder' },
  );
  return seen;
}

/** "ec2:CreateTags on arn:… {…}": a request as a line of a test's failure message. */
export const describeRequest = (r: IamRequest) => `${r.action} on ${r.resource} ${JSON.stringify(r.ctx)}`;
