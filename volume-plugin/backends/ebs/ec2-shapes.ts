import type { Volume } from '@aws-sdk/client-ec2';

/** EC2's answers as berth reads them: tags as a record, a volume's live attachment, an instance's facts. */

export type Tags = Record<string, string>;

export function tagsOf(resource: { Tags?: { Key?: string; Value?: string }[] }): Tags {
  const out: Tags = {};
  for (const t of resource.Tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? '';
  return out;
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
