import { readFile } from 'node:fs/promises';
import type { EC2Client } from '@aws-sdk/client-ec2';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ec2ScheduleKey } from '../lib/ec2-schedule-object.js';
import { errorMessage } from '../lib/errors.js';
import type { Runner } from '../lib/exec.js';
import { sleep } from '../lib/sleep.js';
import type { Backend } from '../volume-plugin/backends/backend.js';
import { deferredBackend, type DeferredBackend } from '../volume-plugin/backends/deferred.js';
import type { EbsBackend } from '../volume-plugin/backends/ebs/ebs-backend.js';
import { EBS_OPTIONS, validateEbsOptions } from '../volume-plugin/backends/ebs/ebs-options.js';
import type { Ec2Timing } from '../volume-plugin/backends/ebs/ec2-timing.js';
import type { ScheduleStore } from '../volume-plugin/backends/ebs/schedule-store.js';
import { createLoopBackend } from '../volume-plugin/backends/loop.js';
import { BACKEND_READY_WAIT_MS } from '../volume-plugin/budgets.js';
import { hostPathsOf, type Config } from './config.js';
import type { MetadataReader } from './host-identity.js';

/** EC2 says who it is in DMI: no network call needed to decide. */
export async function looksLikeEc2(sysfsRoot = '/sys'): Promise<boolean> {
  const read = (f: string) => readFile(`${sysfsRoot}/devices/virtual/dmi/id/${f}`, 'utf8').then((s) => s.trim(), () => '');
  const [assetTag, vendor] = await Promise.all([read('board_asset_tag'), read('sys_vendor')]);
  return assetTag.startsWith('i-') || /amazon ec2/i.test(vendor);
}

export async function resolveBackendKind(config: Config): Promise<'loop' | 'ebs'> {
  if (config.BERTH_BACKEND !== 'auto') return config.BERTH_BACKEND;
  return (await looksLikeEc2(config.BERTH_SYSFS_ROOT)) ? 'ebs' : 'loop';
}

/**
 * The agent's EC2 client settings (one source: the fleet simulation, test/fakes/fleet.ts, builds
 * its hosts' clients from them). The SDK retries throttled and failed calls, slowing down for the
 * account's rate limits.
 */
export const EC2_CLIENT_SETTINGS = {
  retryMode: 'adaptive',
  maxAttempts: 8,
  requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
} as const;

/** What tests (and benchmarks) may put in place of the real AWS endpoints. */
export interface AwsOverrides {
  /** Builds the EC2 client for the host's region; default: SDK client with adaptive retry. */
  ec2Client?: (region: string) => EC2Client;
  imds?: MetadataReader;
  ec2Timing?: Partial<Ec2Timing>;
  /** First retry delay of the EBS start-up (identity, credentials); doubles up to 60 s. */
  startRetryMs?: number;
}

export function createLoopFromConfig(config: Config, runner: Runner, logger: Logger): Backend {
  return createLoopBackend({ stateDir: config.BERTH_STATE_DIR, paths: hostPathsOf(config), runner, logger: logger.child({ backend: 'loop' }), foreignOptions: [EBS_OPTIONS] });
}

/**
 * The EBS backend, usable once the host's identity and credentials are known.
 * It is returned at once (deferred) so the plugin socket can open; start-up
 * runs in the background and is retried until it succeeds.
 */
export function createEbsFromConfig(config: Config, logger: Logger, aws: AwsOverrides = {}, registry?: Registry): DeferredBackend<EbsBackend> {
  const log = logger.child({ backend: 'ebs' });
  const deferred = deferredBackend<EbsBackend>('ebs', 'global', validateEbsOptions, BACKEND_READY_WAIT_MS, EBS_OPTIONS);
  void (async () => {
    let delay = aws.startRetryMs ?? 2_000;
    for (;;) {
      try {
        deferred.resolve(await buildEbs(config, log, aws, registry));
        return;
      } catch (err) {
        deferred.failedAttempt(errorMessage(err));
        log.error({ err: errorMessage(err), retryInMs: delay }, 'EBS backend cannot start yet; Get/List answer from the state file meanwhile');
        await sleep(delay);
        delay = Math.min(delay * 2, 60_000);
      }
    }
  })();
  return deferred;
}

