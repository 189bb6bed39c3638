import { chmod, lstat, mkdir, mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import * as z from 'zod/mini';
import '../lib/zod-english.js';
import { BerthError, errorMessage, isBerthError, type ErrorCode } from '../lib/errors.js';
import { quote } from '../lib/quote.js';
import type { PreparedAnswers } from './answers.js';
import type { CallOptions } from './backends/backend.js';
import { DriverOptsSchema } from './options.js';
import { ACCEPT_HEADER, Endpoints, type VolumeDriver } from './protocol.js';
import { RequestMetrics } from './request-metrics.js';

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
  /** Get, Path and List answers kept serialized (the manager's AnswerCache); without it every answer comes from the driver. */
  answers?: PreparedAnswers;
  /** Time a client has to send one whole request; 10 s by default. */
  requestArrivalMs?: number;
}

/** An answer body ready to write, or the answer to serialize once the driver has it. */
type Handler = (body: unknown, call: CallOptions) => Buffer | Promise<unknown>;

/** Calls that change something: their signal aborts when the caller hangs up before the answer. */
const CANCELLABLE: ReadonlySet<string> = new Set([Endpoints.create, Endpoints.remove, Endpoints.mount, Endpoints.unmount]);
const NO_CALL: CallOptions = {};

/**
 * A call whose signal aborts when the connection closes before the answer is
 * written: dockerd closes it when it gives up on a call (its client timeout,
 * docs/design.md §3), and whoever asked will then never learn the result, so
 * the work is stopped and undone and no reference is counted for it.
 */
function cancelledOnHangUp(res: ServerResponse): CallOptions {
  const controller = new AbortController();
  const hungUp = () => {
    if (!res.writableFinished) {
      controller.abort(new BerthError('TIMEOUT', 'the caller closed the connection before the answer (dockerd gave up on the call); stopped and undone'));
    }
  };
  // Closed already (between the body's end and now): the caller is gone before the work starts.
  if (res.destroyed) hungUp();
  else res.once('close', hungUp);
  return { signal: controller.signal };
}

/**
 * The string fields of a body that is a plain object holding them, else
 * undefined. Bodies that are only a name (and a mount ID) are checked by hand
 * on the hot path: what this accepts, the zod schema accepts with the same
 * result, and anything else still goes through the schema for its error.
 */
function stringField(body: unknown, field: 'Name' | 'ID'): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const value = (body as Record<string, unknown>)[field];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Routes of the protocol: decode and validate the body, call the driver,
 * encode the answer. Plain node:http rather than express: the protocol is nine
 * fixed POST paths with JSON bodies, and express doubled the p99 latency and
 * added ~15 MB of memory on the hot path (bench/plugin-hot-path.ts). Get,
 * Path, List and Capabilities are the hot path (dockerd asks them all the
 * time): with `answers` they write a body serialized when the view last
 * changed, with no schema and no allocation beyond node:http's own.
 */
