import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRAEFIK_NETWORK_MODE } from '../infra/components/traefik-names.js';
import { docker, ensureBusyboxImage, TEST_IMAGE } from './helpers/docker.js';
import { noDockerReason } from './helpers/env.js';
import { step } from './helpers/step.js';

/**
 * What IMDS hop limit 1 does for the Traefik container, on this machine's real kernel and
 * dockerd. The instance metadata service answers with IP TTL = the hop limit (EC2 User Guide,
 * "Configure the instance metadata options"); here a stand-in sits outside the host, as IMDS does,
 * in a network namespace behind a veth, and answers the IMDSv2 token PUT with TTL 1 (a second
 * port answers with TTL 64 to show the path itself works). A container in the Traefik task's
 * network mode must get no token; a host-network container (the old task definition) gets one.
 * A test-net address, not 169.254.169.254: the host's own metadata route stays untouched.
 */
const python = ['/usr/bin/python3', '/bin/python3'].find((p) => existsSync(p));
const haveIp = (() => {
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skipReason = noDockerReason ?? (process.getuid?.() !== 0 ? 'needs root (network namespaces)' : !haveIp ? 'needs iproute2' : !python ? 'needs python3' : undefined);

const STUB = `
import http.server, socket, sys
ttl, port = int(sys.argv[1]), int(sys.argv[2])
class Server(http.server.HTTPServer):
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)  # accepted sockets inherit it
        super().server_bind()
class Imds(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        body = b'TOKEN-for-the-instance-role' if self.path == '/latest/api/token' else b''
        self.send_response(200 if body else 404)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = Server(('0.0.0.0', port), Imds)
print('ready', flush=True)
server.serve_forever()
`;

describe.skipIf(skipReason)(`IMDS hop limit 1 and the Traefik container's network mode${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const id = randomBytes(3).toString('hex');
  const ns = `berth-imds-${id}`;
  const hostIf = `bimds${id}`; // at most 15 characters
  // A /30 of 198.18.0.0/15 (benchmarking, RFC 2544): on no interface of this machine.
  const hostAddr = '198.19.254.1';
  const imdsAddr = '198.19.254.2';
  const stubs: ChildProcess[] = [];
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });

  beforeAll(async () => {
    await ensureBusyboxImage();
    await step('a namespace outside the host, reached through a veth', () => {
      if (ip('-4', 'addr').toString().includes('198.19.254.')) throw new Error('198.19.254.0/30 is already in use on this machine');
      ip('netns', 'add', ns);
      ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'imds0', 'netns', ns);
      ip('addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
      ip('link', 'set', hostIf, 'up');
      ip('-n', ns, 'addr', 'add', `${imdsAddr}/30`, 'dev', 'imds0');
      ip('-n', ns, 'link', 'set', 'imds0', 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    });
    await step('IMDS stand-ins: TTL 1 on port 80, TTL 64 on port 8080', () => Promise.all([['1', '80'], ['64', '8080']].map(([ttl, port]) => new Promise<void>((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', ns, python!, '-c', STUB, ttl!, port!], { stdio: ['ignore', 'pipe', 'pipe'] });
      stubs.push(p);
      let err = '';
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      p.stdout!.once('data', () => resolve());
      p.once('exit', (code) => reject(new Error(`IMDS stand-in exited with ${code}: ${err}`)));
    }))), 15_000);
  }, 120_000);

  afterAll(() => {
    for (const p of stubs) p.kill('SIGKILL');
    try {
      ip('link', 'del', hostIf);
    } catch {
      // gone with the namespace already
    }
    try {
      ip('netns', 'del', ns);
    } catch {
      // never made
    }
  });

  /** The IMDSv2 token PUT from a container in `network` mode: the answer's body, or '' when none came within 3 s. */
  const tokenFrom = (network: string, port: number) => step(`token PUT from a ${network}-network container to port ${port}`, async () => {
    const request = `PUT /latest/api/token HTTP/1.0\\r\\nX-aws-ec2-metadata-token-ttl-seconds: 60\\r\\nContent-Length: 0\\r\\n\\r\\n`;
    const out = await docker(['run', '--rm', '--network', network, TEST_IMAGE, 'sh', '-c', `busybox printf '${request}' | nc -w 3 ${imdsAddr} ${port} || true`], { timeoutMs: 30_000 });
    return out;
  });

  it('a host-network container gets an IMDSv2 token despite hop limit 1: it is the host', async () => {
    expect(await tokenFrom('host', 80)).toContain('TOKEN-for-the-instance-role');
  });

  it(`a container in the Traefik task's network mode (${TRAEFIK_NETWORK_MODE}) gets none: the reply dies at the host's forwarding hop`, async () => {
    expect(TRAEFIK_NETWORK_MODE).toBe('bridge');
    // The path works: the same container reaches the stand-in when it answers with TTL 64.
    expect(await tokenFrom(TRAEFIK_NETWORK_MODE, 8080)).toContain('TOKEN-for-the-instance-role');
    expect(await tokenFrom(TRAEFIK_NETWORK_MODE, 80)).not.toContain('TOKEN');
  });
});
