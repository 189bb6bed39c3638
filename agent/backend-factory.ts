import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { BerthError } from '../lib/errors.js';
import type { Runner } from '../lib/exec.js';
import type { Backend } from '../volume-plugin/backends/backend.js';
import { createLoopBackend } from '../volume-plugin/backends/loop.js';
import type { Config } from './config.js';

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

export async function createBackend(kind: 'loop' | 'ebs', config: Config, runner: Runner, logger: Logger): Promise<Backend> {
  if (kind === 'loop') return createLoopBackend({ stateDir: config.BERTH_STATE_DIR, runner, logger: logger.child({ backend: 'loop' }) });
  throw new BerthError('INVALID_ARGUMENT', 'BERTH_BACKEND=ebs: the EBS backend is not part of this build yet; use BERTH_BACKEND=loop');
}
