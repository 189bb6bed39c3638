import { connect } from 'node:net';
import { sleep } from '../../lib/sleep.js';
import { VOLUME_NAME } from '../../volume-plugin/options.js';
import type { Rng } from './rng.js';

export { rng, type Rng } from './rng.js';

/**
 * Generated hostile requests for the plugin socket (test/fuzz-plugin.test.ts
 * sends them to an in-process agent, bench/fuzz-memory.ts to the built agent
 * as a process): every one invalid or harmless by construction, with the
 * answer it must get. The same seed gives the same requests everywhere.
 */

/** Requests in flight at once, each on its own connection. */
export const FUZZ_IN_FLIGHT = 32;

/** The longest refusal sentence an answer may carry. */
export const ERR_MAX = 2048;

export type Expect = 'err' | 'ok';
export interface Case {
  what: string;
  bytes: Buffer;
  expect: Expect;
  slow: boolean;
}

const PROTO_KEYS = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString', '__defineGetter__', 'prototype'];
const UNICODE = ['vølume', '💾disk', 'имя', 'שם', 'a\u0000b', 'a\nb', 'a\u202eb', '\ud800', 'e\u0301', 'ｆｕｌｌ'];
/** The one volume the fuzzed agent holds (mounted by HOLDER): requests may name it but never change it. */
export const KEEP = 'keep';
export const HOLDER = 'holder';

function longString(r: Rng): string {
  const n = r.chance(0.01) ? r.int(100_000, 250_000) : r.int(256, 5_000);
  return r.pick(['xxxx', 'éé', '💾', '%%%%', '\\\\']).repeat(n);
}

/** Something that is not a string, or a string Docker could never send as a name or ID. */
function junkValue(r: Rng): unknown {
  switch (r.int(0, 9)) {
    case 0: return r.int(-1e9, 1e9);
    case 1: return null;
    case 2: return r.chance(0.5);
    case 3: return [r.alnum(3), 1];
    case 4: return JSON.parse(`{"${r.pick(PROTO_KEYS)}":{"Name":"x"}}`) as unknown;
    case 5: return longString(r);
    case 6: return r.pick(UNICODE);
    case 7: return '';
    case 8: return 1.5e308;
    default: return { length: 3 };
  }
}

/** A Docker-valid name no volume has: prototype keys and random ones. */
function missingName(r: Rng): string {
  return r.chance(0.4) ? r.pick(PROTO_KEYS.filter((k) => /^[a-zA-Z0-9]/.test(k))) : `fz${r.alnum(r.int(1, 40))}`;
}

function invalidName(r: Rng): unknown {
  return r.pick<() => unknown>([
    () => '__proto__',
    () => '',
    () => `-${r.alnum(5)}`,
    () => `.${r.alnum(5)}`,
    () => '../etc',
    () => 'a/b',
    () => 'a b',
    () => 'x'.repeat(256),
    () => longString(r),
    () => r.pick(UNICODE),
    () => junkValue(r),
  ])();
}

/** Options that are refused whatever the name, each by construction. */
function invalidOpts(r: Rng): unknown {
  const valid: Record<string, string> = r.chance(0.5) ? { size: '16MiB' } : {};
  const bad = r.pick<() => Record<string, unknown> | unknown>([
    () => ({ [r.pick(PROTO_KEYS)]: r.pick(['1GiB', '16MiB', 'x']) }),
    () => ({ [longString(r)]: 'v' }),
    () => ({ [r.pick(UNICODE)]: 'v' }),
    () => ({ size: junkValue(r) }),
    () => ({ size: r.pick(['abc', '0', '-1', '1e9', '1constructor', '17parsecs', '9'.repeat(400), '1MiB', '8MiB', longString(r)]) }),
    () => ({ fs: r.pick(['ntfs', 'EXT4', '', 'constructor', longString(r)]) }),
    () => ({ [r.pick(['type', 'iops', 'throughput', 'encrypted', 'kmsKeyId', 'snapshotId'])]: r.pick(['gp3', '3000', 'true', 'snap-0123456789abcdef0', 'alias/x']) }),
    () => ({ mountOptions: r.pick(['bind', 'remount', 'suid,dev,exec', 'errors=panic', 'noatime --bind /', 'ro', 'nobarrier', 'x-'.repeat(200), 'noatime,,discard', 'logbufs=8']) }),
    () => ({ onRemove: r.pick(['keep', 'DELETE', '', 'constructor']) }),
    () => r.pick(['a string', 7, [['size', '1GiB']], true]),
  ])();
  if (bad === null || typeof bad !== 'object' || Array.isArray(bad)) return bad;
  // JSON.parse keeps __proto__ as an own key, as dockerd's JSON would.
  return JSON.parse(JSON.stringify({ ...valid }).slice(0, -1) + (Object.keys(valid).length ? ',' : '') + JSON.stringify(bad).slice(1)) as unknown;
}

