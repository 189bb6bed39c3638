import { statSync } from 'node:fs';
import { request } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { silentLogger } from '../lib/logger.js';
import { BerthError } from '../lib/errors.js';
import type { VolumeDriver, VolumeInfo } from './protocol.js';
import { listenPlugin, type PluginServer } from './server.js';

/** Records calls per method; fails on the volume named "boom". */
class RecordingDriver implements VolumeDriver {
  calls: Array<[string, ...unknown[]]> = [];
  private rec(method: string, ...args: unknown[]) {
    this.calls.push([method, ...args]);
    if (args[0] === 'boom') throw new BerthError('CONFLICT', 'volume boom is in use by 1 container mount(s); stop them first');
  }
  async create(name: string, opts: Record<string, string>) {
    this.rec('create', name, opts);
  }
  async remove(name: string) {
    this.rec('remove', name);
  }
  async mount(name: string, id: string) {
    this.rec('mount', name, id);
    return `/mnt/${name}`;
  }
  async unmount(name: string, id: string) {
    this.rec('unmount', name, id);
  }
  async path(name: string) {
    this.rec('path', name);
    return '';
  }
  async get(name: string): Promise<VolumeInfo> {
    this.rec('get', name);
    return { Name: name, Mountpoint: '', CreatedAt: '2026-01-01T00:00:00Z', Status: { size: '1GiB' } };
  }
  async list() {
    this.rec('list');
    return [{ Name: 'a', Mountpoint: '' }];
  }
  capabilities() {
    return { Scope: 'local' as const };
  }
}

function post(socketPath: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'POST', headers: { Accept: 'application/vnd.docker.plugins.v1.2+json', ...headers } }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(data) as Record<string, unknown> }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

describe('plugin protocol server over a unix socket', () => {
  const driver = new RecordingDriver();
  const registry = new Registry();
  let server: PluginServer;
  let sock: string;

  beforeAll(async () => {
    sock = join(mkdtempSync(join(tmpdir(), 'berth-srv-')), 'plugins', 'test.sock');
    server = await listenPlugin(sock, { driver, logger: silentLogger, registry });
  });
  afterAll(() => server.close(1000));

  it('creates the socket readable and writable by its owner only', () => {
    expect(statSync(sock).mode & 0o777).toBe(0o600);
  });

  it('answers Activate with an empty body', async () => {
    expect(await post(sock, '/Plugin.Activate')).toEqual({ status: 200, json: { Implements: ['VolumeDriver'] } });
  });

  it('decodes each endpoint, calls the driver and answers with Docker\'s field names', async () => {
    driver.calls = [];
    // dockerd may send no Content-Type at all; the body is JSON regardless.
    expect((await post(sock, '/VolumeDriver.Create', '{"Name":"v","Opts":{"size":"1GiB"}}')).json).toEqual({ Err: '' });
    expect((await post(sock, '/VolumeDriver.Create', '{"Name":"w","Opts":null}', { 'Content-Type': 'text/plain' })).json).toEqual({ Err: '' });
    expect((await post(sock, '/VolumeDriver.Mount', '{"Name":"v","ID":"abc"}')).json).toEqual({ Mountpoint: '/mnt/v', Err: '' });
    expect((await post(sock, '/VolumeDriver.Unmount', '{"Name":"v","ID":"abc"}')).json).toEqual({ Err: '' });
    expect((await post(sock, '/VolumeDriver.Path', '{"Name":"v"}')).json).toEqual({ Mountpoint: '', Err: '' });
    expect((await post(sock, '/VolumeDriver.Get', '{"Name":"v"}')).json).toMatchObject({ Volume: { Name: 'v', CreatedAt: '2026-01-01T00:00:00Z' }, Err: '' });
    expect((await post(sock, '/VolumeDriver.List', '{}')).json).toEqual({ Volumes: [{ Name: 'a', Mountpoint: '' }], Err: '' });
    expect((await post(sock, '/VolumeDriver.Remove', '{"Name":"v"}')).json).toEqual({ Err: '' });
    expect((await post(sock, '/VolumeDriver.Capabilities')).json).toEqual({ Capabilities: { Scope: 'local' } });
    expect(driver.calls.map((c) => c[0])).toEqual(['create', 'create', 'mount', 'unmount', 'path', 'get', 'list', 'remove']);
    expect(driver.calls[1]).toEqual(['create', 'w', {}]);
  });

  it.each([
    ['malformed JSON', '/VolumeDriver.Create', '{"Name":', /request body is not valid JSON/],
    ['missing Name', '/VolumeDriver.Mount', '{"ID":"x"}', /invalid VolumeDriver.Mount request: Name: Name is required/],
    ['non-string option', '/VolumeDriver.Create', '{"Name":"v","Opts":{"size":1}}', /Opts.size/],
    ['oversized body', '/VolumeDriver.Create', JSON.stringify({ Name: 'v', Opts: { x: 'y'.repeat(2 * 2 ** 20) } }), /larger than the 1 MiB limit/],
    ['driver error', '/VolumeDriver.Remove', '{"Name":"boom"}', /^volume boom is in use by 1 container mount/],
  ])('answers %s with {"Err"} and a sentence', async (_what, path, body, message) => {
    const before = driver.calls.length;
    const res = await post(sock, path, body);
    expect(res.status).toBe(500);
    expect(res.json.Err).toMatch(message);
    if (_what !== 'driver error') expect(driver.calls.length).toBe(before);
  });

  it('answers an unknown endpoint with {"Err"}', async () => {
    const res = await post(sock, '/VolumeDriver.Snapshot', '{}');
    expect(res.status).toBe(404);
    expect(res.json.Err).toMatch(/unknown plugin endpoint POST \/VolumeDriver.Snapshot/);
  });

  it('answers an unknown endpoint of 10 000 characters with the path cut short', async () => {
    const res = await post(sock, `/${'x'.repeat(10_000)}`, '{}');
    expect(res.status).toBe(404);
    expect(String(res.json.Err)).toMatch(/^unknown plugin endpoint POST "\/x+"… \(10001 characters\)$/);
    expect(String(res.json.Err).length).toBeLessThan(200);
  });

  it('counts requests and latency per endpoint', async () => {
    const text = await registry.metrics();
    expect(text).toMatch(/berth_plugin_requests_total\{endpoint="VolumeDriver.Create",outcome="ok"\} 2/);
    expect(text).toMatch(/berth_plugin_request_seconds_count\{endpoint="VolumeDriver.Mount"\} 2/);
    expect(text).toMatch(/berth_errors_total\{code="CONFLICT"\} 1/);
  });
});

