import { join } from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import type { Agent } from '../../agent/agent.js';
import { silentLogger, createLogger } from '../../lib/logger.js';
import { processRunner } from '../../lib/exec.js';
import { createEbsBackend, type EbsBackend, type EbsBackendDeps, type HostIdentity } from '../../volume-plugin/backends/ebs/ebs-backend.js';
import { Ec2Facade, type Ec2Timing } from '../../volume-plugin/backends/ebs/ec2-facade.js';
import { createDeviceResolver } from '../../volume-plugin/devices/nvme.js';
import { createFilesystemOps } from '../../volume-plugin/fs/filesystem.js';
import { DockerVolumeDriver } from '../../volume-plugin/docker-driver.js';
import { VolumeService } from '../../volume-plugin/service.js';
import { hostPathsFor } from './manager.js';
import { Ec2Model, type Ec2ModelOptions } from '../aws/ec2-model.js';
import { startInProcessAgent } from './agent.js';
import { createFakeNvmeTree, type FakeNvmeTree } from './fake-nvme.js';
import { detachLoopDevicesUnder, tempDir } from './loop.js';

export const GiB = 2 ** 30;
export const REGION = 'eu-west-1';
export const AZ = 'eu-west-1a';
export const HOST = 'host-a';

/** Real waits shrunk for tests; the defaults (ec2-timing.ts) carry the production values. */
export const FAST_TIMING: Partial<Ec2Timing> = {
  firstPollMs: 20,
  pollFactor: 1.8,
  maxPollMs: 200,
  pollTickMs: 50,
  fastPollForMs: 1_000,
  // Above what binding a fake NVMe device takes on a busy 2-core machine (a hook of the model, not EC2).
  stuckAttachingMs: 3_000,
  attachTimeoutMs: 15_000,
  detachTimeoutMs: 5_000,
  createTimeoutMs: 5_000,
  batchWindowMs: 5,
  unknownAfterCreateMs: 1_000,
};

export const testLogger = () => (process.env.BERTH_TEST_LOGS ? createLogger('debug') : silentLogger);

/** An EC2 client whose calls the model answers, below the SDK's (adaptive) retries. */
export function modelClient(model: Ec2Model, maxAttempts = 8): EC2Client {
  const client = new EC2Client({ region: model.region, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' }, retryMode: 'adaptive', maxAttempts });
  model.installBehindSdkRetries(client);
  return client;
}

/**
 * One "EC2 host" on this machine: the EC2 model, an instance of logical host
 * HOST, and a fake NVMe tree in which every volume the model attaches to
 * *this* instance appears as a real loop device with the volume's serial.
 */
export interface EbsWorld {
  dir: string;
  stateDir: string;
  model: Ec2Model;
  tree: FakeNvmeTree;
  client: EC2Client;
  instanceId: string;
  identity(): HostIdentity;
  backend(overrides?: Partial<EbsBackendDeps>): EbsBackend;
  manager(backend: EbsBackend): Promise<DockerVolumeDriver>;
  /**
   * The agent in this process on the EBS backend of this world: its EC2 client
   * (or `client`), its NVMe tree, the IMDS server at `imdsEndpoint`.
   */
  startAgent(opts: { pluginName: string; imdsEndpoint: string; stateDir?: string; env?: Record<string, string>; client?: EC2Client; timing?: Partial<Ec2Timing> }): Promise<Agent>;
  /** "Replace the host": the instance terminates (its volumes detach), a new one plays the same logical host. */
  replaceInstance(): Promise<string>;
  cleanup(): Promise<void>;
}

export async function ebsWorld(opts: Ec2ModelOptions & { bindDelayMs?: number; maxAttempts?: number } = {}): Promise<EbsWorld> {
  const dir = tempDir('berth-ebs');
  const tree = await createFakeNvmeTree(join(dir.path, 'hw'));
  const model = new Ec2Model({ region: REGION, ...opts });
  const world: EbsWorld = {
    dir: dir.path,
    stateDir: join(dir.path, 'state'),
    model,
    tree,
    client: modelClient(model, opts.maxAttempts),
    instanceId: model.addInstance({ az: AZ, tags: { 'berth:host': HOST } }),
    identity: () => ({ instanceId: world.instanceId, az: AZ, region: REGION, hostId: HOST }),
    backend(overrides = {}) {
      return createEbsBackend({
        ec2: new Ec2Facade({ client: world.client, instanceId: world.instanceId, timing: FAST_TIMING, maxConcurrentAttachments: 10 }),
        devices: createDeviceResolver({ sysfsRoot: tree.sysfsRoot, devRoot: tree.devRoot }),
        identity: world.identity(),
        defaults: { sizeBytes: GiB, fs: 'ext4' },
        tagPrefix: 'berth:',
        idleDetachMs: 60_000,
        moveWaitMs: 2_000,
        deviceWaitMs: 2_000,
        stateDir: world.stateDir,
        logger: testLogger(),
        ...overrides,
      });
    },
    async manager(backend) {
      const manager = new DockerVolumeDriver(
        new VolumeService({
        backend,
        fs: createFilesystemOps({ runner: processRunner, paths: hostPathsFor(world.stateDir) }),
        paths: hostPathsFor(world.stateDir),
        defaults: { sizeBytes: GiB, fs: 'ext4' },
        logger: testLogger(),
        }),
      );
      await manager.service.start();
      return manager;
    },
    async startAgent({ pluginName, imdsEndpoint, stateDir = world.stateDir, env = {}, client = world.client, timing = {} }) {
      const { agent } = await startInProcessAgent(
        pluginName,
        stateDir,
        {
          BERTH_BACKEND: 'ebs',
          BERTH_IMDS_ENDPOINT: imdsEndpoint,
          BERTH_SYSFS_ROOT: tree.sysfsRoot,
          BERTH_DEV_ROOT: tree.devRoot,
          BERTH_DEFAULT_SIZE: '1GiB',
          BERTH_RECONCILE_INTERVAL_SECONDS: '3600',
          ...env,
        },
        { ec2Client: () => client, ec2Timing: { ...FAST_TIMING, ...timing }, startRetryMs: 100 },
      );
      return agent;
    },
    async replaceInstance() {
      await model.setInstanceState(world.instanceId, 'terminated');
      world.instanceId = model.addInstance({ az: AZ, tags: { 'berth:host': HOST } });
      return world.instanceId;
    },
    async cleanup() {
      model.dispose();
      await tree.cleanup();
      detachLoopDevicesUnder(dir.path);
      dir.cleanup();
    },
  };
  model.onAttached = async (volumeId, _device, instanceId) => {
    if (instanceId !== world.instanceId) return;
    if (opts.bindDelayMs) setTimeout(() => void tree.bind(volumeId, model.volume(volumeId).size * GiB), opts.bindDelayMs);
    else await tree.bind(volumeId, model.volume(volumeId).size * GiB);
  };
  model.onDetached = async (volumeId) => {
    await tree.unbind(volumeId);
  };
  return world;
}
