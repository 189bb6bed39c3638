import { join } from 'node:path';
import { CONFIG_DEFAULTS, hostPathsOf, type Config } from '../../agent/config.js';
import { silentLogger } from '../../lib/logger.js';
import { processRunner, type Runner } from '../../lib/exec.js';
import type { Backend } from '../../volume-plugin/backends/backend.js';
import { EBS_OPTIONS } from '../../volume-plugin/backends/ebs/ebs-options.js';
import { createLoopBackend } from '../../volume-plugin/backends/loop.js';
import { DockerVolumeDriver } from '../../volume-plugin/docker-driver.js';
import { createFilesystemOps, type FilesystemDeps } from '../../volume-plugin/fs/filesystem.js';
import type { HostPaths } from '../../volume-plugin/host-paths.js';
import { VolumeService, type ServiceDeps } from '../../volume-plugin/service.js';

const MiB = 2 ** 20;

/** The agent's host paths with their defaults (agent/config.ts): this host's /sys, /proc/self/mountinfo, … */
export const HOST_PATHS: HostPaths = hostPathsOf(CONFIG_DEFAULTS);

/** The agent's host paths (agent/config.ts defaults) with the state dir, and any other setting, a test's own. */
export function hostPathsFor(stateDir: string, settings: Partial<Config> = {}): HostPaths {
  return hostPathsOf({ ...CONFIG_DEFAULTS, ...settings, BERTH_STATE_DIR: stateDir });
}

/** What a test may change in loopManager's stack: the tools' runner, the grow check's size read, the default size, and the service's own settings. */
export interface LoopManagerOptions extends Pick<ServiceDeps, 'deadlines' | 'unmountGraceMs'>, Pick<FilesystemDeps, 'filesystemBytes'> {
  runner?: Runner;
  sizeBytes?: number;
}

/**
 * The Docker front end over a volume service over the real loop backend and
 * real filesystem operations, in stateDir: `manager` speaks Docker's protocol,
 * `manager.service` is the service under it.
 */
export async function loopManager(
  stateDir: string,
  wrap: (b: Backend) => Backend = (b) => b,
  { runner = processRunner, sizeBytes = 64 * MiB, filesystemBytes, ...service }: LoopManagerOptions = {},
): Promise<{ manager: DockerVolumeDriver; backend: Backend }> {
  const paths = hostPathsFor(stateDir);
  // As the agent builds it (agent/backend-factory.ts): EBS's options refused as needing the ebs backend.
  const backend = wrap(createLoopBackend({ stateDir, paths, runner, foreignOptions: [EBS_OPTIONS] }));
  const manager = new DockerVolumeDriver(
    new VolumeService({
    backend,
    fs: createFilesystemOps({ runner, paths, ...(filesystemBytes ? { filesystemBytes } : {}) }),
    paths,
    defaults: { sizeBytes, fs: 'ext4' },
    logger: silentLogger,
    ...service,
    }),
  );
  await manager.service.start();
  return { manager, backend };
}

export const imageOf = (stateDir: string, name: string) => join(stateDir, 'images', `${name}.img`);
