import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { silentLogger } from '../../../lib/logger.js';
import { VolumeService } from '../../../volume-plugin/service.js';
import { ebsUnitWorld, GiB, type EbsUnitWorld } from '../../fakes/ebs.js';
import { FakeNvme } from '../../fakes/nvme.js';
import { hostPathsFor } from '../../helpers/manager.js';

/**
 * Online grow on the EBS backend (docs/design.md §6 "Online grow"): `berth resize` (the service's
 * resize) through ModifyVolume in the EC2 model on the port, EBS's rules refused before EC2 is
 * called, and a ModifyVolume from elsewhere (Pulumi, the console) noticed by the agent's grow check
 * with no EC2 call. The model's `onOptimizing` grows the device the host sees, as the NVMe
 * controller's namespace-attribute-changed event does once the modification is `optimizing`.
 */
let w: EbsUnitWorld;
afterEach(() => w?.cleanup());

async function servingWorld(opts: { optimizeLatencyMs?: number } = {}) {
  w = ebsUnitWorld({ modifyLatencyMs: 5, optimizeLatencyMs: opts.optimizeLatencyMs ?? 5 });
  w.model.onOptimizing = (volumeId, sizeGiB) => {
    w.fs.sizes.set(FakeNvme.pathOf(volumeId), sizeGiB * GiB);
  };
  const registry = new Registry();
  const backend = w.backend({ modifyPollMs: 5, modifyWaitMs: 2_000 });
  const service = new VolumeService({ backend, fs: w.fs, paths: hostPathsFor(w.stateDir), defaults: { sizeBytes: GiB, fs: 'ext4' }, logger: silentLogger, registry });
  await service.start();
  await service.create('pg', { size: '8GiB', type: 'gp3' });
  const id = w.model.volumes()[0]!.volumeId;
  w.fs.sizes.set(FakeNvme.pathOf(id), 8 * GiB);
  await service.publish('pg', 'c1');
  const metric = async (name: string) => (await registry.getSingleMetric(name)!.get()).values;
  return { service, id, metric };
}

describe('EBS resize (unit)', () => {
  it('berth resize: ModifyVolume, the wait for optimizing, and the mounted filesystem grown in the same call', async () => {
    const { service, id, metric } = await servingWorld();
    const out = await service.resize('pg', { size: '16GiB', iops: '6000' });
    expect(out).toMatchObject({ name: 'pg', sizeBytes: 16 * GiB, state: 'optimizing', mounted: true, grown: true });
    expect(w.model.calls('ModifyVolume')).toBe(1);
    expect(w.model.volumes()[0]).toMatchObject({ volumeId: id, size: 16, iops: 6000, type: 'gp3' });
    expect(service.describe('pg')).toMatchObject({ mounted: true, options: { sizeBytes: 16 * GiB, iops: 6000 }, size: { deviceBytes: 16 * GiB, grownFromBytes: 8 * GiB } });
    expect(await metric('berth_volume_grow_total')).toEqual([{ labels: { result: 'grown' }, value: 1 }]);
    expect(await metric('berth_volume_size_bytes')).toEqual([{ labels: { volume: 'pg' }, value: 16 * GiB }]);
  });

  it('a ModifyVolume from elsewhere (Pulumi, the console) is noticed by the grow check, which calls no EC2 action', async () => {
    const { service, id } = await servingWorld();
    await service.growMounted(); // the first pass learns the size
    await w.port.modifyVolume({ VolumeId: id, Size: 12 }, AbortSignal.timeout(1_000));
    await expect.poll(() => w.fs.sizes.get(FakeNvme.pathOf(id))).toBe(12 * GiB);
    w.model.resetCalls();
    await service.growMounted();
    expect(w.model.calls()).toBe(0);
    expect(service.describe('pg')).toMatchObject({ mounted: true, size: { deviceBytes: 12 * GiB, grownAt: expect.any(String) } });
    expect(service.describe('pg')!.lastError).toBeUndefined();
  });

  it('a device that is no longer the volume\'s is never grown: the check records why', async () => {
    const { service, id } = await servingWorld();
    await service.growMounted();
    w.fs.sizes.set(FakeNvme.pathOf(id), 20 * GiB);
    w.nvme.unbind(id); // the namespace is gone: nothing vouches for the device any more
    w.host.present.add(FakeNvme.pathOf(id));
    await service.growMounted();
    expect(service.describe('pg')).toMatchObject({ mounted: true, lastError: expect.stringMatching(/^could not grow the filesystem: .* is not the device of vol-/) });
    expect(w.fs.filesystemSizes.get(service.mountpointOf('pg'))).toBe(8 * GiB);
  });

  describe('refused with a clear error before EC2 is called (the model sees no ModifyVolume)', () => {
    it('a shrink', async () => {
      const { service } = await servingWorld();
      await expect(service.resize('pg', { size: '4GiB' })).rejects.toThrow(/^volume pg is 8GiB; it can only grow, not shrink to 4GiB \(no data was touched\)$/);
      expect(w.model.calls('ModifyVolume')).toBe(0);
    });

    it('an invalid IOPS for the type, and a throughput its IOPS cannot carry', async () => {
      const { service } = await servingWorld();
      await expect(service.resize('pg', { iops: '90000' })).rejects.toThrow(/^volume pg: iops 90000 is outside 3000–80000 for gp3$/);
      await expect(service.resize('pg', { iops: '5000' })).rejects.toThrow(/^volume pg: iops 5000 is more than 500 per GiB for gp3 \(8GiB allows 4000\); make the volume larger or ask for fewer IOPS$/);
      await expect(service.resize('pg', { throughput: '1000' })).rejects.toThrow(/^volume pg: throughput 1000 MiB\/s is more than 0\.25 MiB\/s per provisioned IOPS \(3000 IOPS allow 750\); ask for more IOPS$/);
      await expect(service.resize('pg', { type: 'io2' })).rejects.toThrow(/^volume pg: io2 needs -o iops=<100–256000>$/);
      expect(w.model.calls('ModifyVolume')).toBe(0);
    });

    it('a second modification while the first is not completed (optimizing blocks too)', async () => {
      const { service } = await servingWorld({ optimizeLatencyMs: 60_000 });
      await expect(service.resize('pg', { size: '10GiB' })).resolves.toMatchObject({ state: 'optimizing', grown: true });
      await expect(service.resize('pg', { size: '12GiB' })).rejects.toThrow(/^volume pg \(vol-[0-9a-f]+\) is still being modified \(started .*, optimizing, 10%\); EBS takes the next change only once it is completed\. Nothing was changed$/);
      expect(w.model.calls('ModifyVolume')).toBe(1);
    });

    it('a fifth modification within 24 hours', async () => {
      const { service } = await servingWorld();
      for (const gib of [9, 10, 11, 12]) {
        await service.resize('pg', { size: `${gib}GiB` });
        await expect.poll(() => w.model.volumes()[0]!.size).toBe(gib);
        await sleep10();
      }
      await expect(service.resize('pg', { size: '13GiB' })).rejects.toThrow(/was modified 4 times in the last 24 hours, EBS's limit is 4; try again after .*\. Nothing was changed$/);
      expect(w.model.calls('ModifyVolume')).toBe(4);
    });
  });
});

/** Longer than the model's optimize latency: the last modification is completed. */
const sleep10 = () => new Promise((r) => setTimeout(r, 20));
