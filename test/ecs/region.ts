import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tagKeys } from '../../lib/node-contract.js';
import { sleep } from '../../lib/sleep.js';
import { step } from '../helpers/step.js';
import { startEc2HttpServer, type Ec2HttpServer } from '../aws/ec2-http-server.js';
import { Ec2Model } from '../aws/ec2-model.js';
import { startImdsServer, type ImdsServer } from '../aws/imds-server.js';
import { agentEnv } from '../helpers/agent.js';
import { docker as runDocker, ensureBusyboxImage, makeMachineDir, privateDockerd, TEST_IMAGE, type PrivateDockerd } from '../helpers/docker.js';
import { createFakeNvmeTree, type FakeNvmeTree } from '../helpers/fake-nvme.js';
import { detachLoopDevicesUnder, tempDir } from '../helpers/loop.js';
import { EcsAgent } from './ecs-agent.js';
import { EcsModel } from './ecs-model.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const GiB = 2 ** 30;

/** Image node tasks run in the region test: busybox that sleeps (its CMD), imported into each host's engine. */
export const NODE_IMAGE = 'berth-test/node:1';

/**
 * One EC2 instance playing a logical host, as its userdata boots it
 * (userdata/bootstrap.sh): its own IMDS, its own dockerd (whose
 * /run/docker/plugins is this instance's plugin directory), berth as a
 * process on the EBS backend with its real EC2 client, then the ECS agent.
 */
export interface HostInstance {
  readonly hostId: string;
  readonly instanceId: string;
  readonly dir: string;
  readonly engine: PrivateDockerd;
  readonly berth: ChildProcess;
  readonly imds: ImdsServer;
  readonly agent: EcsAgent;
  docker(args: string[]): Promise<string>;
}

/**
 * A region on one machine: the EC2 model served over HTTP, the ECS model, and
 * hosts booted and terminated as an Auto Scaling group would. Each logical
 * host keeps one fake NVMe tree whose images are its EBS volumes' data.
 */
export class Region {
  readonly ec2: Ec2Model;
  readonly ecs: EcsModel;
  private server: Ec2HttpServer | undefined;
  private readonly root = tempDir('berth-region');
  private readonly trees = new Map<string, FakeNvmeTree>();
  private readonly current = new Map<string, HostInstance>();

  constructor(readonly region = 'eu-west-1') {
    this.ec2 = new Ec2Model({ region, attachLatencyMs: 30, throttling: true });
    this.ecs = new EcsModel({ region });
    // The block device appears in the tree of the host whose instance the volume is attached to.
    this.ec2.onAttached = async (volumeId, _device, instanceId) => {
      const host = [...this.current.values()].find((h) => h.instanceId === instanceId);
      if (host) await this.trees.get(host.hostId)!.bind(volumeId, this.ec2.volume(volumeId).size * GiB);
    };
    this.ec2.onDetached = async (volumeId) => {
      for (const tree of this.trees.values()) if (tree.bound().includes(volumeId)) await tree.unbind(volumeId);
    };
  }

  async start(): Promise<void> {
    this.server = await startEc2HttpServer(this.ec2);
  }

  /** The EC2 endpoint (the model over HTTP). */
  endpoint(): string {
    return this.server!.endpoint;
  }

  host(hostId: string): HostInstance | undefined {
    return this.current.get(hostId);
  }

  hosts(): HostInstance[] {
    return [...this.current.values()];
  }

  /** A new instance of `hostId` launches in `az` with the group's tags and boots. */
  async boot(hostId: string, p: { az: string; cluster: string; ecsCluster: string; tags: Record<string, string> }): Promise<HostInstance> {
    if (this.current.has(hostId)) throw new Error(`host ${hostId} already has a running instance`);
    const instanceId = this.ec2.addInstance({ az: p.az, tags: p.tags });
    const hostDir = join(this.root.path, hostId);
    let tree = this.trees.get(hostId);
    if (!tree) {
      tree = await createFakeNvmeTree(join(hostDir, 'hw'));
      this.trees.set(hostId, tree);
    }
    const dir = join(hostDir, instanceId);
    mkdirSync(join(dir, 'state'), { recursive: true });
    makeMachineDir(dir);
    const imds = await startImdsServer({ instanceId, az: p.az, region: this.region, tags: p.tags });
    const engine = privateDockerd({ pluginDir: join(dir, 'plugins') });
    await engine.start();
    const docker = (args: string[]) => runDocker(args, { host: engine.host });
    await ensureBusyboxImage(engine.host);
    const cid = await docker(['create', TEST_IMAGE, 'true']);
    await docker(['commit', '--change', 'CMD ["sleep", "1000000"]', cid, NODE_IMAGE]);
    await docker(['rm', cid]);

    // bootstrap.sh writes BERTH_ENVIRONMENT from the environment infra tags the host with.
    const berth = this.startBerth(dir, imds.endpoint, p.cluster, tree, p.tags[tagKeys().environment]);
    const agent = new EcsAgent({
      model: this.ecs, cluster: p.ecsCluster, ec2InstanceId: instanceId, dockerHost: engine.host, pluginDir: join(dir, 'plugins'),
      instanceAttributes: { 'berth.host': hostId }, containerStopTimeoutSeconds: 1,
    });
    // bootstrap.sh: the ECS agent starts only once berth's socket is there.
    await waitFor(() => existsSync(join(dir, 'plugins', 'berth.sock')), 30_000, () => `berth on ${instanceId} did not open its socket: ${this.berthLog(dir)}`, berth);
    await agent.start();
    const instance: HostInstance = {
      hostId, instanceId, dir, engine, berth, imds, agent, docker,
    };
    this.current.set(hostId, instance);
    return instance;
  }

