import { chmod, lstat, mkdir, mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import * as z from 'zod/mini';
import '../lib/zod-english.js';
import { BerthError, errorMessage, isBerthError, type ErrorCode } from '../lib/errors.js';
import { DriverOptsSchema } from './options.js';
import { ACCEPT_HEADER, Endpoints, type VolumeDriver } from './protocol.js';

/**
 * The Docker volume plugin protocol over a unix socket. Every failure is
 * answered as {"Err": sentence}; the handler holds no volume logic.
 */

const BODY_LIMIT = '1 MiB';
const BODY_LIMIT_BYTES = 2 ** 20;

const name = z.string({ error: 'Name is required' });
const Schemas = {
  create: z.object({ Name: name, Opts: z.nullish(DriverOptsSchema) }),
  named: z.object({ Name: name }),
  mount: z.object({ Name: name, ID: z.string({ error: 'ID is required' }) }),
  none: z.unknown(),
};

export interface PluginServerDeps {
  driver: VolumeDriver;
  logger: Logger;
  registry?: Registry;
}

type Handler = (body: unknown) => Promise<unknown>;

/**
 * Routes of the protocol: decode and validate the body, call the driver,
 * encode the answer. Plain node:http rather than express: the protocol is nine
 * fixed POST paths with JSON bodies, and express doubled the p99 latency and
 * added ~15 MB of memory on the hot path (bench/plugin-hot-path.ts).
 */
export function createPluginHandler(deps: PluginServerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { driver, logger } = deps;
  const registers = deps.registry ? [deps.registry] : [];
  const requests = new Counter({
    name: 'berth_plugin_requests_total',
    help: 'Docker volume plugin requests by endpoint and outcome',
    labelNames: ['endpoint', 'outcome'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'berth_plugin_request_seconds',
    help: 'Docker volume plugin request latency by endpoint',
    labelNames: ['endpoint'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 120],
    registers,
  });
  const errors = new Counter({
    name: 'berth_errors_total',
    help: 'Failed plugin requests by error code',
    labelNames: ['code'] as const,
    registers,
  });

  function route<S extends z.ZodMiniType>(path: string, schema: S, handle: (body: z.infer<S>) => Promise<unknown>): [string, Handler] {
    return [
      path,
      async (raw) => {
        const parsed = schema.safeParse(raw);
        if (!parsed.success) {
          const why = parsed.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
          throw new BerthError('INVALID_ARGUMENT', `invalid ${path.slice(1)} request: ${why}`);
        }
        return handle(parsed.data);
      },
    ];
  }

  const routes = new Map<string, Handler>([
    route(Endpoints.activate, Schemas.none, async () => ({ Implements: ['VolumeDriver'] })),
    route(Endpoints.create, Schemas.create, async (b) => {
      await driver.create(b.Name, b.Opts ?? {});
      return { Err: '' };
    }),
    route(Endpoints.remove, Schemas.named, async (b) => {
      await driver.remove(b.Name);
      return { Err: '' };
    }),
    route(Endpoints.mount, Schemas.mount, async (b) => ({ Mountpoint: await driver.mount(b.Name, b.ID), Err: '' })),
    route(Endpoints.unmount, Schemas.mount, async (b) => {
      await driver.unmount(b.Name, b.ID);
      return { Err: '' };
    }),
    route(Endpoints.path, Schemas.named, async (b) => ({ Mountpoint: await driver.path(b.Name), Err: '' })),
    route(Endpoints.get, Schemas.named, async (b) => ({ Volume: await driver.get(b.Name), Err: '' })),
    route(Endpoints.list, Schemas.none, async () => ({ Volumes: await driver.list(), Err: '' })),
    route(Endpoints.capabilities, Schemas.none, async () => ({ Capabilities: driver.capabilities() })),
  ]);

  function answer(res: ServerResponse, status: number, body: unknown): void {
    const payload = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': ACCEPT_HEADER, 'Content-Length': Buffer.byteLength(payload) });
    res.end(payload);
  }

  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const handler = req.method === 'POST' ? routes.get(path) : undefined;
    const endpoint = handler ? path.slice(1) : 'unknown';
    const end = latency.startTimer({ endpoint });
    const fail = (status: number, code: ErrorCode, message: string) => {
      errors.inc({ code });
      requests.inc({ endpoint, outcome: 'error' });
      logger[code === 'INTERNAL' ? 'error' : 'warn']({ endpoint: path, code, err: message }, 'plugin request failed');
      answer(res, status, { Err: message });
      end();
    };
    if (!handler) {
      req.resume();
      fail(404, 'INVALID_ARGUMENT', `unknown plugin endpoint ${req.method} ${path}`);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > BODY_LIMIT_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('error', (err) => fail(400, 'INVALID_ARGUMENT', `could not read the request: ${err.message}`));
    req.on('end', () => {
      if (tooLarge) return fail(500, 'INVALID_ARGUMENT', `request body is larger than the ${BODY_LIMIT} limit`);
      // dockerd may send no Content-Type (and Activate no body): the body is JSON whatever it says.
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = {};
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch (err) {
          return fail(500, 'INVALID_ARGUMENT', `request body is not valid JSON: ${errorMessage(err)}`);
        }
      }
      handler(body ?? {}).then(
        (result) => {
          requests.inc({ endpoint, outcome: 'ok' });
          answer(res, 200, result);
          end();
        },
        (err: unknown) => fail(500, isBerthError(err) ? err.code : 'INTERNAL', errorMessage(err)),
      );
    });
  };
}

export interface PluginServer {
  readonly socketPath: string;
  /** Requests being handled now. */
  inFlight(): number;
  /** Stops accepting, waits for in-flight requests up to graceMs, removes the socket. */
  close(graceMs: number): Promise<void>;
}

/** What answers on a unix socket path: a live server, nothing (a stale socket file), or no file. */
export async function probeSocket(socketPath: string, timeoutMs = 1_000): Promise<'answers' | 'stale' | 'missing'> {
  const st = await lstat(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) return 'missing';
  if (!st.isSocket()) {
    throw new BerthError('CONFLICT', `${socketPath} exists and is not a socket; berth does not remove it: move it away`);
  }
  return new Promise((resolve, reject) => {
    const conn = connect(socketPath);
    const done = (verdict: 'answers' | 'stale' | Error) => {
      conn.destroy();
      if (verdict instanceof Error) reject(verdict);
      else resolve(verdict);
    };
    conn.setTimeout(timeoutMs, () => done('answers')); // accepted but slow: someone is listening
    conn.once('connect', () => done('answers'));
    conn.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') done('stale');
      else done(Object.assign(new BerthError('INTERNAL', `cannot probe ${socketPath}: ${err.message}`), { errno: err.code }));
    });
  });
}