/**
 * The S3 store of the account's EC2 schedule, `s3://<BERTH_EC2_SCHEDULE_BUCKET>/<prefix><region>.json`,
 * through the agent's one S3 client builder. One attempt per call: the store bounds each call to 2 s,
 * and a refused or slow store leaves the facade pacing this host alone.
 */
export async function createScheduleStore(config: Config, region: string, log: Logger): Promise<ScheduleStore> {
  const [{ createS3Client }, { S3ScheduleStore }, { SCHEDULE }] = await Promise.all([
    import('./s3-client.js'),
    import('../volume-plugin/backends/ebs/s3-schedule-store.js'),
    import('../volume-plugin/backends/ebs/fleet-schedule.js'),
  ]);
  const s3 = await createS3Client(config, { maxAttempts: 1, connectionTimeoutMs: SCHEDULE.storeTimeoutMs, requestTimeoutMs: SCHEDULE.storeTimeoutMs });
  const store = new S3ScheduleStore({ s3, bucket: config.BERTH_EC2_SCHEDULE_BUCKET!, key: ec2ScheduleKey(config.BERTH_EC2_SCHEDULE_PREFIX, region) });
  log.info({ schedule: store.where }, 'EC2 calls are paced with the account\'s shared schedule');
  return store;
}

async function buildEbs(config: Config, log: Logger, aws: AwsOverrides, registry: Registry | undefined): Promise<EbsBackend> {
  const [{ EC2Client }, { MetadataService }, { discoverIdentity, waitForCredentials, instanceType, networkInterfaceCount }, { Ec2Facade }, { SdkEc2 }, { meteredEc2 }, { createEbsBackend }, { createDeviceResolver }, { attachedHereOf }, { AttachmentSlots, learnAttachmentLimit }] =
    await Promise.all([
      import('@aws-sdk/client-ec2'),
      import('@aws-sdk/ec2-metadata-service'),
      import('./host-identity.js'),
      import('../volume-plugin/backends/ebs/ec2-facade.js'),
      import('../volume-plugin/backends/ebs/sdk-ec2.js'),
      import('../volume-plugin/backends/ebs/ec2-metrics.js'),
      import('../volume-plugin/backends/ebs/ebs-backend.js'),
      import('../volume-plugin/devices/nvme.js'),
      import('../volume-plugin/backends/ebs/attachment-waits.js'),
      import('../volume-plugin/backends/ebs/attachment-slots.js'),
    ]);
  const endpoint = config.BERTH_EC2_ENDPOINT;
  const makeClient =
    aws.ec2Client ??
    ((region: string) =>
      new EC2Client({
        region,
        ...(endpoint ? { endpoint } : {}),
        ...EC2_CLIENT_SETTINGS,
      }));
  const imds = aws.imds ?? new MetadataService({ ...(config.BERTH_IMDS_ENDPOINT ? { endpoint: config.BERTH_IMDS_ENDPOINT } : {}), httpOptions: { timeout: 2_000 }, retries: 2 });
  let client: EC2Client | undefined;
  const credentialsWaitMs = config.BERTH_CREDENTIALS_WAIT_SECONDS * 1000;
  const clientFor = async (region: string) => {
    if (!client) {
      client = makeClient(region);
      await waitForCredentials(() => client!.config.credentials(), credentialsWaitMs, log);
    }
    return client;
  };
  const identity = await discoverIdentity({
    imds,
    ...(config.BERTH_HOST_ID ? { hostId: config.BERTH_HOST_ID } : {}),
    tagPrefix: config.BERTH_TAG_PREFIX,
    ...(config.BERTH_IMDS_ENDPOINT ? { endpointHint: config.BERTH_IMDS_ENDPOINT } : {}),
    instanceTags: async (instanceId, region) => {
      const facade = new Ec2Facade({ ec2: new SdkEc2(await clientFor(region)), instanceId, maxConcurrentAttachments: config.BERTH_ATTACH_CONCURRENCY });
      return (await facade.instances([instanceId])).get(instanceId)?.tags ?? {};
    },
  });
  log.info(identity, 'host identity');
  // An older bootstrap sets no environment: say what that scope means (docs/deploy.md, "Migrating from a release without environments").
  if (config.BERTH_CLUSTER && !config.BERTH_ENVIRONMENT) log.warn({ cluster: config.BERTH_CLUSTER }, 'BERTH_ENVIRONMENT is not set: volumes of this cluster name in every environment of the account are in scope');
  // The EC2 port (ec2-port.ts) over the SDK, measured per action when the agent has a registry.
  const sdk = new SdkEc2(await clientFor(identity.region));
  const devices = createDeviceResolver({ sysfsRoot: config.BERTH_SYSFS_ROOT, devRoot: config.BERTH_DEV_ROOT });
  const port = registry ? meteredEc2(sdk, registry) : sdk;
  // Attachment limits (docs/design.md §6): the type's limit learnt at the first attach; the interfaces from IMDS when counted.
  let interfaces = 1;
  let facade: InstanceType<typeof Ec2Facade> | undefined;
  const slots = new AttachmentSlots(
    async (signal) => {
      const limit = await learnAttachmentLimit(port, await instanceType(imds), signal);
      log.info({ ...limit }, limit ? 'EBS attachment limit of this instance type' : 'EC2 states no EBS attachment limit for this instance type; EC2 alone refuses attaches past it');
      return limit;
    },
    {
      attachedVolumeIds: async (signal) =>
        (await facade!.volumesByTags({}, [{ Name: 'attachment.instance-id', Values: [identity.instanceId] }], signal)).map((v) => v.VolumeId!),
      networkInterfaces: async () => (interfaces = await networkInterfaceCount(imds).catch(() => interfaces)),
    },
    (err) => log.warn({ err: errorMessage(err) }, 'cannot learn this instance type\'s EBS attachment limit; attaches past it fail at EC2 (AttachmentLimitExceeded) instead of being refused here; asked again in 10 min'),
  );
  // The account's EC2 schedule (docs/design.md §6, "Sharing the account"): shared with every host when a bucket is set.
  // A store that cannot even be built (say, a Region name no key can be made of) leaves this agent pacing alone, never the backend down.
  const scheduleStore = config.BERTH_EC2_SCHEDULE_BUCKET
    ? await createScheduleStore(config, identity.region, log).catch((err: unknown) => {
        log.warn({ err: errorMessage(err) }, 'no shared EC2 schedule: this agent paces its EC2 calls alone');
        return undefined;
      })
    : undefined;
  const ec2 = (facade = new Ec2Facade({
    ec2: port,
    instanceId: identity.instanceId,
    maxConcurrentAttachments: config.BERTH_ATTACH_CONCURRENCY,
    ...(aws.ec2Timing ? { timing: aws.ec2Timing } : {}),
    // An attachment is seen complete when its NVMe namespace appears here (docs/design.md §6).
    attachedHere: attachedHereOf(devices),
    logger: log,
    slots,
    ...(scheduleStore ? { scheduleStore } : {}),
    ...(registry ? { registry } : {}),
  }));
  return createEbsBackend({
    ec2,
    devices,
    identity,
    defaults: { sizeBytes: config.BERTH_DEFAULT_SIZE, fs: config.BERTH_DEFAULT_FS },
    tagPrefix: config.BERTH_TAG_PREFIX,
    ...(config.BERTH_CLUSTER ? { cluster: config.BERTH_CLUSTER } : {}),
    ...(config.BERTH_ENVIRONMENT ? { environment: config.BERTH_ENVIRONMENT } : {}),
    idleDetachMs: config.BERTH_IDLE_DETACH_SECONDS * 1000,
    moveWaitMs: config.BERTH_MOVE_WAIT_SECONDS * 1000,
    deviceWaitMs: config.BERTH_DEVICE_WAIT_SECONDS * 1000,
    stateDir: hostPathsOf(config).stateDir,
    // Zone moves of this host's volumes, from their journals, in the agent's registry (issue 22).
    ...(registry ? { moves: (await import('../volume-plugin/backends/ebs/move-metrics.js')).observedMoveMetrics(registry) } : {}),
    logger: log,
  });
}