  berthLog(dir: string): string {
    try {
      return readFileSync(join(dir, 'berth.log'), 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '(no log)';
    }
  }

  private startBerth(dir: string, imdsEndpoint: string, cluster: string, tree: FakeNvmeTree, environment: string | undefined): ChildProcess {
    const env: Record<string, string> = { ...process.env as Record<string, string> };
    for (const k of Object.keys(env)) if (k.startsWith('AWS_') || k.startsWith('BERTH_')) delete env[k];
    const log = openSync(join(dir, 'berth.log'), 'a');
    return spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'agent/main.ts')], {
      cwd: repoRoot,
      env: {
        ...env,
        ...agentEnv('berth', join(dir, 'state'), {
          BERTH_BACKEND: 'ebs',
          BERTH_PLUGIN_DIR: join(dir, 'plugins'),
          BERTH_EC2_ENDPOINT: this.server!.endpoint,
          BERTH_IMDS_ENDPOINT: imdsEndpoint,
          BERTH_SYSFS_ROOT: tree.sysfsRoot,
          BERTH_DEV_ROOT: tree.devRoot,
          BERTH_CLUSTER: cluster,
          ...(environment ? { BERTH_ENVIRONMENT: environment } : {}),
          BERTH_DEFAULT_SIZE: '1GiB',
          BERTH_RECONCILE_INTERVAL_SECONDS: '1',
          BERTH_MOVE_WAIT_SECONDS: '5',
        }),
        // The SDK's instance-profile credentials come from this instance's IMDS; no other source.
        AWS_EC2_METADATA_SERVICE_ENDPOINT: imdsEndpoint,
        AWS_CONFIG_FILE: '/nonexistent', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
      },
      stdio: ['ignore', log, log],
    });
  }

  /**
   * The instance dies (ASG replacement, termination): every process on it at
   * once, its mounts with it; EC2 then detaches its volumes and ECS marks its
   * tasks stopped.
   */
  async terminate(hostId: string): Promise<string> {
    const h = this.current.get(hostId);
    if (!h) throw new Error(`host ${hostId} has no running instance`);
    this.current.delete(hostId);
    await h.agent.stop();
    h.berth.kill('SIGKILL');
    const ids = (await h.docker(['ps', '-q'])).split('\n').filter(Boolean);
    if (ids.length > 0) await h.docker(['kill', ...ids]).catch(() => undefined);
    await h.engine.destroy();
    unmountUnder(h.dir);
    await this.ec2.setInstanceState(h.instanceId, 'terminated');
    this.ecs.instanceTerminated(h.instanceId);
    await h.imds.close();
    return h.instanceId;
  }

  async cleanup(): Promise<void> {
    for (const hostId of [...this.current.keys()]) await this.terminate(hostId).catch(() => undefined);
    await this.server?.close();
    this.ec2.dispose();
    for (const tree of this.trees.values()) await tree.cleanup();
    detachLoopDevicesUnder(this.root.path);
    this.root.cleanup();
  }
}

export { makeMachineDir };

/** Unmounts everything at and below `dir`, deepest first. */
export function unmountUnder(dir: string): void {
  const targets = execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' }).split('\n').filter((t) => t === dir || t.startsWith(`${dir}/`));
  for (const t of targets.sort((a, b) => b.length - a.length)) execFileSync('umount', ['-l', t], { stdio: 'ignore' });
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: () => string, proc?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await step(`wait for: ${what().slice(0, 100)}`, async () => {
    while (!(await check())) {
      if (proc && proc.exitCode !== null) throw new Error(`process exited (${proc.exitCode}) while waiting: ${what()}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s: ${what()}`);
      await sleep(100);
    }
  });
}
