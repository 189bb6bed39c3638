import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import { BerthError } from '../lib/errors.js';
import type { VolumeDriver } from './protocol.js';
import { listenPlugin, type PluginServer } from './server.js';

/** A driver that knows no volume: enough to see how the server answers what reaches it. */
const nothing = async (): Promise<never> => {
  throw new BerthError('NOT_FOUND', 'no such volume');
};
const driver: VolumeDriver = {
  create: nothing,
  remove: nothing,
  mount: nothing,
  unmount: nothing,
  path: nothing,
  get: nothing,
  list: async () => [],
  capabilities: () => ({ Scope: 'local' }),
};

/** Sends raw bytes and returns everything the server wrote before it closed. */
export function rawExchange(socketPath: string, bytes: string | Buffer, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 200))}`));
    }, timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    sock.write(bytes);
  });
}

/** The status and JSON body of a raw HTTP answer (throws when the body is not JSON). */
export function parseRawAnswer(raw: string): { status: number; body: unknown } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1]);
  const sep = raw.indexOf('\r\n\r\n');
  if (!status || sep < 0) throw new Error(`not an HTTP answer: ${JSON.stringify(raw.slice(0, 200))}`);
  return { status, body: JSON.parse(raw.slice(sep + 4)) as unknown };
}

describe('malformed HTTP on the plugin socket', () => {
  let server: PluginServer;
  let dir: string;
  let sock: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-srv-bad-'));
    sock = join(dir, 'plugins', 'bad.sock');
    server = await listenPlugin(sock, { driver, logger: silentLogger });
  });
  afterAll(async () => {
    await server.close(1000);
    rmSync(dir, { recursive: true, force: true });
  });

  const body = '{"Name":"v"}';
  it.each([
    ['a header value with a control byte', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 400],
    ['a header name with a space', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n`, 400],
    ['bad chunking', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`, 400],
    ['headers over 16 KiB', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`, 431],
    ['a garbage request line', `\x00\x01\x02 nonsense\r\n\r\n`, 400],
    ['both Content-Length and chunked', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ])('answers %s with {"Err"} JSON, naming the problem without echoing it', async (_what, bytes, status) => {
    const raw = await rawExchange(sock, bytes);
    const answer = parseRawAnswer(raw);
    expect(answer.status).toBe(status);
    expect(answer.body).toEqual({ Err: expect.stringMatching(/^malformed plugin request: .+ \(HPE_[A-Z_]+\)$/) });
    expect(raw).not.toContain('aaaaaaaa');
  });

  it('still answers well-formed requests afterwards', async () => {
    const raw = await rawExchange(sock, `POST /VolumeDriver.List HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}`);
    expect(parseRawAnswer(raw)).toEqual({ status: 200, body: { Volumes: [], Err: '' } });
  });
  it('answers a client that dribbles its request (slowloris) with 408 {"Err"} once its time is up', async () => {
    const slow = await listenPlugin(join(dir, 'plugins', 'slow.sock'), { driver, logger: silentLogger, requestArrivalMs: 500 });
    try {
      const started = Date.now();
      // Headers and 2 of the 12 body bytes the request announces; the rest never comes.
      const raw = await rawExchange(join(dir, 'plugins', 'slow.sock'), `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{"`, 5_000);
      expect(parseRawAnswer(raw)).toEqual({ status: 408, body: { Err: 'malformed plugin request: the request did not arrive in time (ERR_HTTP_REQUEST_TIMEOUT)' } });
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await slow.close(1000);
    }
  });
});
