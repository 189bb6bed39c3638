import { existsSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { sleep } from '../../lib/sleep.js';
import { noRootReason } from './env.js';
import { step } from './step.js';

/**
 * The Debian 12 root filesystem test/systemd-host.test.ts boots under systemd-nspawn: made with
 * debootstrap from this machine's apt mirror (no node in it). It costs 35 s on a quiet machine
 * and 160-210 s on a loaded 2-core CI machine, mostly downloads and dpkg. `npm test` starts it
 * in the background when the run starts (test/helpers/debian-rootfs-setup.ts, the system
 * project's globalSetup, with BERTH_TEST_EARLY_DEBOOTSTRAP=1 from scripts/test-on-runtime.mjs),
 * so that it is made while the other tests run; nothing is kept between runs.
 */

const has = (cmd: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, cmd)));

/** The Debian mirror this machine's apt uses (deb822 `URIs:` or a one-line `deb` entry). */
function aptMirror(): string | undefined {
  const files = [
    '/etc/apt/sources.list',
    ...(existsSync('/etc/apt/sources.list.d') ? readdirSync('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f)) : []),
  ].filter(existsSync);
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const uri = /^URIs:\s*(\S+)/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(text)?.[1];
    if (uri && !uri.includes('security')) return uri;
  }
  return undefined;
}

const mirror = aptMirror();
/** systemd as init, and the tools the agent's configuration check asks for. */
const DEBIAN_PACKAGES = 'systemd,systemd-sysv,dbus,util-linux,mount,e2fsprogs,xfsprogs';

export const noDebianRootfsReason = noRootReason
  ?? (has('debootstrap') && has('systemd-nspawn') && has('nsenter') ? undefined : 'needs debootstrap and systemd-nspawn (apt-get install debootstrap systemd-container)')
  ?? (mirror ? undefined : 'no Debian mirror in /etc/apt');

export const debootstrapArgs = (rootfs: string): string[] => ['--variant=minbase', `--include=${DEBIAN_PACKAGES}`, 'bookworm', rootfs, mirror!];

/**
 * Makes the Debian rootfs at `rootfs`: takes the one started with the run when there is one
 * (`early`, vitest's inject('earlyDebootstrap'): waits for it, then moves it there), copies BERTH_TEST_DEBIAN_ROOTFS (one made the same way,
 * for local runs), or runs debootstrap now.
 */
export async function makeDebianRootfs(rootfs: string, early: string | undefined): Promise<void> {
  const made = process.env.BERTH_TEST_DEBIAN_ROOTFS;
  if (early) {
    await step('debootstrap (started with the run): wait for it', async () => {
      while (!existsSync(join(early, 'status'))) await sleep(500);
    });
    const status = JSON.parse(readFileSync(join(early, 'status'), 'utf8')) as { code?: number; signal?: string; error?: string };
    if (status.code !== 0) {
      const tail = readFileSync(join(early, 'debootstrap.log'), 'utf8').split('\n').slice(-20).join('\n');
      throw new Error(`debootstrap started with the run failed (${JSON.stringify(status)}):\n${tail}`);
    }
    renameSync(join(early, 'rootfs'), rootfs);
  } else if (made) {
    await step('copy BERTH_TEST_DEBIAN_ROOTFS', () => execa('cp', ['-a', made, rootfs]));
  } else {
    await step('debootstrap', () => execa('debootstrap', debootstrapArgs(rootfs), { timeout: 600_000 }), 600_000);
  }
}
