import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { S3RVER_CREDENTIALS, startS3rver } from './s3server.js';

export { S3RVER_CREDENTIALS };

/**
 * A release tarball as scripts/release.mjs lays it out, small: bin/node (says it is the
 * release's node), userdata/berth.service, SHA256SUMS. `damage` changes a file after the
 * sums are taken (a tarball that does not match its own list).
 */
export function fakeRelease(dir: string, opts: { damage?: boolean } = {}): string {
  const tree = join(dir, `release-${opts.damage ? 'damaged' : 'good'}`);
  mkdirSync(join(tree, 'bin'), { recursive: true });
  mkdirSync(join(tree, 'userdata'), { recursive: true });
  writeFileSync(join(tree, 'bin/node'), '#!/bin/sh\necho v24.22.3\n');
  chmodSync(join(tree, 'bin/node'), 0o755);
  writeFileSync(join(tree, 'userdata/berth.service'), '[Service]\nExecStart=/opt/berth/bin/node /opt/berth/dist/agent/main.js\n');
  execFileSync('sh', ['-c', 'sha256sum bin/node userdata/berth.service > SHA256SUMS'], { cwd: tree });
  if (opts.damage) writeFileSync(join(tree, 'userdata/berth.service'), '[Service]\nExecStart=/bin/false\n');
  const tarball = `${tree}.tar.gz`;
  execFileSync('tar', ['-czf', tarball, '-C', tree, '.']);
  return tarball;
}

/** s3rver (test/helpers/s3server.ts) on `address`, holding `objects` (key → file) in bucket `bucket`. */
export async function startS3(dir: string, address: string, bucket: string, objects: Record<string, string>): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const server = await startS3rver(dir, [bucket], { address, region: 'eu-west-1' });
  for (const [key, file] of Object.entries(objects)) await server.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: readFileSync(file) }));
  return { endpoint: server.endpoint, close: () => server.close() };
}

/**
 * Stand-ins for what only a host has, recording each call in `calls`: systemctl (starting
 * berth.service binds the plugin socket under `root`, as the agent would) and shutdown.
 */
export function hostStubs(bin: string, calls: string, root: string): void {
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'systemctl'), `#!/bin/bash\necho "systemctl $*" >>${calls}\nif [[ "$*" == *"--now berth.service"* ]]; then python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' ${root}/run/docker/plugins/berth.sock 2>/dev/null || true; fi\n`);
  writeFileSync(join(bin, 'shutdown'), `#!/bin/bash\necho "shutdown $*" >>${calls}\n`);
  chmodSync(join(bin, 'systemctl'), 0o755);
  chmodSync(join(bin, 'shutdown'), 0o755);
}
