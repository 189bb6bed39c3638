import type { Server } from 'node:http';
import express from 'express';
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
}

export interface HealthServer {
  addReadinessCheck(name: string, check: ReadinessCheck): void;
  readiness(): Promise<{ ready: boolean; checks: Record<string, true | string> }>;
  listen(addr: string): Promise<{ port: number }>;
  close(): Promise<void>;
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

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/readyz', async (_req, res) => {
    const r = await readiness();
    res.status(r.ready ? 200 : 503).json(r);
  });
  app.get('/metrics', async (_req, res) => {
    res.type(deps.registry.contentType).send(await deps.registry.metrics());
  });
  app.get('/status', async (_req, res) => {
    res.json({ ...(await deps.status()) as object, readiness: await readiness() });
  });

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
        const s = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
        s.once('error', reject);
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
