import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Why a system test cannot run here, or undefined when it can. Tests skip
 * with this reason only where the machine lacks what they need; CI has it all.
 */
function probe(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}

const isRoot = process.getuid?.() === 0;
const hasLoop = probe(() => existsSync('/dev/loop-control') && execFileSync('losetup', ['--version']).length > 0);
const hasDocker = probe(() => execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).length > 0);

export const noRootReason = isRoot ? undefined : 'needs root (loop devices, mkfs, mount)';
export const noLoopReason = noRootReason ?? (hasLoop ? undefined : 'needs loop devices (/dev/loop-control and losetup)');
export const noDockerReason = noLoopReason ?? (hasDocker ? undefined : 'needs a running dockerd (docker info failed)');
const hasCompose = probe(() => execFileSync('docker-compose', ['version', '--short'], { stdio: ['ignore', 'pipe', 'ignore'] }).length > 0);
export const noComposeReason = noDockerReason ?? (hasCompose ? undefined : 'needs docker-compose (apt-get install docker-compose)');

/** Online ext4 resize needs CAP_SYS_RESOURCE, which some sandboxes drop even for root. */
const capEff = BigInt('0x' + (/CapEff:\s+([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'));
const CAP_SYS_RESOURCE = 24n;
export const noSysResourceReason = noLoopReason ?? ((capEff >> CAP_SYS_RESOURCE) & 1n ? undefined : 'needs CAP_SYS_RESOURCE (ext4 online resize); this machine drops it even for root');

/** A TCP port nothing listens on right now (for health endpoints and test servers). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}
