import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import type { VolumeDriver, VolumeInfo } from './protocol.js';
import { listenPlugin, probeSocket, type PluginServer } from './server.js';

/** A driver whose Get waits until released (a call in flight while the agent stops). */
function driver(tag: string, hold?: Promise<void>): VolumeDriver {
  const none = async () => undefined;
  return {
    create: none,
    remove: none,
    mount: async () => '',
    unmount: none,
    path: async () => '',
    get: async (name): Promise<VolumeInfo> => {
      await hold;
      return { Name: name, Mountpoint: '', Status: { agent: tag } };
    },
    list: async () => [],
    capabilities: () => ({ Scope: 'local' }),
  };
}

function whoAnswers(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/VolumeDriver.Get', method: 'POST' }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve((JSON.parse(data) as { Volume: { Status: { agent: string } } }).Volume.Status.agent));
    });
    req.on('error', reject);
    req.end('{"Name":"v"}');
  });
}

/** A socket file whose server was SIGKILLed: the file stays, nothing answers. */
function staleSocket(path: string): void {
  const res = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  expect(res.signal).toBe('SIGKILL');
  expect(statSync(path).isSocket()).toBe(true);
}

describe('the plugin socket across agent restarts', () => {
  const servers: PluginServer[] = [];
  const dir = () => mkdtempSync(join(tmpdir(), 'berth-sock-'));
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close(100)));
  });

  it('replaces a stale socket left by a SIGKILL, and probes it as stale', async () => {
    const sock = join(dir(), 'p.sock');
    staleSocket(sock);
    expect(await probeSocket(sock)).toBe('stale');
    servers.push(await listenPlugin(sock, { driver: driver('new'), logger: silentLogger }));
    expect(await probeSocket(sock)).toBe('answers');
    expect(await whoAnswers(sock)).toBe('new');
    expect(statSync(sock).mode & 0o777).toBe(0o600);
  });

  it('refuses a socket path another server answers on, and leaves that server serving', async () => {
    const sock = join(dir(), 'p.sock');
    servers.push(await listenPlugin(sock, { driver: driver('first'), logger: silentLogger }));
    await expect(listenPlugin(sock, { driver: driver('second'), logger: silentLogger })).rejects.toThrow(/another server is listening on .*p\.sock/);
    expect(await whoAnswers(sock)).toBe('first');
  });

  it('refuses a path that is not a socket and leaves the file alone', async () => {
    const sock = join(dir(), 'p.sock');
    writeFileSync(sock, 'precious');
    await expect(listenPlugin(sock, { driver: driver('x'), logger: silentLogger })).rejects.toThrow(/is not a socket; berth does not remove it/);
    expect(readFileSync(sock, 'utf8')).toBe('precious');
  });

  it("an old agent that finishes draining after a newer one started does not delete the newer one's socket", async () => {
    const sock = join(dir(), 'p.sock');
    let release!: () => void;
    const old = await listenPlugin(sock, { driver: driver('old', new Promise<void>((r) => (release = r))), logger: silentLogger });
    const inFlight = whoAnswers(sock);
    await new Promise((r) => setTimeout(r, 50));
    const closing = old.close(5_000); // stops accepting, drains the Get
    expect(await probeSocket(sock)).toBe('stale');
    servers.push(await listenPlugin(sock, { driver: driver('new'), logger: silentLogger }));
    release();
    expect(await inFlight).toBe('old');
    await closing;
    expect(existsSync(sock)).toBe(true);
    expect(await whoAnswers(sock)).toBe('new');
  });

  it('a server removes its own socket when it stops', async () => {
    const sock = join(dir(), 'p.sock');
    const s = await listenPlugin(sock, { driver: driver('x'), logger: silentLogger });
    await s.close(100);
    expect(existsSync(sock)).toBe(false);
  });

  it('probes a missing path as missing and a plain net server as answering', async () => {
    const d = dir();
    expect(await probeSocket(join(d, 'none.sock'))).toBe('missing');
    const other = createServer();
    await new Promise<void>((r) => other.listen(join(d, 'o.sock'), r));
    expect(await probeSocket(join(d, 'o.sock'))).toBe('answers');
    other.close();
  });
});
