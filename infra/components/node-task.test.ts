import { describe, expect, it } from 'vitest';
import { nodeVolumeName, tagKeys } from '../../lib/node-contract.js';
import { validateEbsOptions } from '../../volume-plugin/backends/ebs/ebs-options.js';
import { parseGivenOptions, resolveOptions } from '../../volume-plugin/options.js';
import { nodeTask } from './node-task.js';

const args = { node: 'n1', host: 'shop-h1', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', sizeGiB: 50 };

describe('nodeTask', () => {
  const t = nodeTask(args);
  it('mounts a shared, autoprovisioned berth volume named after the cluster and node', () => {
    expect(t.volumes).toEqual([{
      name: 'shop-n1',
      dockerVolumeConfiguration: {
        scope: 'shared', autoprovision: true, driver: 'berth', driverOpts: { size: '50GiB', type: 'gp3' },
        labels: { 'berth:cluster': 'shop', 'berth:host': 'shop-h1' },
      },
    }]);
    expect(t.containerDefinitions[0]!.mountPoints).toEqual([{ sourceVolume: 'shop-n1', containerPath: '/data' }]);
  });
  it('gives each node of a host its own Docker volume, equal to its EBS volume tag', () => {
    const names = ['n1', 'n2'].map((node) => nodeTask({ ...args, node }).volumes[0]!.name);
    expect(new Set(names).size).toBe(2);
    expect(names[0]).toBe(nodeVolumeName('shop', 'n1'));
    expect(tagKeys().volume).toBe('berth:volume');
  });
  it('emits only driver options the plugin accepts, for every size infra allows', () => {
    for (const sizeGiB of [1, 20, 100, 16_384]) {
      const conf = nodeTask({ ...args, sizeGiB }).volumes[0]!.dockerVolumeConfiguration;
      const options = resolveOptions(parseGivenOptions(conf.driverOpts), { sizeBytes: 2 ** 30, fs: 'ext4' });
      expect(() => validateEbsOptions(nodeVolumeName('shop', 'n1'), options)).not.toThrow();
      expect(options.sizeBytes).toBe(sizeGiB * 2 ** 30);
    }
  });
  it('refuses a size berth would refuse, with berth\'s reason, before anything is declared', () => {
    expect(() => nodeTask({ ...args, sizeGiB: 1.5 })).toThrow(/node n1: berth would refuse its volume: .*not a whole number of GiB/);
    expect(() => nodeTask({ ...args, sizeGiB: 0 })).toThrow(/node n1: berth would refuse its volume/);
    expect(() => nodeTask({ ...args, sizeGiB: 20_000 })).toThrow(/outside 1–16384 GiB for gp3/);
  });
  it('pins the task to its host attribute and nothing else', () => {
    expect(t.placementConstraints).toEqual([{ type: 'memberOf', expression: 'attribute:berth.host == shop-h1' }]);
  });
});
