import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../lib/logger.js';
import { createEbsBackend, type EbsBackend, type EbsBackendDeps, type HostIdentity } from '../../volume-plugin/backends/ebs/ebs-backend.js';
import { Ec2Facade, type Ec2FacadeDeps } from '../../volume-plugin/backends/ebs/ec2-facade.js';
import type { Ec2Timing } from '../../volume-plugin/backends/ebs/ec2-timing.js';
import { VolumeService, type ServiceDeps } from '../../volume-plugin/service.js';
import { Ec2Model, type Ec2ModelOptions } from '../aws/ec2-model.js';
import { hostPathsFor } from '../helpers/manager.js';
import { FakeFilesystem } from './filesystem.js';
import { FakeHost } from './host.js';
import { FakeNvme } from './nvme.js';

export const GiB = 2 ** 30;
export const REGION = 'eu-west-1';
export const AZ = 'eu-west-1a';
export const HOST = 'host-a';

/** The EBS layer's waits shrunk to milliseconds (the defaults, ec2-timing.ts, carry the production values). */
export const UNIT_TIMING: Partial<Ec2Timing> = {
  firstPollMs: 5,
  pollFactor: 1.8,
  maxPollMs: 50,
  pollTickMs: 5,
  fastPollForMs: 200,
  stuckAttachingMs: 300,
  attachTimeoutMs: 3_000,
  detachTimeoutMs: 2_000,
  createTimeoutMs: 2_000,
  batchWindowMs: 1,
  unknownAfterCreateMs: 200,
  instanceCacheMs: 50,
};

/**
 * One EC2 host in memory, for the EBS backend's and the reconciler's unit layer: the stateful EC2
 * model served on the EC2 port (no SDK: each port call is one model call, so throttling reaches
 * berth's own code without the SDK's retries), this host's instance, an in-memory NVMe resolver
 * bound by the model's attach and detach, and the real volume service over the in-memory
 * filesystem. No root, no loop device, no dockerd.
 */
export function ebsUnitWorld(opts: Ec2ModelOptions & { xen?: boolean; instanceType?: string; networkInterfaces?: number } = {}) {
  const stateDir = mkdtempSync(join(tmpdir(), 'berth-ebs-unit-'));
  // UNIT_TIMING polls 50× faster than production (5 ms ticks, not 250 ms): the describe buckets are
  // scaled by as much, so polling meets EC2's rule at the same ratio. Mutation buckets stay EC2's.
  const buckets = { describeVolumes: { capacity: 5_000, refillPerSecond: 1_000 }, describeInstances: { capacity: 5_000, refillPerSecond: 1_000 }, ...opts.buckets };
  const model = new Ec2Model({ region: REGION, attachLatencyMs: 5, createLatencyMs: 2, ...opts, buckets });
  const host = new FakeHost();
  const nvme = new FakeNvme(host, opts.xen ? { xen: true } : {});
  const instanceId = model.addInstance({
    az: AZ,
    tags: { 'berth:host': HOST },
    ...(opts.instanceType !== undefined ? { instanceType: opts.instanceType } : {}),
    ...(opts.networkInterfaces !== undefined ? { networkInterfaces: opts.networkInterfaces } : {}),
  });
  const world = {
    stateDir,
    model,
    host,
    nvme,
    instanceId,
    port: model.port(),
    fs: new FakeFilesystem(host),
    identity: (): HostIdentity => ({ instanceId: world.instanceId, az: AZ, region: REGION, hostId: HOST }),
    facade(overrides: Partial<Ec2FacadeDeps> = {}): Ec2Facade {
      return new Ec2Facade({ ec2: world.port, instanceId: world.instanceId, timing: UNIT_TIMING, maxConcurrentAttachments: 10, ...overrides });
    },
    backend(overrides: Partial<EbsBackendDeps> = {}): EbsBackend {
      const backend = createEbsBackend({
        ec2: world.facade(),
        devices: nvme,
        identity: world.identity(),
        defaults: { sizeBytes: GiB, fs: 'ext4' },
        tagPrefix: 'berth:',
        idleDetachMs: 60_000,
        moveWaitMs: 500,
        deviceWaitMs: 300,
        stateDir,
        logger: silentLogger,
        ...overrides,
      });
      backends.push(backend);
      return backend;
    },
    /** The real volume service over this backend and the in-memory filesystem, started. */
    async service(backend: EbsBackend, settings: Pick<ServiceDeps, 'deadlines'> = {}): Promise<VolumeService> {
      const service = new VolumeService({ backend, fs: world.fs, paths: hostPathsFor(stateDir), defaults: { sizeBytes: GiB, fs: 'ext4' }, logger: silentLogger, ...settings });
      await service.start();
      return service;
    },
    cleanup() {
      for (const b of backends) b.close();
      model.dispose();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  const backends: EbsBackend[] = [];
  // The kernel shows the namespace once EC2 attached the volume to this instance, and drops it on detach.
  model.onAttached = (volumeId, _device, attachedTo) => {
    if (attachedTo === world.instanceId) nvme.bind(volumeId);
  };
  model.onDetached = (volumeId, _device, detachedFrom) => {
    if (detachedFrom === world.instanceId) nvme.unbind(volumeId);
  };
  return world;
}

export type EbsUnitWorld = ReturnType<typeof ebsUnitWorld>;
