import { AttachVolumeCommand, CreateTagsCommand, CreateVolumeCommand, DeleteTagsCommand, DescribeInstancesCommand, DescribeVolumesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEc2HttpServer, type Ec2HttpServer } from './ec2-http-server.js';
import { Ec2Model } from './ec2-model.js';

describe('EC2 model over HTTP (ec2 query protocol)', () => {
  const model = new Ec2Model({ attachLatencyMs: 5 });
  let server: Ec2HttpServer;
  let client: EC2Client;
  beforeAll(async () => {
    server = await startEc2HttpServer(model);
    client = new EC2Client({ region: model.region, endpoint: server.endpoint, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' }, maxAttempts: 1 });
  });
  afterAll(async () => {
    client.destroy();
    await server.close();
    model.dispose();
  });

  it('answers the real SDK client: create with tags, filtered describe, attach, tag and untag, instances', async () => {
    const instanceId = model.addInstance({ az: 'eu-west-1a', tags: { 'berth:host': 'h1' } });
    const created = await client.send(new CreateVolumeCommand({
      AvailabilityZone: 'eu-west-1a', Size: 3, VolumeType: 'gp3', Encrypted: true, ClientToken: 't1',
      TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'berth:volume', Value: 'a&b' }, { Key: 'berth:host', Value: 'h1' }] }],
    }));
    expect(created).toMatchObject({ Size: 3, VolumeType: 'gp3', Encrypted: true, AvailabilityZone: 'eu-west-1a', Tags: expect.arrayContaining([{ Key: 'berth:volume', Value: 'a&b' }]) });
    expect(created.CreateTime).toBeInstanceOf(Date);
    await model.settled();
    const found = await client.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:berth:volume', Values: ['a&b'] }, { Name: 'tag:berth:host', Values: ['h1', 'h2'] }] }));
    expect(found.Volumes!.map((v) => v.VolumeId)).toEqual([created.VolumeId]);
    expect((await client.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:berth:volume', Values: ['other'] }] }))).Volumes).toEqual([]);
    const attached = await client.send(new AttachVolumeCommand({ VolumeId: created.VolumeId!, InstanceId: instanceId, Device: '/dev/xvdba' }));
    expect(attached).toMatchObject({ State: 'attaching', InstanceId: instanceId, Device: '/dev/xvdba' });
    await model.settled();
    const [v] = (await client.send(new DescribeVolumesCommand({ VolumeIds: [created.VolumeId!] }))).Volumes!;
    expect(v).toMatchObject({ State: 'in-use', Attachments: [{ InstanceId: instanceId, State: 'attached', Device: '/dev/xvdba' }] });
    await client.send(new CreateTagsCommand({ Resources: [instanceId], Tags: [{ Key: 'berth:ready', Value: 'true' }] }));
    await client.send(new DeleteTagsCommand({ Resources: [created.VolumeId!], Tags: [{ Key: 'berth:host' }] }));
    expect(model.instance(instanceId).tags).toMatchObject({ 'berth:ready': 'true' });
    expect(model.volume(created.VolumeId!).tags).not.toHaveProperty('berth:host');
    const inst = await client.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
    expect(inst.Reservations![0]!.Instances![0]).toMatchObject({ InstanceId: instanceId, State: { Name: 'running', Code: 16 }, Placement: { AvailabilityZone: 'eu-west-1a' } });
  });

  it('answers errors as EC2 does: the code as the error name, the HTTP status', async () => {
    const err = await client.send(new DescribeVolumesCommand({ VolumeIds: ['vol-0123456789abcdef0'] })).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'InvalidVolume.NotFound', $metadata: { httpStatusCode: 400 } });
    model.faults.throttleAll = true;
    const throttled = await client.send(new DescribeVolumesCommand({})).catch((e: unknown) => e);
    model.faults.throttleAll = false;
    expect(throttled).toMatchObject({ name: 'RequestLimitExceeded', $metadata: { httpStatusCode: 503 } });
  });
});