export function createPluginHandler(deps: PluginServerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { driver, logger, answers } = deps;
  const registers = deps.registry ? [deps.registry] : [];
  const errors = new Counter({
    name: 'berth_errors_total',
    help: 'Failed plugin requests by error code',
    labelNames: ['code'] as const,
    registers,
  });

  function validated<S extends z.ZodMiniType>(path: string, schema: S, raw: unknown): z.infer<S> {
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
      throw new BerthError('INVALID_ARGUMENT', `invalid ${path.slice(1)} request: ${why}`);
    }
    return parsed.data;
  }
  const named = (path: string, raw: unknown): string => stringField(raw, 'Name') ?? validated(path, Schemas.named, raw).Name;
  const mountArgs = (path: string, raw: unknown): [string, string] => {
    const n = stringField(raw, 'Name');
    const id = stringField(raw, 'ID');
    if (n !== undefined && id !== undefined) return [n, id];
    const b = validated(path, Schemas.mount, raw);
    return [b.Name, b.ID];
  };
  let capabilities: { scope: string; body: Buffer } | undefined;

  const handlers: Record<string, Handler> = {
    [Endpoints.activate]: async () => ({ Implements: ['VolumeDriver'] }),
    [Endpoints.create]: async (raw, call) => {
      const b = validated(Endpoints.create, Schemas.create, raw);
      await driver.create(b.Name, b.Opts ?? {}, call);
      return { Err: '' };
    },
    [Endpoints.remove]: async (raw, call) => {
      await driver.remove(named(Endpoints.remove, raw), call);
      return { Err: '' };
    },
    [Endpoints.mount]: async (raw, call) => {
      const [n, id] = mountArgs(Endpoints.mount, raw);
      return { Mountpoint: await driver.mount(n, id, call), Err: '' };
    },
    [Endpoints.unmount]: async (raw, call) => {
      const [n, id] = mountArgs(Endpoints.unmount, raw);
      await driver.unmount(n, id, call);
      return { Err: '' };
    },
    [Endpoints.path]: (raw) => {
      const n = named(Endpoints.path, raw);
      return answers?.path(n) ?? driver.path(n).then((Mountpoint) => ({ Mountpoint, Err: '' }));
    },
    [Endpoints.get]: (raw) => {
      const n = named(Endpoints.get, raw);
      return answers?.get(n) ?? driver.get(n).then((Volume) => ({ Volume, Err: '' }));
    },
    [Endpoints.list]: () => answers?.list() ?? driver.list().then((Volumes) => ({ Volumes, Err: '' })),
    [Endpoints.capabilities]: () => {
      const caps = driver.capabilities();
      if (capabilities?.scope !== caps.Scope) capabilities = { scope: caps.Scope, body: Buffer.from(JSON.stringify({ Capabilities: caps })) };
      return capabilities.body;
    },
  };
  const paths = Object.keys(handlers);
  const routes = new Map(paths.map((path, index) => [path, { index, handler: handlers[path]!, cancellable: CANCELLABLE.has(path) }]));
  const UNKNOWN = paths.length;
  const metrics = new RequestMetrics([...paths.map((p) => p.slice(1)), 'unknown'], deps.registry);

  function answer(res: ServerResponse, status: number, payload: Buffer | string): void {
    res.writeHead(status, { 'Content-Type': ACCEPT_HEADER, 'Content-Length': Buffer.byteLength(payload) });
    res.end(payload);
  }

  return (req, res) => {
    const started = performance.now();
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const route = req.method === 'POST' ? routes.get(path) : undefined;
    const index = route ? route.index : UNKNOWN;
    const done = (ok: boolean) => metrics.record(index, ok, (performance.now() - started) / 1000);
    // The path is the caller's: up to Node's 16 KiB header limit. Answers and logs carry it cut short.
    const shown = path.length <= 128 ? path : quote(path);
    const fail = (status: number, code: ErrorCode, message: string) => {
      errors.inc({ code });
      logger[code === 'INTERNAL' ? 'error' : 'warn']({ endpoint: shown, code, err: message }, 'plugin request failed');
      answer(res, status, JSON.stringify({ Err: message }));
      done(false);
    };
    if (!route) {
      req.resume();
      fail(404, 'INVALID_ARGUMENT', `unknown plugin endpoint ${req.method} ${shown}`);
      return;
    }
    let chunks: Buffer | Buffer[] | undefined;
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > BODY_LIMIT_BYTES) tooLarge = true;
      else if (chunks === undefined) chunks = chunk;
      else if (Array.isArray(chunks)) chunks.push(chunk);
      else chunks = [chunks, chunk];
    });
    req.on('error', (err) => fail(400, 'INVALID_ARGUMENT', `could not read the request: ${err.message}`));
    req.on('end', () => {
      if (tooLarge) return fail(500, 'INVALID_ARGUMENT', `request body is larger than the ${BODY_LIMIT} limit`);
      // dockerd may send no Content-Type (and Activate no body): the body is JSON whatever it says.
      const text = chunks === undefined ? '' : (Array.isArray(chunks) ? Buffer.concat(chunks) : chunks).toString('utf8');
      let body: unknown = {};
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch (err) {
          return fail(500, 'INVALID_ARGUMENT', `request body is not valid JSON: ${errorMessage(err)}`);
        }
      }
      const failed = (err: unknown) => fail(500, isBerthError(err) ? err.code : 'INTERNAL', errorMessage(err));
      let result: Buffer | Promise<unknown>;
      try {
        result = route.handler(body ?? {}, route.cancellable ? cancelledOnHangUp(res) : NO_CALL);
      } catch (err) {
        return failed(err);
      }
      if (Buffer.isBuffer(result)) {
        answer(res, 200, result);
        done(true);
        return;
      }
      result.then((value) => {
        answer(res, 200, JSON.stringify(value));
        done(true);
      }, failed);
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
/** Time a client has to send one whole request (headers and body, at most 1 MiB) over the local socket. */
const REQUEST_ARRIVAL_MS = 10_000;

export async function listenPlugin(socketPath: string, deps: PluginServerDeps): Promise<PluginServer> {
  const handler = createPluginHandler(deps);
  let active = 0;
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await assertSocketFree(socketPath);
  // A directory only root can enter: nobody can connect to the socket before its mode is 0600.
  const bindDir = await mkdtemp(join(dirname(socketPath), `.${basename(socketPath)}.`));
  const bindPath = join(bindDir, 'plugin.sock');
  // dockerd sends a whole request at once; a client that dribbles one (slowloris) is answered
  // 408 {"Err"} after this long instead of holding a connection for Node's 5 minutes.
  const arrivalMs = deps.requestArrivalMs ?? REQUEST_ARRIVAL_MS;
  const server: Server = createServer(
    { requestTimeout: arrivalMs, headersTimeout: arrivalMs, connectionsCheckingInterval: Math.min(1_000, arrivalMs) },
    handler,
  );
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
