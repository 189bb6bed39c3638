import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import { processRunner, type Runner } from '../lib/exec.js';
import { createFilesystemOps } from '../volume-plugin/fs/filesystem.js';
import { DockerVolumeDriver } from '../volume-plugin/docker-driver.js';
import { VolumeService } from '../volume-plugin/service.js';
import { assertSocketFree, listenPlugin, type PluginServer } from '../volume-plugin/server.js';
import { createEbsFromConfig, createLoopFromConfig, resolveBackendKind, type AwsOverrides } from './backend-factory.js';
import type { CertRefresher } from './cert-refresher.js';
import { hostPathsOf, pluginSocketPath, type Config } from './config.js';
import { engineReferences } from './engine-references.js';
import { createHealthServer, type HealthServer } from './health-server.js';
import { createRegistry } from './metrics.js';
import type { Registry } from 'prom-client';
import type { Logger as PinoLogger } from 'pino';
import type { DeferredBackend } from '../volume-plugin/backends/deferred.js';
import type { EbsBackend } from '../volume-plugin/backends/ebs/ebs-backend.js';
import type { Reconciler } from '../volume-plugin/reconcile/reconciler.js';

export interface Agent {
  /** The volume service (protocol-neutral); the reconciler and /status use it. */
  readonly manager: VolumeService;
  /** The Docker protocol's front end over it, which the plugin socket serves. */
  readonly docker: DockerVolumeDriver;
  readonly plugin: PluginServer;
  readonly health: HealthServer;
  readonly healthPort: number;
  /** Present when BERTH_CERT_BUCKET is set. */
  readonly certs: CertRefresher | undefined;
  /** EBS only: resolves once boot reconcile has run (it never rejects; failures show in /readyz). */
  readonly booted: Promise<Reconciler | undefined>;
  /** Stops accepting, drains in-flight calls, removes the socket. Mounts stay in place. */
  stop(): Promise<void>;
}

export interface AgentOptions {
  runner?: Runner;
  /** Called before every state file write (crash-point tests). */
  beforeStateWrite?: () => void;
  /** Stand-ins for AWS (tests, benchmarks). */
  aws?: AwsOverrides;
}

/** Wires the agent in start order: backend → volume service → its front ends (plugin socket) → health endpoint. */
export async function startAgent(config: Config, logger: Logger, options: AgentOptions = {}): Promise<Agent> {
  // Before the state dir is touched: a second agent on a live one's socket must change nothing.
  await assertSocketFree(pluginSocketPath(config));
  const runner = options.runner ?? processRunner;
  const registry = createRegistry();
  await mkdir(config.BERTH_STATE_DIR, { recursive: true, mode: 0o700 });

  const kind = await resolveBackendKind(config);
  const ebs = kind === 'ebs' ? createEbsFromConfig(config, logger, options.aws, registry) : undefined;
  const backend = ebs ?? createLoopFromConfig(config, runner, logger);
  const paths = hostPathsOf(config);
  const fs = createFilesystemOps({ runner, paths, logger: logger.child({ component: 'fs' }) });
  const engine = config.BERTH_DOCKER_HOST && config.BERTH_DOCKER_HOST !== 'off' ? engineReferences(config.BERTH_DOCKER_HOST) : undefined;
  // The core is built once and handed to its front ends: the Docker plugin socket now, any later one beside it.
  const manager = new VolumeService({
    backend,
    fs,
    paths,
    defaults: { sizeBytes: config.BERTH_DEFAULT_SIZE, fs: config.BERTH_DEFAULT_FS },
    logger: logger.child({ component: 'manager' }),
    registry,
    unmountGraceMs: config.BERTH_UNMOUNT_GRACE_SECONDS * 1000,
    ...(engine ? { engine } : {}),
    ...(options.beforeStateWrite ? { beforeStateWrite: options.beforeStateWrite } : {}),
  });
  const docker = new DockerVolumeDriver(manager);
  await manager.start();
  // dockerd usually starts after berth: the first check finds no engine and changes nothing; the periodic one catches up.
  const checkReferences = (reason: string) =>
    void manager.reconcileReferences(reason).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'reference check failed'));
  const referenceTimer = engine ? setInterval(() => checkReferences('periodic'), config.BERTH_REFERENCE_CHECK_SECONDS * 1000) : undefined;
  referenceTimer?.unref();
  if (engine) checkReferences('start');
  // Online grow (volume-plugin/online-grow.ts): one sysfs read per mounted volume, a lock only for one whose device grew.
  let growing: Promise<void> | undefined;
  const growTimer = setInterval(() => {
    growing ??= manager.growMounted().finally(() => (growing = undefined));
  }, config.BERTH_GROW_CHECK_SECONDS * 1000);
  growTimer.unref();

  const plugin = await listenPlugin(pluginSocketPath(config), { driver: docker, answers: docker.answers, logger: logger.child({ component: 'plugin' }), registry });
  logger.info({ socket: plugin.socketPath, backend: kind, volumes: manager.snapshot().length }, 'plugin socket listening');

  const health = createHealthServer({
    registry,
    logger,
    status: () => ({ backend: kind, plugin: config.BERTH_PLUGIN_NAME, socket: plugin.socketPath, volumes: manager.snapshot() }),
    resize: (name, change) => manager.resize(name, change),
    plan: async () => {
      if (!ebs) return { backend: kind, items: [], note: 'the loop backend has no host tags: nothing to reconcile' };
      if (!reconciler) throw new Error(`EBS backend starting: ${ebs.pending ?? 'boot reconcile pending'}`);
      return { backend: kind, items: await reconciler.plan() };
    },
  });
  health.addReadinessCheck('plugin', () => (manager.isStarted ? true : 'volume manager not started'));
  let reconciler: Reconciler | undefined;
  let stopping = false;
  if (ebs) health.addReadinessCheck('volumes', () => reconciler?.readiness() ?? `EBS backend starting: ${ebs.pending ?? 'boot reconcile pending'}`);
  const booted = ebs
    ? bootReconcile(ebs, manager, config, logger, registry, () => stopping).then((r) => {
        reconciler = r;
        return r;
      })
    : Promise.resolve(undefined);
  const certs = config.BERTH_CERT_BUCKET ? await createCertRefresherFromConfig(config, logger, registry) : undefined;
  if (certs) {
    await certs.start();
    health.addReadinessCheck('certificate', () => certs.readiness());
  }
  const { port: healthPort } = await health.listen(config.BERTH_HEALTH_ADDR);

  return {
    manager,
    docker,
    plugin,
    health,
    healthPort,
    certs,
    booted,
    async stop() {
      stopping = true;
      clearInterval(referenceTimer);
      clearInterval(growTimer);
      await growing;
      await reconciler?.stop();
      ebs?.current?.close();
      await certs?.stop();
      await health.close();
      await plugin.close(config.BERTH_SHUTDOWN_GRACE_SECONDS * 1000);
      await manager.flushUnmountGrace();
      logger.info('stopped; mounts left in place for running containers');
    },
  };
}

