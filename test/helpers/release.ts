import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';

const repoRoot = join(import.meta.dirname, '..', '..');

/** The Node.js version a release ships (package.json berth.runtime, scripts/release.mjs). */
export const RELEASE_NODE_VERSION = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { berth: { runtime: { version: string } } }).berth.runtime.version;

/** Makes the release tree in `dir`, as an unpacked release tarball holds it (bin/node, dist/, userdata/, SHA256SUMS). */
export async function stageRelease(dir: string): Promise<void> {
  await execa(process.execPath, ['scripts/release.mjs', '--stage', dir], { cwd: repoRoot, timeout: 240_000 });
}

/**
 * A directory holding a `node` that says it is Node.js 18 and runs nothing, to put first on
 * PATH: a host whose own node is too old. Anything that runs it fails.
 */
export function oldNodeDir(parent: string): string {
  const dir = join(parent, 'old-node');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'node'), '#!/bin/sh\nif [ "$1" = --version ]; then echo v18.20.4; exit 0; fi\necho "node v18.20.4: this host\'s node, not the release\'s, was run: $*" >&2\nexit 1\n');
  chmodSync(join(dir, 'node'), 0o755);
  return dir;
}
