import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sh } from './loop.js';

const mountsBelow = (path: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').filter((l) => l.startsWith(path + '/'));

/**
 * A small real filesystem (tmpfs, size=) mounted at stateDir, to be filled to
 * ENOSPC: fill() writes filler files until the kernel refuses (1 MiB blocks,
 * then 4 KiB ones for the rest), free() deletes them, unmount() lazily
 * unmounts whatever is below, then the tmpfs itself.
 */
export function smallStateDisk(stateDir: string, size = '48m'): { fill(): void; free(): void; unmount(): void } {
  mkdirSync(stateDir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'berth-test-full', stateDir]);
  const fillers = ['1M', '4k'].map((bs, i) => ({ bs, path: join(stateDir, `filler-${i}`) }));
  return {
    fill() {
      for (const { bs, path } of fillers) {
        try {
          execFileSync('dd', ['if=/dev/zero', `of=${path}`, `bs=${bs}`], { stdio: 'ignore' });
        } catch {
          // ENOSPC: that is the point
        }
      }
    },
    free() {
      for (const { path } of fillers) rmSync(path, { force: true });
    },
    unmount() {
      for (const m of mountsBelow(stateDir).reverse()) execFileSync('umount', ['-l', m]);
      execFileSync('umount', ['-l', stateDir]);
    },
  };
}
