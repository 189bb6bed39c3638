import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A temp dir; removed (after unmounting anything below it) by cleanup(). */
export function tempDir(prefix: string): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return {
    path,
    cleanup() {
      for (const line of execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' }).split('\n').reverse()) {
        if (line.startsWith(path + '/')) execFileSync('umount', ['-l', line]);
      }
      try {
        execFileSync('chattr', ['-R', '-i', path], { stdio: 'ignore' });
      } catch {
        // chattr also complains about device nodes and links it cannot flag; the directories it needed are done.
      }
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** A real loop device over a sparse file; detach() releases only this device. */
export function makeLoopDevice(dir: string, sizeBytes: number, name = 'disk'): { device: string; image: string; detach(): void } {
  const image = join(dir, `${name}.img`);
  execFileSync('truncate', ['-s', String(sizeBytes), image]);
  const device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  return {
    device,
    image,
    detach() {
      execFileSync('losetup', ['--detach', device], { stdio: 'ignore' });
    },
  };
}

/** Loop devices backed by files under dir (for leak checks and cleanup). */
export function loopDevicesUnder(dir: string): string[] {
  const out = execFileSync('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([, file]) => file?.startsWith(dir + '/'))
    .map(([name]) => name!);
}

export function detachLoopDevicesUnder(dir: string): void {
  for (const d of loopDevicesUnder(dir)) execFileSync('losetup', ['--detach', d], { stdio: 'ignore' });
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}
