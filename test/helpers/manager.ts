import { join } from 'node:path';
import { silentLogger } from '../../lib/logger.js';
import { execaRunner } from '../../lib/exec.js';
import type { Backend } from '../../volume-plugin/backends/backend.js';
import { createLoopBackend } from '../../volume-plugin/backends/loop.js';
import { createFilesystemOps } from '../../volume-plugin/fs/filesystem.js';
import { VolumeManager } from '../../volume-plugin/manager.js';

const MiB = 2 ** 20;

/** A VolumeManager over the real loop backend and real filesystem operations, in stateDir. */
export async function loopManager(stateDir: string, wrap: (b: Backend) => Backend = (b) => b): Promise<{ manager: VolumeManager; backend: Backend }> {
  const backend = wrap(createLoopBackend({ stateDir, runner: execaRunner }));
  const manager = new VolumeManager({
    backend,
    fs: createFilesystemOps({ runner: execaRunner }),
    stateDir,
    defaults: { sizeBytes: 64 * MiB, fs: 'ext4' },
    logger: silentLogger,
  });
  await manager.start();
  return { manager, backend };
}

export const imageOf = (stateDir: string, name: string) => join(stateDir, 'images', `${name}.img`);
