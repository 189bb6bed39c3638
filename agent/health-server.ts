import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { errorMessage, isBerthError } from '../lib/errors.js';
import { localPeerUid } from '../lib/tcp-peer.js';

/** A readiness check answers true when ready, or a sentence saying why not. */
export type ReadinessCheck = () => true | string | Promise<true | string>;

export interface HealthServerDeps {
  registry: Registry;
  logger: Logger;
  /** JSON for /status (volumes, backend, readiness). */
  status: () => Promise<unknown> | unknown;
  /** JSON for /reconcile/plan: what the next reconcile pass would do, and why. */
  plan?: () => Promise<unknown>;
  /** POST /volumes/resize {"name","change"}: `berth resize` (the volume service's resize). */
  resize?: (name: string, change: Record<string, string>) => Promise<unknown>;
  /** Who may read the details: default, root or the agent's own user on this host (lib/tcp-peer.ts). */
  isPrivileged?: (req: IncomingMessage) => Promise<boolean>;
}

/**
 * Access, by what a caller may learn. /healthz and /readyz's verdict are for
 * anyone who can reach the port (load balancers, Docker's HEALTHCHECK, other
 * users' monitors); their answer carries no detail. /status (volumes, devices,
 * last errors), /metrics, /reconcile/plan and the readiness reasons are for
 * root (or the agent's user) on this host only, like the plugin socket: a
 * caller the kernel does not show as such, local or remote, gets 403.
 */
const PUBLIC_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

async function rootOrSelf(req: IncomingMessage): Promise<boolean> {
  const uid = await localPeerUid(req.socket);
  return uid !== undefined && (uid === 0 || uid === process.getuid?.());
}

export interface HealthServer {
  addReadinessCheck(name: string, check: ReadinessCheck): void;
  readiness(): Promise<{ ready: boolean; checks: Record<string, true | string> }>;
  listen(addr: string): Promise<{ port: number }>;
  close(): Promise<void>;
}

const json = (status: number, value: unknown) => ({ status, type: 'application/json', body: JSON.stringify(value) });

/** HTTP status of a failed action, from berth's error code. */
const STATUS_OF: Record<string, number> = { INVALID_ARGUMENT: 400, NOT_FOUND: 404, CONFLICT: 409, UNSAFE_DEVICE: 409, TIMEOUT: 504, UNAVAILABLE: 503, LIMIT_EXCEEDED: 429 };

/** A small JSON request body (≤ 64 KiB, within 10 s). */
function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let data = '';
    const timer = setTimeout(() => req.destroy(new Error('the request body did not arrive within 10 s')), 10_000);
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      data += chunk;
      if (data.length > 65_536) req.destroy(new Error('request body over 64 KiB'));
    });
    req.on('error', (err) => (clearTimeout(timer), reject(err)));
    req.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(data));
      } catch {
        reject(new Error('the request body is not JSON'));
      }
    });
  });
}

/** /healthz (alive), /readyz (every readiness check passes), /metrics, /status on a local TCP port. */
export function createHealthServer(deps: HealthServerDeps): HealthServer {
  const checks = new Map<string, ReadinessCheck>();
  let server: Server | undefined;

  async function readiness() {
    const results: Record<string, true | string> = {};
    for (const [name, check] of checks) {
      try {
        results[name] = await check();
      } catch (err) {
        results[name] = errorMessage(err);
      }
    }
    return { ready: Object.values(results).every((r) => r === true), checks: results };
  }

  const isPrivileged = deps.isPrivileged ?? rootOrSelf;
  const routes: Record<string, (privileged: boolean) => Promise<{ status: number; type: string; body: string }>> = {
    '/healthz': async () => json(200, { ok: true }),
    '/readyz': async (privileged) => {
      const r = await readiness();
      if (privileged) return json(r.ready ? 200 : 503, r);
      const verdicts = Object.fromEntries(Object.entries(r.checks).map(([name, result]) => [name, result === true]));
      return json(r.ready ? 200 : 503, { ready: r.ready, checks: verdicts, note: 'the reasons are for root on this host only' });
    },
    '/metrics': async () => ({ status: 200, type: deps.registry.contentType, body: await deps.registry.metrics() }),
    '/status': async () => json(200, { ...((await deps.status()) as object), readiness: await readiness() }),
    '/reconcile/plan': async () => {
      if (!deps.plan) return json(404, { error: 'this agent has no reconciler' });
      try {
        return json(200, await deps.plan());
      } catch (err) {
        return json(503, { error: errorMessage(err) });
      }
    },
  };
  /** Actions (POST): root or the agent's user only, like the details. */
  const actions: Record<string, (req: IncomingMessage) => Promise<{ status: number; type: string; body: string }>> = {
    '/volumes/resize': async (req) => {
      if (!deps.resize) return json(404, { error: 'this agent cannot resize volumes' });
      const body = (await readJson(req).catch((err: unknown) => ({ invalid: errorMessage(err) }))) as { name?: unknown; change?: unknown; invalid?: string };
      const change = body.change;
      const validChange = typeof change === 'object' && change !== null && !Array.isArray(change) && Object.values(change).every((v) => typeof v === 'string');
      if (body.invalid || typeof body.name !== 'string' || !validChange) {
        return json(400, { error: body.invalid ?? 'expected {"name": "<volume>", "change": {"size": "<size>", …}} with string values' });
      }
      try {
        return json(200, await deps.resize(body.name, change as Record<string, string>));
      } catch (err) {
        const code = isBerthError(err) ? err.code : 'INTERNAL';
        return json(STATUS_OF[code] ?? 500, { error: errorMessage(err), code });
      }
    },
  };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'POST' && Object.hasOwn(actions, path)) {
      const action = actions[path]!;
      void isPrivileged(req)
        .then((privileged) => (privileged ? action(req) : json(403, { error: `${path} is for root on this host only (run it with sudo)` })))
        .catch((err: unknown) => json(500, { error: errorMessage(err) }))
        .then(({ status, type, body }) => {
          res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
          res.end(body);
        });
      return;
    }
    const route = req.method === 'GET' && Object.hasOwn(routes, path) ? routes[path] : undefined;
    const answer = !route
      ? Promise.resolve(json(404, { error: `no such endpoint: ${req.method} ${path.slice(0, 64)}` }))
      : isPrivileged(req).then((privileged) =>
          privileged || PUBLIC_PATHS.has(path) ? route(privileged) : json(403, { error: `${path} is for root on this host only (run it with sudo; /healthz and /readyz are open)` }),
        );
    answer
      .catch((err: unknown) => json(500, { error: errorMessage(err) }))
      .then(({ status, type, body }) => {
        res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      });
  };

  return {
    addReadinessCheck(name, check) {
      checks.set(name, check);
    },
    readiness,
    async listen(addr) {
      const idx = addr.lastIndexOf(':');
      const host = addr.slice(0, idx);
      const port = Number(addr.slice(idx + 1));
      server = await new Promise<Server>((resolve, reject) => {
        const s = createServer(handler);
        s.once('error', reject);
        s.listen(port, host, () => resolve(s));
      });
      const bound = server.address();
      const boundPort = typeof bound === 'object' && bound ? bound.port : port;
      deps.logger.info({ addr: `${host}:${boundPort}` }, 'health endpoint listening');
      return { port: boundPort };
    },
    async close() {
      if (!server) return;
      const s = server;
      server = undefined;
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}
