/**
 * Turns the agent image into a Docker managed plugin: the image's root
 * filesystem (docker create + docker export) and scripts/plugin-config.ts's
 * config.json, then `docker plugin create` and `docker plugin enable`.
 * Runs against the engine the docker CLI talks to (DOCKER_HOST honoured).
 *
 *   node --import tsx scripts/build-plugin.ts [--image berth-agent:local] [--name berth:local]
 *        [--timeout 120] [--images /var/lib/berth-plugin/images] [--set BERTH_BACKEND=loop ...]
 *        [--no-enable] [--force]
 *
 * --force replaces an installed plugin of the same name (upgrade without a
 * registry); it refuses while containers use the plugin's volumes.
 *
 * --images is the host directory of the loop backend's volume images (created
 * 0700 here when missing, so run this on the engine's host): outside dockerd's
 * plugin directory, so they outlive `docker plugin rm` and a re-create.
 *
 * --timeout is `docker plugin enable --timeout`: dockerd then gives every call
 * to the plugin (Create, Mount, …) that long, not only the start.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { PLUGIN_IMAGES_SOURCE, pluginConfig } from './plugin-config.js';

/** Below this, a Mount that attaches an EBS volume, waits for a move or formats can outlast dockerd's patience. */
export const MIN_SAFE_TIMEOUT_SECONDS = 60;

export function timeoutWarning(seconds: number): string | undefined {
  if (seconds >= MIN_SAFE_TIMEOUT_SECONDS) return undefined;
  return (
    `warning: --timeout ${seconds} is short. dockerd gives every call to the plugin this long, not only the start: ` +
    `a Mount that attaches an EBS volume, waits up to BERTH_MOVE_WAIT_SECONDS (60) for another host to release it, ` +
    `or formats a large volume can take longer, and dockerd then reports a failure while berth finishes the Mount. ` +
    `Use at least ${MIN_SAFE_TIMEOUT_SECONDS} (120 recommended).`
  );
}

/** Whether this host may hand CAP_SYS_RESOURCE to a container (some sandboxes withhold it even from root). */
export function hostHasSysResource(): boolean {
  const bnd = /CapBnd:\s+([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  return ((BigInt('0x' + bnd) >> 24n) & 1n) === 1n;
}

async function docker(args: string[]): Promise<string> {
  const res = await execa('docker', args, { reject: false, stdin: 'ignore', timeout: 600_000 });
  if (res.exitCode !== 0) throw new Error(`docker ${args.join(' ')}: ${(res.stderr || res.stdout).trim()}`);
  return res.stdout.trim();
}

/**
 * --force: replaces an installed plugin of that name (the upgrade path without
 * a registry). Refused while a container uses one of its volumes: disabling
 * unmounts the plugin's propagated mount under it (docs/operations.md).
 */
async function removeExisting(name: string): Promise<void> {
  const id = await docker(['plugin', 'inspect', '--format', '{{.Id}}', name]).catch(() => undefined);
  if (id === undefined) return;
  const enabled = (await docker(['plugin', 'inspect', '--format', '{{.Enabled}}', name])) === 'true';
  if (enabled) {
    const users: string[] = [];
    for (const volume of (await docker(['volume', 'ls', '-q', '--filter', `driver=${name}`])).split('\n').filter(Boolean)) {
      const ids = await docker(['ps', '-q', '--filter', `volume=${volume}`]);
      if (ids) users.push(`${volume} (${ids.split('\n').join(', ')})`);
    }
    if (users.length > 0) throw new Error(`containers use volumes of ${name}: ${users.join('; ')}; stop them before replacing the plugin`);
    await docker(['plugin', 'disable', '--force', name]);
  }
  // Mountpoints of volumes dockerd still knows keep berth's immutable flag, and
  // `docker plugin rm` cannot delete them; clear it where this host holds them.
  const mounts = join(await docker(['info', '--format', '{{.DockerRootDir}}']), 'plugins', id, 'propagated-mount', 'mounts');
  if (existsSync(mounts)) {
    for (const entry of readdirSync(mounts)) await execa('chattr', ['-i', '--', join(mounts, entry)], { reject: false });
  }
  await docker(['plugin', 'rm', '--force', name]);
}

export interface BuildPluginOptions {
  image: string;
  name: string;
  imagesDir: string;
  timeoutSeconds: number;
  settings: Record<string, string>;
  enable: boolean;
  force: boolean;
  warn: (line: string) => void;
}

export async function buildPlugin(o: BuildPluginOptions): Promise<void> {
  if (!Number.isInteger(o.timeoutSeconds) || o.timeoutSeconds <= 0) throw new Error(`--timeout must be a whole number of seconds, got ${o.timeoutSeconds}`);
  const warning = o.enable ? timeoutWarning(o.timeoutSeconds) : undefined;
  if (warning) o.warn(warning);
  const withSysResource = hostHasSysResource();
  if (!withSysResource) o.warn('warning: this host withholds CAP_SYS_RESOURCE; the plugin is built without it, so ext4 volumes cannot grow while mounted');

  const dir = mkdtempSync(join(tmpdir(), 'berth-plugin-'));
  try {
    mkdirSync(join(dir, 'rootfs'));
    const container = await docker(['create', '--network', 'none', o.image]);
    try {
      await docker(['export', '--output', join(dir, 'rootfs.tar'), container]);
      await execa('tar', ['-x', '-f', join(dir, 'rootfs.tar'), '-C', join(dir, 'rootfs')]);
      rmSync(join(dir, 'rootfs.tar'));
    } finally {
      await docker(['rm', container]);
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(pluginConfig({ withSysResource }), null, 2));
    if (o.force) await removeExisting(o.name);
    await docker(['plugin', 'create', o.name, dir]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(o.imagesDir, { recursive: true, mode: 0o700 });
  const pairs = Object.entries(o.settings).map(([k, v]) => `${k}=${v}`);
  await docker(['plugin', 'set', o.name, `images.source=${o.imagesDir}`, ...pairs]);
  if (o.enable) await docker(['plugin', 'enable', '--timeout', String(o.timeoutSeconds), o.name]);
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        image: { type: 'string', default: 'berth-agent:local' },
        name: { type: 'string', default: 'berth:local' },
        timeout: { type: 'string', default: '120' },
        images: { type: 'string', default: PLUGIN_IMAGES_SOURCE },
        set: { type: 'string', multiple: true, default: [] },
        'no-enable': { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
      },
    }));
  } catch (err) {
    console.error(`build-plugin: ${(err as Error).message}`);
    return 2;
  }
  const settings: Record<string, string> = {};
  for (const s of values.set) {
    const eq = s.indexOf('=');
    if (eq <= 0) {
      console.error(`build-plugin: --set wants KEY=VALUE, got ${JSON.stringify(s)}`);
      return 2;
    }
    settings[s.slice(0, eq)] = s.slice(eq + 1);
  }
  const timeoutSeconds = Number(values.timeout);
  if (!/^\d+$/.test(values.timeout) || timeoutSeconds <= 0) {
    console.error(`build-plugin: --timeout must be a whole number of seconds, got ${JSON.stringify(values.timeout)}`);
    return 2;
  }
  try {
    await buildPlugin({ image: values.image, name: values.name, imagesDir: values.images, timeoutSeconds, settings, enable: !values['no-enable'], force: values.force, warn: (l) => console.error(l) });
  } catch (err) {
    console.error(`build-plugin: ${(err as Error).message}`);
    return 1;
  }
  process.stdout.write(`${values.name}${values['no-enable'] ? ' (created, not enabled)' : ' enabled'}\n`);
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) main().then((code) => process.exit(code));
