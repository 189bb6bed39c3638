import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { errorMessage } from '../lib/errors.js';
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
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
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