/** Refuses a socket path another server answers on (a stale socket file or none is fine). */
export async function assertSocketFree(socketPath: string): Promise<void> {
  if ((await probeSocket(socketPath)) === 'answers') {
    throw new BerthError('CONFLICT', `another server is listening on ${socketPath} (another berth agent?); stop it first, or give this one another BERTH_PLUGIN_NAME`);
  }
}

/**
 * Listens on a unix socket readable and writable by root only.
 *
 * A socket path that another server answers on is refused (a second agent must
 * not steal a live one's socket); a stale one (left by a SIGKILL) is replaced.
 * The socket is bound under a private name and renamed into place, so the
 * path never disappears while it is being replaced, and closing unlinks the
 * path only while it is still the socket this server bound: libuv unlinks the
 * name it bound on close whatever lives there by then, which is why that name
 * is the private one.
 */
export async function listenPlugin(socketPath: string, deps: PluginServerDeps): Promise<PluginServer> {
  const handler = createPluginHandler(deps);
  let active = 0;
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await assertSocketFree(socketPath);
  // A directory only root can enter: nobody can connect to the socket before its mode is 0600.
  const bindDir = await mkdtemp(join(dirname(socketPath), `.${basename(socketPath)}.`));
  const bindPath = join(bindDir, 'plugin.sock');
  const server: Server = createServer(handler);
  let bound: { dev: number; ino: number };
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(bindPath, () => resolve());
    });
    await chmod(bindPath, 0o600);
    const st = await lstat(bindPath);
    bound = { dev: st.dev, ino: st.ino };
    await rename(bindPath, socketPath);
  } catch (err) {
    if (server.listening) await new Promise((r) => server.close(r));
    throw err;
  } finally {
    await rm(bindDir, { recursive: true, force: true });
  }
  answerMalformedRequests(server, deps.logger);
  server.on('request', (_req, res) => {
    active++;
    res.on('close', () => active--);
  });
  // dockerd keeps connections alive; idle ones must not hold up a stop.
  server.keepAliveTimeout = 5_000;

  return {
    socketPath,
    inFlight: () => active,
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = Date.now() + graceMs;
      while (active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      server.closeAllConnections();
      await closed;
      // Only our own socket: a newer agent may have replaced it while this one drained.
      const now = await lstat(socketPath).catch(() => undefined);
      if (now && now.dev === bound.dev && now.ino === bound.ino) await unlink(socketPath).catch(() => undefined);
      else if (now) deps.logger.info({ socket: socketPath }, 'the socket path now belongs to another server; left in place');
    },
  };
}

/**
 * What Node's HTTP parser refuses (bad header bytes, bad chunking, headers
 * over 16 KiB, a request that took too long to arrive) is answered like any
 * other failure, {"Err": sentence}, instead of Node's empty 400. The
 * sentence names the parser's reason, never the bytes sent.
 */
function answerMalformedRequests(server: Server, logger: Logger): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const pending = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const reason = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'the request did not arrive in time' : (err as { reason?: string }).reason ?? err.message;
    const payload = JSON.stringify({ Err: `malformed plugin request: ${reason} (${err.code ?? 'parse error'})` });
    logger.warn({ code: err.code, reason }, 'malformed plugin request');
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${ACCEPT_HEADER}\r\nContent-Length: ${Buffer.byteLength(payload)}\r\nConnection: close\r\n\r\n${payload}`,
    );
  });
}
