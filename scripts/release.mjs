#!/usr/bin/env node
/**
 * Builds the host release: the agent with its own Node.js runtime, so a host needs no
 * package repository and no node of its own (docs/deploy.md, "The release artifact").
 *
 *   node scripts/release.mjs [--arch x64|arm64] [--out dist/release] [--stage DIR]
 *
 * Makes `<out>/berth-<version>-linux-<arch>.tar.gz`, its `.sha256`, and leaves the tree it
 * packed beside it (`<out>/berth-<version>-linux-<arch>/`):
 *
 *   bin/node          the official Node.js binary of package.json's berth.runtime, from the npm
 *                     registry's node-linux-<arch> package, its sha512 checked against the pin
 *   bin/berth         the CLI, run by bin/node
 *   dist/             the agent bundle (scripts/build.mjs)
 *   userdata/         install-local.sh and berth.service
 *   traefik/dynamic/  Traefik's TLS options (the Traefik host installs them)
 *   package.json, SHA256SUMS (every file above; `sha256sum -c SHA256SUMS` checks the tree)
 *
 * `--stage DIR` makes that tree in DIR and no tarball (the installer's build and the tests).
 * The runtime package comes from scripts/runtime.mjs (fetched once with `npm pack`, the
 * registry's ordinary client, into node_modules/.cache/berth-runtime/, its sha512 checked).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runtime, runtimeArch, runtimeTarball } from './runtime.mjs';

const root = resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const { values: opts } = parseArgs({ options: { arch: { type: 'string' }, out: { type: 'string' }, stage: { type: 'string' } } });
const arch = runtimeArch(opts.arch);

const version = pkg.version;
const base = `berth-${version}-linux-${arch}`;
const out = resolve(root, opts.out ?? 'dist/release');
const stage = opts.stage ? resolve(opts.stage) : join(out, base);

rmSync(stage, { recursive: true, force: true });
mkdirSync(join(stage, 'bin'), { recursive: true });
execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), join(stage, 'dist')], { stdio: ['ignore', 'ignore', 'inherit'] });
execFileSync('tar', ['-xzf', runtimeTarball(arch), '-C', join(stage, 'bin'), '--strip-components=2', 'package/bin/node']);
execFileSync('tar', ['-xzf', runtimeTarball(arch), '-C', join(stage, 'bin'), '--strip-components=1', '--transform=s/LICENSE/node.LICENSE/', 'package/LICENSE']);
for (const f of ['package.json', 'userdata/install-local.sh', 'userdata/berth.service', 'traefik/dynamic/tls-options.yml']) {
  mkdirSync(dirname(join(stage, f)), { recursive: true });
  copyFileSync(join(root, f), join(stage, f));
}
// The CLI under the release's own node, wherever bin/berth is linked from.
writeFileSync(join(stage, 'bin/berth'), '#!/bin/sh\nhere=$(dirname "$(readlink -f "$0")")\nexec "$here/node" "$here/../dist/agent/cli.js" "$@"\n');
for (const f of ['bin/berth', 'bin/node', 'userdata/install-local.sh']) chmodSync(join(stage, f), 0o755);

const files = (dir) => readdirSync(dir).flatMap((e) => (statSync(join(dir, e)).isDirectory() ? files(join(dir, e)) : [join(dir, e)]));
const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');
const sums = files(stage).map((f) => relative(stage, f)).sort().map((f) => `${sha256(join(stage, f))}  ${f}\n`).join('');
writeFileSync(join(stage, 'SHA256SUMS'), sums);

if (opts.stage) {
  console.log(`staged ${stage} (node ${runtime.version}, linux-${arch})`);
} else {
  const tarball = join(out, `${base}.tar.gz`);
  // Same tree, same bytes: sorted names, fixed owner and times, gzip without a timestamp.
  const mtime = `@${process.env.SOURCE_DATE_EPOCH ?? '0'}`;
  execFileSync('sh', ['-c', `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$1" -C "$2" -cf - . | gzip -n -6 > "$3"`, 'sh', mtime, stage, tarball]);
  writeFileSync(`${tarball}.sha256`, `${sha256(tarball)}  ${basename(tarball)}\n`);
  console.log(`built ${tarball} (node ${runtime.version}, linux-${arch}, ${(statSync(tarball).size / 2 ** 20).toFixed(1)} MiB)`);
}