function jsonWithProtoKey(body: Record<string, unknown>, key: string, value: unknown): string {
  const text = JSON.stringify(body);
  return `{${JSON.stringify(key)}:${JSON.stringify(value)}${text === '{}' ? '' : ','}${text.slice(1)}`;
}

export function http(path: string, body: string | Buffer, extra = '', method = 'POST'): Buffer {
  const payload = typeof body === 'string' ? Buffer.from(body) : body;
  return Buffer.concat([
    Buffer.from(`${method} ${path} HTTP/1.1\r\nHost: plugin\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n${extra}Content-Length: ${payload.length}\r\nConnection: close\r\n\r\n`),
    payload,
  ]);
}

const describeBody = (body: unknown) => {
  const text = JSON.stringify(body) ?? String(body);
  return text.length > 120 ? `${text.slice(0, 120)}… (${text.length})` : text;
};

export function generate(r: Rng, i: number): Case {
  const slow = r.chance(0.003);
  const json = (endpoint: string, body: unknown, expect: Expect, raw?: string): Case => ({
    what: `#${i} POST /VolumeDriver.${endpoint} ${raw ?? describeBody(body)}`,
    bytes: http(`/VolumeDriver.${endpoint}`, raw ?? JSON.stringify(body)),
    expect,
    slow,
  });
  const roll = r.next();
  if (roll < 0.28) {
    // Create: a valid name only ever with refused options.
    const name = r.chance(0.6) ? r.pick([missingName(r), KEEP]) : invalidName(r);
    const opts = typeof name === 'string' && /^[a-zA-Z0-9]/.test(name) && name.length < 256 && !/[^\w.-]/.test(name) ? invalidOpts(r) : r.chance(0.5) ? { size: '16MiB' } : invalidOpts(r);
    if (r.chance(0.1)) return json('Create', undefined, 'err', jsonWithProtoKey({ Name: name, Opts: opts }, r.pick(PROTO_KEYS), { Name: 'fzproto', Opts: {} }));
    return json('Create', { Name: name, Opts: opts }, 'err');
  }
  if (roll < 0.46) {
    const endpoint = r.pick(['Get', 'Path', 'Remove']);
    if (r.chance(0.1)) return json(endpoint, { Name: KEEP }, endpoint === 'Remove' ? 'err' : 'ok');
    return json(endpoint, { Name: r.chance(0.5) ? missingName(r) : invalidName(r) }, 'err');
  }
  if (roll < 0.56) {
    // Mount: never a valid ID for an existing volume.
    if (r.chance(0.5)) return json('Mount', { Name: KEEP, ID: r.pick([junkValue(r), longString(r), '', 'a b', '../x', r.pick(UNICODE)]) }, 'err');
    return json('Mount', { Name: r.chance(0.5) ? missingName(r) : invalidName(r), ID: r.pick([r.alnum(64), '__proto__', junkValue(r)]) }, 'err');
  }
  if (roll < 0.66) {
    // Unmount: unknown IDs are success and must change nothing; the holder's ID is never sent.
    const name = r.pick<() => unknown>([() => KEEP, () => missingName(r), () => invalidName(r)])();
    const id = r.chance(0.3) ? junkValue(r) : r.pick([r.alnum(64), ...PROTO_KEYS, 'holde', 'holder2', 'HOLDER']);
    return json('Unmount', { Name: name, ID: id }, typeof name === 'string' && VOLUME_NAME.test(name) && typeof id === 'string' ? 'ok' : 'err');
  }
  if (roll < 0.7) {
    return { ...json(r.pick(['List', 'Capabilities']), r.pick([{}, [], 'x', 7, null, { Name: longString(r) }]), 'ok'), expect: 'ok' };
  }
  if (roll < 0.8) {
    // Bodies that are not a request at all.
    const endpoint = r.pick(['Create', 'Mount', 'Get', 'Remove', 'Unmount', 'Path']);
    const raw = r.pick<() => string | Buffer>([
      () => '{"Name":',
      () => '[]',
      () => '"Name"',
      () => 'null',
      () => '1e999',
      () => `{"Name":"a","Name":${JSON.stringify(invalidName(r)) ?? '1'}}`,
      () => '['.repeat(r.int(10, 5000)),
      () => `{"Name":${'['.repeat(2000)}${']'.repeat(2000)}}`,
      () => Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0xc3, 0x28]),
      () => '\ufeff{"Name":"x"}',
      () => `{"Name":"${'x'.repeat(2 ** 20 + r.int(1, 1000))}"}`,
      () => longString(r),
    ])();
    return { what: `#${i} POST /VolumeDriver.${endpoint} raw ${describeBody(raw.toString().slice(0, 200))}`, bytes: http(`/VolumeDriver.${endpoint}`, raw), expect: 'err', slow };
  }
  if (roll < 0.86) {
    const path = r.pick(['/VolumeDriver.Nope', '/', '/Plugin.Activate/x', `/${r.alnum(300)}`, '/VolumeDriver.constructor', '/__proto__', '/VolumeDriver.Get?Name=x#y', '/%00%FF%C3%28', '/VolumeDriver.Get%2e%2e']);
    const method = r.pick(['POST', 'GET', 'PUT', 'DELETE', 'OPTIONS']);
    if (method !== 'POST' && r.chance(0.5)) return { what: `#${i} ${method} /VolumeDriver.List`, bytes: http('/VolumeDriver.List', '{}', '', method), expect: 'err', slow };
    return { what: `#${i} ${method} ${path.slice(0, 80)}`, bytes: http(path, '{}', '', method), expect: 'err', slow };
  }
  // Malformed HTTP that Node's parser refuses.
  const body = '{"Name":"x"}';
  const raw = r.pick<() => [string, string | Buffer]>([
    () => ['control byte in a header', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\nContent-Length: ${body.length}\r\n\r\n${body}`],
    () => ['space in a header name', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n`],
    () => ['bad chunk size', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${r.pick(['zz', '-1', 'ffffffffffffffffff'])}\r\n${body}\r\n0\r\n\r\n`],
    () => ['headers over 16 KiB', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(r.int(16_500, 40_000))}\r\n\r\n`],
    () => ['garbage request line', Buffer.from([0, 1, 2, 0xff, 13, 10, 13, 10])],
    () => ['bad method token', `PO(ST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\n\r\n`],
    () => ['Content-Length and chunked', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    () => ['bad Content-Length', `POST /VolumeDriver.Get HTTP/1.1\r\nHost: x\r\nContent-Length: ${r.pick(['abc', '-5', '1, 2'])}\r\n\r\n{}`],
    () => ['bad HTTP version', `POST /VolumeDriver.Get HTTP/9.x\r\nHost: x\r\n\r\n`],
    () => ['bare LF in the request line', `POST /VolumeDriver.Get\nHTTP/1.1\r\n\r\n`],
  ])();
  return { what: `#${i} malformed HTTP: ${raw[0]}`, bytes: typeof raw[1] === 'string' ? Buffer.from(raw[1], 'latin1') : raw[1], expect: 'err', slow };
}