describe('stopping the plugin server', () => {
  it('finishes a call in flight, then refuses new connections and removes the socket', async () => {
    let release!: () => void;
    const slow = new RecordingDriver();
    slow.mount = async (name: string) => {
      await new Promise<void>((r) => (release = r));
      return `/mnt/${name}`;
    };
    const sock = join(mkdtempSync(join(tmpdir(), 'berth-srv-')), 'slow.sock');
    const server = await listenPlugin(sock, { driver: slow, logger: silentLogger });
    const inFlight = post(sock, '/VolumeDriver.Mount', '{"Name":"v","ID":"i"}');
    await new Promise((r) => setTimeout(r, 50));
    expect(server.inFlight()).toBe(1);
    const closing = server.close(5_000);
    setTimeout(() => release(), 200);
    expect(await inFlight).toEqual({ status: 200, json: { Mountpoint: '/mnt/v', Err: '' } });
    await closing;
    expect(() => statSync(sock)).toThrow(/ENOENT/);
  });
});

describe('read endpoints with prepared answers', () => {
  it('writes the prepared body for names in the view, asks the driver for the rest, and keeps the strict errors', async () => {
    const driver = new RecordingDriver();
    const prepared = Buffer.from('{"Volume":{"Name":"ready","Mountpoint":"/m/ready"},"Err":""}');
    const answers = {
      get: (n: string) => (n === 'ready' ? prepared : undefined),
      path: (n: string) => (n === 'ready' ? Buffer.from('{"Mountpoint":"/m/ready","Err":""}') : undefined),
      list: () => Buffer.from('{"Volumes":[{"Name":"ready"}],"Err":""}'),
    };
    const sock = join(mkdtempSync(join(tmpdir(), 'berth-srv-')), 'answers.sock');
    const server = await listenPlugin(sock, { driver, logger: silentLogger, answers });
    try {
      expect(await post(sock, '/VolumeDriver.Get', '{"Name":"ready","extra":1}')).toEqual({ status: 200, json: { Volume: { Name: 'ready', Mountpoint: '/m/ready' }, Err: '' } });
      expect((await post(sock, '/VolumeDriver.Path', '{"Name":"ready"}')).json).toEqual({ Mountpoint: '/m/ready', Err: '' });
      expect((await post(sock, '/VolumeDriver.List')).json).toEqual({ Volumes: [{ Name: 'ready' }], Err: '' });
      expect(driver.calls).toEqual([]);
      expect((await post(sock, '/VolumeDriver.Get', '{"Name":"other"}')).json).toMatchObject({ Volume: { Name: 'other' }, Err: '' });
      expect(driver.calls).toEqual([['get', 'other']]);
      for (const body of ['{"Name":5}', '[]', 'null', '"ready"']) {
        const res = await post(sock, '/VolumeDriver.Get', body);
        expect(res.status).toBe(500);
        expect(res.json.Err).toMatch(/^invalid VolumeDriver.Get request: /);
      }
      expect(driver.calls).toHaveLength(1);
    } finally {
      await server.close(1000);
    }
  });
});
