import { EC2Client } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { EC2_CLIENT_SETTINGS } from '../../../agent/backend-factory.js';
import { EC2_PORT_METHODS, ec2ActionOf, type Ec2Port } from '../../../volume-plugin/backends/ebs/ec2-port.js';
import { SdkEc2 } from '../../../volume-plugin/backends/ebs/sdk-ec2.js';
import { Ec2Model } from '../../aws/ec2-model.js';

const client = () => new EC2Client({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' } });

describe('SdkEc2 (the EC2 port over SDK v3)', () => {
  it('every port method sends its own command with the caller signal as abortSignal', async () => {
    const ec2 = client();
    const stub = mockClient(ec2);
    stub.onAnyCommand().resolves({});
    const port = new SdkEc2(ec2);
    for (const method of EC2_PORT_METHODS) {
      const signal = new AbortController().signal;
      const input = { Marker: method };
      await (port[method] as (i: unknown, s: AbortSignal) => Promise<unknown>)(input, signal);
      const [command, options] = stub.send.lastCall.args as unknown as [{ constructor: { name: string }; input: unknown }, { abortSignal?: unknown }];
      expect(command.constructor.name).toBe(`${ec2ActionOf(method)}Command`);
      expect(command.input).toEqual(input);
      expect(options.abortSignal).toBe(signal);
    }
    expect(stub.send.callCount).toBe(EC2_PORT_METHODS.length);
  });

  it('an aborted signal stops the real SDK call before anything is sent, with the SDK abort error', async () => {
    // No mock: the SDK's own stack runs; the request would go to an endpoint nothing listens on.
    const ec2 = new EC2Client({ region: 'eu-west-1', endpoint: 'http://127.0.0.1:9', maxAttempts: 1, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' } });
    const port = new SdkEc2(ec2);
    const controller = new AbortController();
    controller.abort(new Error('the Mount deadline passed'));
    await expect(port.describeVolumes({}, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
    ec2.destroy();
  });

  it('a read EC2 refuses for the budget reaches the caller after one attempt (the facade retries it, paced); the zone move\'s port leaves it to the SDK', async () => {
    const model = new Ec2Model({ region: 'eu-west-1' });
    model.faults.throttleAll = true;
    const signal = new AbortController().signal;
    const facadeClient = new EC2Client({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' }, ...EC2_CLIENT_SETTINGS });
    model.installBehindSdkRetries(facadeClient, 'facade');
    await expect(new SdkEc2(facadeClient).describeVolumes({ Filters: [{ Name: 'tag:x', Values: ['y'] }] }, signal)).rejects.toMatchObject({ name: 'RequestLimitExceeded' });
    await expect(new SdkEc2(facadeClient).createTags({ Resources: ['vol-1'], Tags: [{ Key: 'a', Value: 'b' }] }, signal)).rejects.toMatchObject({ name: 'RequestLimitExceeded' });
    expect(model.callsBy('facade').get('DescribeVolumes')).toMatchObject({ calls: 1, throttled: 1 });
    expect(model.callsBy('facade').get('CreateTags')).toMatchObject({ calls: 1, throttled: 1 });
    const cliClient = new EC2Client({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' }, maxAttempts: 2 });
    model.installBehindSdkRetries(cliClient, 'cli');
    await expect(new SdkEc2(cliClient, { refusals: 'sdk' }).describeVolumes({ Filters: [{ Name: 'tag:x', Values: ['y'] }] }, signal)).rejects.toMatchObject({ name: 'RequestLimitExceeded' });
    expect(model.callsBy('cli').get('DescribeVolumes')).toMatchObject({ calls: 2, throttled: 2 });
    model.dispose();
  });
});

describe('Ec2Model.port() (the in-memory fake EC2 on the port)', () => {
  it('answers as the model does and fails as the SDK does: EC2 code as name, $fault, $metadata', async () => {
    const model = new Ec2Model({ attachLatencyMs: 1 });
    const port: Ec2Port = model.port();
    const signal = new AbortController().signal;
    const instanceId = model.addInstance({ az: 'eu-west-1a' });
    const created = await port.createVolume({ AvailabilityZone: 'eu-west-1a', Size: 1, VolumeType: 'gp3' }, signal);
    expect(created).toMatchObject({ State: 'creating', Size: 1 });
    await model.settled();
    await port.attachVolume({ VolumeId: created.VolumeId!, InstanceId: instanceId, Device: '/dev/xvdba' }, signal);
    await expect(port.deleteVolume({ VolumeId: created.VolumeId! }, signal)).rejects.toMatchObject({ name: 'VolumeInUse', $fault: 'client', $metadata: { httpStatusCode: 400 } });
    await model.settled();
    const { Volumes } = await port.describeVolumes({ Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }] }, signal);
    expect(Volumes?.map((v) => v.Attachments?.[0]?.State)).toEqual(['attached']);
    expect(model.calls('AttachVolume')).toBe(1);
    model.dispose();
  });

  it('an aborted call never reaches the model; one aborted under way fails at once', async () => {
    const model = new Ec2Model({ apiLatencyMs: 10_000 });
    const port = model.port();
    const gone = new AbortController();
    gone.abort(new Error('caller gone'));
    await expect(port.describeVolumes({}, gone.signal)).rejects.toMatchObject({ name: 'AbortError', cause: { message: 'caller gone' } });
    expect(model.calls('DescribeVolumes')).toBe(0);
    const later = new AbortController();
    const pending = port.describeVolumes({}, later.signal);
    later.abort(new Error('deadline'));
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    model.dispose();
  });
});
