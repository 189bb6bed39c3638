import { chmod, mkdir, unlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import { dirname } from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import { BerthError, errorMessage, isBerthError } from '../lib/errors.js';
import { ACCEPT_HEADER, Endpoints, type VolumeDriver } from './protocol.js';

/**
 * The Docker volume plugin protocol over a unix socket. Each route decodes and
 * validates the body, calls the driver and encodes the answer; every failure
 * is answered as {"Err": sentence}. The handler holds no volume logic.
 */

const BODY_LIMIT = '1mb';

const name = z.string({ error: 'Name is required' });
const Schemas = {
  create: z.object({ Name: name, Opts: z.record(z.string(), z.string()).nullish() }),
  named: z.object({ Name: name }),
  mount: z.object({ Name: name, ID: z.string({ error: 'ID is required' }) }),
  none: z.unknown(),
};

export interface PluginServerDeps {
  driver: VolumeDriver;
  logger: Logger;
  registry?: Registry;
}

export function createPluginApp(deps: PluginServerDeps): express.Express {
  const { driver, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  const requests = new Counter({
    name: 'berth_plugin_requests_total',
    help: 'Docker volume plugin requests by endpoint and outcome',
    labelNames: ['endpoint', 'outcome'] as const,
    registers: deps.registry ? [deps.registry] : [],
  });
  const latency = new Histogram({
    name: 'berth_plugin_request_seconds',
    help: 'Docker volume plugin request latency by endpoint',
    labelNames: ['endpoint'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 120],
    registers: deps.registry ? [deps.registry] : [],
  });
  const errors = new Counter({
    name: 'berth_errors_total',
    help: 'Failed plugin requests by error code',
    labelNames: ['code'] as const,
    registers: deps.registry ? [deps.registry] : [],
  });

  app.use((req, res, next) => {
    const endpoint = Object.values(Endpoints).includes(req.path as never) ? req.path.slice(1) : 'unknown';
    const end = latency.startTimer({ endpoint });
    res.on('finish', () => {
      end();
      requests.inc({ endpoint, outcome: res.locals.failed ? 'error' : 'ok' });
    });
    next();
  });
  app.use(express.json({ type: () => true, limit: BODY_LIMIT, strict: false }));

  function route<S extends z.ZodType>(path: string, schema: S, handle: (body: z.infer<S>) => Promise<unknown>) {
    app.post(path, async (req: Request, res: Response) => {
      const parsed = schema.safeParse(req.body ?? {});
      if (!parsed.success) {
        const why = parsed.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
        throw new BerthError('INVALID_ARGUMENT', `invalid ${path.slice(1)} request: ${why}`);
      }
      res.type(ACCEPT_HEADER).json(await handle(parsed.data));
    });
  }

  route(Endpoints.activate, Schemas.none, async () => ({ Implements: ['VolumeDriver'] }));
  route(Endpoints.create, Schemas.create, async (b) => {
    await driver.create(b.Name, b.Opts ?? {});
    return { Err: '' };
  });
  route(Endpoints.remove, Schemas.named, async (b) => {
    await driver.remove(b.Name);
    return { Err: '' };
  });
  route(Endpoints.mount, Schemas.mount, async (b) => ({ Mountpoint: await driver.mount(b.Name, b.ID), Err: '' }));
  route(Endpoints.unmount, Schemas.mount, async (b) => {
    await driver.unmount(b.Name, b.ID);
    return { Err: '' };
  });
  route(Endpoints.path, Schemas.named, async (b) => ({ Mountpoint: await driver.path(b.Name), Err: '' }));
  route(Endpoints.get, Schemas.named, async (b) => ({ Volume: await driver.get(b.Name), Err: '' }));
  route(Endpoints.list, Schemas.none, async () => ({ Volumes: await driver.list(), Err: '' }));
  route(Endpoints.capabilities, Schemas.none, async () => ({ Capabilities: driver.capabilities() }));

  app.use((req: Request, res: Response) => {
    res.locals.failed = true;
    res.status(404).type(ACCEPT_HEADER).json({ Err: `unknown plugin endpoint ${req.method} ${req.path}` });
  });

  // Express 5 forwards rejected async handlers here.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    res.locals.failed = true;
    const parserType = (err as { type?: string }).type;
    let message = errorMessage(err);
    let code = isBerthError(err) ? err.code : 'INTERNAL';
    if (parserType === 'entity.too.large') {
      code = 'INVALID_ARGUMENT';
      message = `request body is larger than the ${BODY_LIMIT} limit`;
    } else if (parserType === 'entity.parse.failed') {
      code = 'INVALID_ARGUMENT';
      message = `request body is not valid JSON: ${message}`;
    }
    errors.inc({ code });
    const level = code === 'INTERNAL' ? 'error' : 'warn';
    logger[level]({ endpoint: req.path, code, err: message }, 'plugin request failed');
    res.status(500).type(ACCEPT_HEADER).json({ Err: message });
  });
  return app;
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
  const app = createPluginApp(deps);
  let active = 0;
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  const server: Server = await new Promise((resolve, reject) => {
    const previous = process.umask(0o177);
    const s = app.listen(socketPath, (err?: Error) => {
      process.umask(previous);
      if (err) reject(err);
      else resolve(s);
    });
    s.once('error', (err) => {
      process.umask(previous);
      reject(err);
    });
  });
  await chmod(socketPath, 0o600);
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
