import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { listenPlugin, type PluginServer } from '../../volume-plugin/server.js';
import { gate } from '../fakes/faults.js';
import { fakeWorld, type FakeWorld } from '../fakes/world.js';

/**
 * dockerd gives up on a plugin call by closing its connection (its client
 * timeout, docs/design.md §3): a Mount still running then must count no
 * reference, since no Unmount will ever come for it. A real client on the real
 * socket hangs up while the Mount is held inside the backend's attach.
 */
const ID = 'd'.repeat(64);

let world: FakeWorld;
let server: PluginServer | undefined;
afterEach(async () => {
  await server?.close(0);
  server = undefined;
  world?.cleanup();
});

/** Sends one request and hangs up as soon as `hangUp` resolves, before any answer. */
function requestThenHangUp(socketPath: string, path: string, body: unknown, hangUp: Promise<void>): Promise<string> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const conn = connect(socketPath, () => {
      conn.write(`POST ${path} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`);
    });
    let received = '';
    conn.on('data', (d) => (received += d.toString()));
    conn.on('error', reject);
    conn.on('close', () => resolve(received));
    void hangUp.then(() => conn.destroy());
  });
}

describe('client disconnect is a deadline', () => {
  it('a Mount whose client hangs up before the answer is undone: no reference, nothing mounted, the device detached', async () => {
    world = await fakeWorld().start();
    server = await listenPlugin(join(world.stateDir, 'plugin.sock'), { driver: world.docker, answers: world.docker.answers, logger: silentLogger });
    await world.docker.create('v', {});
    const held = gate();
    world.backend.faults.before('attach', held.hook);

    const answer = await requestThenHangUp(server.socketPath, '/VolumeDriver.Mount', { Name: 'v', ID }, held.entered);
    expect(answer).toBe('');
    held.open();
    // Work on a name runs in order: an Unmount of another ID returns once the Mount has finished.
    await world.docker.unmount('v', 'e'.repeat(64));

    expect(world.service.describe('v')).toMatchObject({ mounted: false, consumers: 0 });
    expect(world.savedMounts('v')).toEqual({});
    expect(world.host.mounts.size).toBe(0);
    expect(world.backend.isAttached('v')).toBe(false);
    expect(world.service.describe('v')?.lastError).toMatch(/closed the connection before the answer/);
  });

  it('a client that waits for its answer gets the mountpoint, and the reference is counted', async () => {
    world = await fakeWorld().start();
    server = await listenPlugin(join(world.stateDir, 'plugin.sock'), { driver: world.docker, answers: world.docker.answers, logger: silentLogger });
    await world.docker.create('v', {});
    const answer = await post(server.socketPath, '/VolumeDriver.Mount', { Name: 'v', ID });
    expect(answer).toEqual({ Mountpoint: world.service.mountpointOf('v'), Err: '' });
    expect(world.service.describe('v')).toMatchObject({ mounted: true, consumers: 1 });
    expect(world.savedMounts('v')).toEqual({ [ID]: 1 });
  });
});

function post(socketPath: string, path: string, body: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'POST', agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve(JSON.parse(text)));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
