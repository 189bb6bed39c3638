import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { errorMessage } from '../lib/errors.js';

/** A readiness check answers true when ready, or a sentence saying why not. */
export type ReadinessCheck = () => true | string | Promise<true | string>;

export interface HealthServerDeps {
  registry: Registry;
  logger: Logger;
  /** JSON for /status (volumes, backend, readiness). */
  status: () => Promise<unknown> | unknown;
  /** JSON for /reconcile/plan: what the next reconcile pass would do, and why. */
  plan?: () => Promise<unknown>;
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

  const routes: Record<string, () => Promise<{ status: number; type: string; body: string }>> = {
    '/healthz': async () => json(200, { ok: true }),
    '/readyz': async () => {
      const r = await readiness();
      return json(r.ready ? 200 : 503, r);
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
    const route = req.method === 'GET' ? routes[(req.url ?? '/').split('?')[0]!] : undefined;
    const answer = route ? route() : Promise.resolve(json(404, { error: `no such endpoint: ${req.method} ${req.url}` }));
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