/** Writes a request (slowly, for a slow client) and reads the answer until the server closes. */
export function exchange(socketPath: string, c: Case): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no answer within 20 s'));
    }, 20_000);
    sock.on('data', (d: Buffer) => chunks.push(d));
    // The server may close right after answering a request it refused while bytes were still on their way.
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    // Never a half-close: Node's server drops a request whose client closed its side first.
    if (!c.slow) {
      sock.write(c.bytes);
      return;
    }
    void (async () => {
      for (let at = 0; at < c.bytes.length && !sock.destroyed; at += 16) {
        sock.write(c.bytes.subarray(at, at + 16));
        await sleep(2);
      }
    })();
  });
}

/** Sends every case, FUZZ_IN_FLIGHT at once, and returns the ones whose answer (or transport) was wrong, in the order seen. */
export async function sendAll(socketPath: string, cases: readonly Case[]): Promise<Array<{ c: Case; problem: string }>> {
  const bad: Array<{ c: Case; problem: string }> = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: FUZZ_IN_FLIGHT }, async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        const problem = await exchange(socketPath, c).then(
          (raw) => judge(c, raw),
          (err: unknown) => `transport: ${(err as Error).message}`,
        );
        if (problem) bad.push({ c, problem });
      }
    }),
  );
  return bad;
}

/** The answer's problem, or undefined when it is what the case expects. */
export function judge(c: Case, raw: string): string | undefined {
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(raw)?.[1]);
  const sep = raw.indexOf('\r\n\r\n');
  if (!status || sep < 0) return `not an HTTP answer: ${JSON.stringify(raw.slice(0, 200))}`;
  let body: unknown;
  try {
    body = JSON.parse(raw.slice(sep + 4));
  } catch {
    return `HTTP ${status} with a body that is not JSON: ${JSON.stringify(raw.slice(sep + 4, sep + 204))}`;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return `JSON that is not an object: ${describeBody(body)}`;
  const err = (body as { Err?: unknown }).Err;
  if (c.expect === 'err') {
    if (typeof err !== 'string' || err === '') return `expected a refusal, got HTTP ${status} ${describeBody(body)}`;
    if (err.length > ERR_MAX) return `Err of ${err.length} characters: ${err.slice(0, 120)}…`;
  } else if (err !== undefined && err !== '') {
    return `expected success, got ${describeBody(body)}`;
  }
  return undefined;
}
