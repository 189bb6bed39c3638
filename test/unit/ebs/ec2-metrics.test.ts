import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { meteredEc2 } from '../../../volume-plugin/backends/ebs/ec2-metrics.js';
import { ec2Error } from '../../aws/ec2-errors.js';
import { Ec2Model } from '../../aws/ec2-model.js';

let model: Ec2Model;
afterEach(() => model?.dispose());

async function values(registry: Registry, name: string): Promise<Record<string, number>> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const out: Record<string, number> = {};
  for (const v of (metric?.values ?? []) as { labels: Record<string, string | number>; value: number; metricName?: string }[]) {
    if (v.metricName && !v.metricName.endsWith('_count') && name.endsWith('_seconds')) continue;
    out[Object.values(v.labels).filter((l) => typeof l === 'string').join(',')] = v.value;
  }
  return out;
}

describe('the EC2 port, measured (names as aws-ebs-csi-driver docs/metrics.md, berth prefix)', () => {
  it('counts calls by action, errors by EC2 code, throttles apart from errors; the call\'s answer and error pass through unchanged', async () => {
    model = new Ec2Model();
    const registry = new Registry();
    const port = meteredEc2(model.port(), registry);
    const signal = new AbortController().signal;
    await port.describeVolumes({}, signal);
    await port.describeVolumes({}, signal);
    model.failNext('AttachVolume', ec2Error('IncorrectInstanceState', 'stopped'));
    await expect(port.attachVolume({ VolumeId: 'vol-0123456789abcdef0', InstanceId: 'i-0123456789abcdef0', Device: '/dev/xvdba' }, signal)).rejects.toMatchObject({ name: 'IncorrectInstanceState', $fault: 'client' });
    model.faults.throttleAll = true;
    await expect(port.createTags({ Resources: ['vol-0123456789abcdef0'], Tags: [] }, signal)).rejects.toMatchObject({ name: 'RequestLimitExceeded' });
    expect(await values(registry, 'berth_ec2_api_request_duration_seconds')).toEqual({ DescribeVolumes: 2, AttachVolume: 1, CreateTags: 1 });
    expect(await values(registry, 'berth_ec2_api_request_errors_total')).toEqual({ 'AttachVolume,IncorrectInstanceState': 1 });
    expect(await values(registry, 'berth_ec2_api_request_throttles_total')).toEqual({ CreateTags: 1 });
  });

  it('counts the attempts the SDK made past the first, from $metadata.attempts', async () => {
    const registry = new Registry();
    const answer = { Volumes: [], $metadata: { attempts: 3 } };
    const port = meteredEc2({ describeVolumes: async () => answer } as never, registry);
    expect(await port.describeVolumes({}, new AbortController().signal)).toBe(answer);
    expect(await values(registry, 'berth_ec2_api_request_retries_total')).toEqual({ DescribeVolumes: 2 });
  });
});
