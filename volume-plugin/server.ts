import { chmod, mkdir, unlink } from 'node:fs/promises';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { dirname } from 'node:path';
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

/** Listens on a unix socket readable and writable by root only. */
export async function listenPlugin(socketPath: string, deps: PluginServerDeps): Promise<PluginServer> {
  const handler = createPluginHandler(deps);
  let active = 0;
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  const server: Server = await new Promise((resolve, reject) => {
    const previous = process.umask(0o177);
    const s = createServer(handler);
    s.listen(socketPath, () => {
      process.umask(previous);
      resolve(s);
    });
    s.once('error', (err) => {
      process.umask(previous);
      reject(err);
    });
  });
  await chmod(socketPath, 0o600);
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
      await unlink(socketPath).catch(() => undefined);
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
