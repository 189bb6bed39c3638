import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { afterEach, describe, expect, it } from 'vitest';
import { isBerthError } from '../lib/errors.js';
import { startImdsServer, type ImdsServer } from '../test/aws/imds-server.js';
import { discoverIdentity, waitForCredentials, type Clock } from './host-identity.js';

/** A clock that moves only when slept on: 20 s of waiting cost no real time. */
function fakeClock(): Clock & { slept: number[] } {
  let now = 0;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
  };
}

describe('waitForCredentials', () => {
  it('waits out instance credentials that appear only 20 s after boot, backing off', async () => {
    const clock = fakeClock();
    let calls = 0;
    await waitForCredentials(
      async () => {
        calls++;
        if (clock.now() < 20_000) throw new Error('Could not load credentials from any providers');
        return { accessKeyId: 'x' };
      },
      60_000,
      undefined,
      clock,
    );
    expect(clock.now()).toBeGreaterThanOrEqual(20_000);
    expect(clock.slept.slice(0, 4)).toEqual([500, 1000, 2000, 4000]);
    expect(Math.max(...clock.slept)).toBe(5000);
    expect(calls).toBe(clock.slept.length + 1);
  });

  it('gives up after its bound with an error that says what to check', async () => {
    const clock = fakeClock();
    const err = await waitForCredentials(() => Promise.reject(new Error('no credentials')), 10_000, undefined, clock).catch((e: unknown) => e);
    expect(isBerthError(err, 'UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toBe('no AWS credentials after waiting 10 s: no credentials. Check the instance profile');
    expect(clock.now()).toBeLessThanOrEqual(10_000);
  });
});

describe('discoverIdentity against an IMDSv2 server', () => {
  let imds: ImdsServer | undefined;
  afterEach(async () => {
    await imds?.close();
    imds = undefined;
  });
  const client = () => new MetadataService({ endpoint: imds!.endpoint, retries: 0 });

  it('reads instance id, zone, region and the logical host from the instance tag', async () => {
    imds = await startImdsServer({ instanceId: 'i-0123456789abcdef0', az: 'eu-west-1b', region: 'eu-west-1', tags: { 'berth:host': 'db-host-7', 'aws:autoscaling:groupName': 'asg-7' } });
    await expect(discoverIdentity({ imds: client(), tagPrefix: 'berth:' })).resolves.toEqual({
      instanceId: 'i-0123456789abcdef0',
      az: 'eu-west-1b',
      region: 'eu-west-1',
      hostId: 'db-host-7',
    });
  });

  it('falls back to the Auto Scaling group, then to EC2 tags; BERTH_HOST_ID wins over all', async () => {
    imds = await startImdsServer({ instanceId: 'i-0123456789abcdef0', az: 'eu-west-1b', region: 'eu-west-1', tags: { 'aws:autoscaling:groupName': 'asg-7' } });
    expect((await discoverIdentity({ imds: client(), tagPrefix: 'berth:' })).hostId).toBe('asg-7');
    expect((await discoverIdentity({ imds: client(), tagPrefix: 'berth:', hostId: 'pinned' })).hostId).toBe('pinned');
    imds.setTags({});
    const viaEc2 = await discoverIdentity({ imds: client(), tagPrefix: 'berth:', instanceTags: async () => ({ 'berth:host': 'from-ec2' }) });
    expect(viaEc2.hostId).toBe('from-ec2');
    await expect(discoverIdentity({ imds: client(), tagPrefix: 'berth:' })).rejects.toThrow(/cannot tell which logical host i-0123456789abcdef0 is: set BERTH_HOST_ID/);
  });

  it('IMDS unreachable: a clear error naming the endpoint', async () => {
    const err = await discoverIdentity({ imds: new MetadataService({ endpoint: 'http://127.0.0.1:1', retries: 0 }), tagPrefix: 'berth:', endpointHint: 'http://127.0.0.1:1' }).catch((e: unknown) => e);
    expect(isBerthError(err, 'UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toMatch(/^cannot read this instance's identity from the instance metadata service \(IMDSv2 at http:\/\/127\.0\.0\.1:1\)/);
  });
});
