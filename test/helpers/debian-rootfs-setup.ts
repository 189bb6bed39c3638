import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { TestProject } from 'vitest/node';
import { debootstrapArgs, noDebianRootfsReason } from './debian-rootfs.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The directory of the debootstrap started with the run: `rootfs/`, `debootstrap.log`, and `status` once it ended. */
    earlyDebootstrap: string | undefined;
  }
}

/** Unmounts what a debootstrap left mounted below `dir` (it mounts /proc and /sys in the target while it configures). */
async function unmountBelow(dir: string): Promise<void> {
  const { stdout } = await execa('findmnt', ['-rn', '-o', 'TARGET']);
  for (const t of stdout.split('\n').filter((l) => l.startsWith(`${dir}/`)).reverse()) await execa('umount', ['-l', t], { reject: false });
}

/**
 * The system project's globalSetup (vitest.config.ts): with BERTH_TEST_EARLY_DEBOOTSTRAP=1,
 * starts debootstrap in the background and provides its directory to the tests; removes it at
 * the end of the run, stopping debootstrap if it still runs.
 */
export default function startEarlyDebootstrap(project: TestProject): (() => Promise<void>) | undefined {
  project.provide('earlyDebootstrap', undefined);
  if (process.env.BERTH_TEST_EARLY_DEBOOTSTRAP !== '1' || noDebianRootfsReason) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'berth-debian-'));
  const log = openSync(join(dir, 'debootstrap.log'), 'w');
  // A process group of its own: stopping it at the end stops its dpkg and chroot children too.
  const child = spawn('debootstrap', debootstrapArgs(join(dir, 'rootfs')), { stdio: ['ignore', log, log], detached: true });
  const ended = new Promise<void>((resolve) => {
    const end = (status: object) => {
      writeFileSync(join(dir, 'status'), JSON.stringify(status));
      resolve();
    };
    child.once('error', (err) => end({ error: err.message }));
    child.once('exit', (code, signal) => end({ code, signal }));
  });
  project.provide('earlyDebootstrap', dir);
  return async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(-child.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([ended, new Promise((resolve) => (timer = setTimeout(resolve, 30_000)))]);
    clearTimeout(timer); // a pending timer would keep vitest from exiting
    closeSync(log);
    await unmountBelow(dir);
    rmSync(dir, { recursive: true, force: true });
  };
}