/**
 * Once the EBS backend is up: boot reconcile (every volume tagged to this
 * host attached and mounted), then the periodic pass. Docker calls are served
 * all along; a Mount of a name the reconcile is working on waits for it on
 * the manager's per-name lock.
 */
async function bootReconcile(
  ebs: DeferredBackend<EbsBackend>,
  manager: VolumeService,
  config: Config,
  logger: PinoLogger,
  registry: Registry,
  stopping: () => boolean,
): Promise<Reconciler | undefined> {
  const [backend, { Reconciler }] = await Promise.all([ebs.ready, import('../volume-plugin/reconcile/reconciler.js')]);
  if (stopping()) return undefined;
  const reconciler = new Reconciler({
    manager,
    backend,
    concurrency: config.BERTH_ATTACH_CONCURRENCY,
    intervalMs: config.BERTH_RECONCILE_INTERVAL_SECONDS * 1000,
    logger: logger.child({ component: 'reconcile' }),
    registry,
  });
  await reconciler.boot().catch(() => undefined);
  if (!stopping()) reconciler.start();
  return reconciler;
}

/** Loaded only when configured: the S3 SDK costs ~15 MB that a volume-only host need not pay. */
async function createCertRefresherFromConfig(config: Config, logger: Logger, registry: Registry): Promise<CertRefresher> {
  const [{ createS3Client }, { CertRefresher }] = await Promise.all([import('./s3-client.js'), import('./cert-refresher.js')]);
  // A hung S3 must cost one poll, not the refresher.
  const s3 = await createS3Client(config, { maxAttempts: 3, connectionTimeoutMs: 5_000, requestTimeoutMs: 15_000 });
  return new CertRefresher({
    s3,
    bucket: config.BERTH_CERT_BUCKET!,
    certObject: config.BERTH_CERT_OBJECT,
    keyObject: config.BERTH_CERT_KEY_OBJECT,
    certDir: config.BERTH_CERT_DIR,
    dynamicFile: config.BERTH_CERT_DYNAMIC_FILE,
    domains: config.BERTH_CERT_DOMAINS,
    pollMs: config.BERTH_CERT_POLL_SECONDS * 1000,
    fileOwner: config.BERTH_CERT_FILE_OWNER,
    logger: logger.child({ component: 'certificates' }),
    registry,
  });
}
