import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { step } from './step.js';
import { hostHasSysResource } from '../../scripts/build-plugin.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** The agent image as built here: Dockerfile.agent on the bases scripts/local-base-image.sh assembles. */
export const AGENT_IMAGE = 'berth-agent:local';

const nodeMajor = process.versions.node.split('.')[0]!;
const version = (JSON.parse(readFileSync(`${repoRoot}/package.json`, 'utf8')) as { version: string }).version;
function revision(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/**
 * Builds the local base images and the agent image on the shared dockerd
 * (layers are cached: a rebuild with unchanged sources takes seconds).
 */
export async function buildAgentImage(tag = AGENT_IMAGE): Promise<{ tag: string; buildMs: number }> {
  return step(`build the agent image ${tag}`, () => build(tag));
}

async function build(tag: string): Promise<{ tag: string; buildMs: number }> {
  const t0 = performance.now();
  await execa(`${repoRoot}/scripts/local-base-image.sh`, [], { cwd: repoRoot, timeout: 300_000 });
  const dockerBuild = (args: string[]) =>
    execa(
      'docker',
      [
        'build', '-f', 'Dockerfile.agent', '--network', 'host',
        '--build-arg', 'BUILD_IMAGE=berth-build:local', '--build-arg', 'BASE_IMAGE=berth-base:local',
        '--build-arg', `NODE_VERSION=${nodeMajor}`, '--build-arg', `VERSION=${version}`, '--build-arg', `REVISION=${revision()}`,
        ...args, '.',
      ],
      { cwd: repoRoot, timeout: 900_000, stdin: 'ignore' },
    );
  // The build stages get names too, so that clearing untagged leftovers of
  // earlier builds (below) keeps their layers as the cache of the next build.
  await dockerBuild(['--target', 'build', '-t', 'berth-agent-stage-build:local']);
  await dockerBuild(['-t', tag]);
  await execa('docker', ['image', 'prune', '--force', '--filter', 'label=berth.rootfs.sha256'], { stdin: 'ignore' });
  return { tag, buildMs: performance.now() - t0 };
}

/** Bytes of an image as `docker images` counts them (all layers, uncompressed). */
export async function imageSizeBytes(tag = AGENT_IMAGE, host?: string): Promise<number> {
  const { stdout } = await execa('docker', [...(host ? ['-H', host] : []), 'image', 'inspect', '--format', '{{.Size}}', tag]);
  return Number(stdout.trim());
}

/**
 * `docker run` flags the agent container needs, least privilege rather than
 * --privileged: mount and loop ioctls (SYS_ADMIN), chattr +i (LINUX_IMMUTABLE),
 * online ext4 growth (SYS_RESOURCE, where the host has it), loop devices in
 * the device cgroup, the host's /dev, the plugin socket directory, and the
 * state directory with rshared propagation at the same path as on the host.
 */
export function agentRunArgs(opts: { pluginDir: string; stateDir: string; healthAddr: string; env?: Record<string, string> }): string[] {
  return [
    '--network', 'host',
    '--cap-add', 'SYS_ADMIN', '--cap-add', 'LINUX_IMMUTABLE', ...(hostHasSysResource() ? ['--cap-add', 'SYS_RESOURCE'] : []),
    '--device-cgroup-rule', 'b 7:* rwm', '--device-cgroup-rule', 'c 10:237 rwm',
    '-v', '/dev:/dev',
    '-v', `${opts.pluginDir}:/run/docker/plugins`,
    '-v', `${opts.stateDir}:${opts.stateDir}:rshared`,
    '-e', `BERTH_STATE_DIR=${opts.stateDir}`,
    '-e', 'BERTH_BACKEND=loop',
    '-e', `BERTH_HEALTH_ADDR=${opts.healthAddr}`,
    ...Object.entries(opts.env ?? {}).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
  ];
}

/** Makes dir a shared mount of its own (a bind onto itself), so an rshared bind of it is allowed and mounts propagate back. */
export function makeSharedMount(dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['--bind', dir, dir]);
  execFileSync('mount', ['--make-rshared', dir]);
}

/** One plugin-protocol call over a unix socket, as dockerd makes it. */
export function pluginPost(socketPath: string, path: string, body: unknown = {}): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request({ socketPath, path, method: 'POST', timeout: 30_000, headers: { 'Content-Length': Buffer.byteLength(payload) } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (data += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(data) as Record<string, unknown>);
        } catch {
          reject(new Error(`${path}: not JSON (${res.statusCode}): ${data}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${path}: no answer within 30 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}
