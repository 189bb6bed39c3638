/**
 * The Node.js runtime a release ships: package.json's berth.runtime (version, and the sha512
 * of each architecture's node-linux-<arch> package on the npm registry, the official binaries).
 * Fetched with `npm pack` into node_modules/.cache/berth-runtime/ when missing there, and
 * checked against the pin every time it is used.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
export const runtime = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).berth.runtime;
const cache = join(root, 'node_modules', '.cache', 'berth-runtime');

/** The architecture names of the runtime packages, from process.arch's. */
export function runtimeArch(arch = process.arch) {
  if (!runtime.integrity[arch]) throw new Error(`no Node.js runtime pinned for linux-${arch} (package.json berth.runtime: ${Object.keys(runtime.integrity).join(', ')})`);
  return arch;
}

/** The pinned runtime package's tarball for `arch`, verified. */
export function runtimeTarball(arch) {
  const name = `node-linux-${runtimeArch(arch)}`;
  const file = join(cache, `${name}-${runtime.version}.tgz`);
  if (!existsSync(file)) {
    mkdirSync(cache, { recursive: true });
    execFileSync('npm', ['pack', `${name}@${runtime.version}`, '--pack-destination', cache, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const [algo, want] = runtime.integrity[arch].split(/-(.*)/s);
  const have = createHash(algo).update(readFileSync(file)).digest('base64');
  if (have !== want) {
    rmSync(file, { force: true });
    throw new Error(`${name}@${runtime.version}: ${algo} ${have} is not the pinned ${want} (package.json berth.runtime); removed the download`);
  }
  return file;
}

/** The runtime's `bin/node` for this machine's architecture, unpacked once into the cache. */
export function runtimeNode() {
  const arch = runtimeArch();
  const dir = join(cache, `node-${runtime.version}-linux-${arch}`);
  const node = join(dir, 'bin', 'node');
  if (!existsSync(node)) {
    const tmp = `${dir}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(join(tmp, 'bin'), { recursive: true });
    execFileSync('tar', ['-xzf', runtimeTarball(arch), '-C', join(tmp, 'bin'), '--strip-components=2', 'package/bin/node']);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  return node;
}
