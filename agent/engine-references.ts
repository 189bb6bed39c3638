import { request } from 'node:http';
import { BerthError } from '../lib/errors.js';
import type { EngineReferences } from '../volume-plugin/engine-check.js';

/**
 * Which volumes the Docker engine's containers use, from the engine API
 * (GET /containers/json?all=1, whose entries list each container's Mounts
 * with Type and Name; moby api/types/container Summary). Docker's plugin
 * mount IDs never appear in the API, so a reference is matched by volume
 * name: a volume is in use when a container that may hold it mounts it.
 * Matching by name only can keep a reference too long, never drop a live one.
 */

/** States in which a container may hold its volumes mounted (created covers one being started). */
const HOLDING = new Set(['created', 'running', 'paused', 'restarting']);
const REQUEST_MS = 5_000;

interface ContainerSummary {
  State?: string;
  Mounts?: Array<{ Type?: string; Name?: string }>;
}

/** `unix:///var/run/docker.sock` → the socket path; only unix sockets (the engine API is root-equivalent). */
export function socketOfDockerHost(host: string): string {
  const m = /^unix:\/\/(\/.+)$/.exec(host);
  if (!m) throw new BerthError('INVALID_ARGUMENT', `BERTH_DOCKER_HOST must be unix:///path/to/docker.sock, got ${JSON.stringify(host)}`);
  return m[1]!;
}

export function engineReferences(dockerHost: string): EngineReferences {
  const socketPath = socketOfDockerHost(dockerHost);
  return {
    async volumesInUse(signal) {
      const containers = await getJson<ContainerSummary[]>(socketPath, '/containers/json?all=1', signal);
      if (!Array.isArray(containers)) throw new BerthError('UNAVAILABLE', 'the Docker engine answered /containers/json with something other than a list');
      const names = new Set<string>();
      for (const c of containers) {
        if (!HOLDING.has(c.State ?? '')) continue;
        for (const m of c.Mounts ?? []) if (m.Type === 'volume' && typeof m.Name === 'string') names.add(m.Name);
      }
      return names;
    },
  };
}

function getJson<T>(socketPath: string, path: string, signal?: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', headers: { Host: 'docker' }, timeout: REQUEST_MS, ...(signal ? { signal } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new BerthError('UNAVAILABLE', `the Docker engine answered ${path} with ${res.statusCode}: ${text.slice(0, 200)}`));
        try {
          resolve(JSON.parse(text) as T);
        } catch {
          reject(new BerthError('UNAVAILABLE', `the Docker engine answered ${path} with invalid JSON`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new BerthError('UNAVAILABLE', `the Docker engine did not answer ${path} within ${REQUEST_MS / 1000} s`)));
    req.on('error', (err) => reject(err instanceof BerthError ? err : new BerthError('UNAVAILABLE', `the Docker engine at ${socketPath} cannot be asked: ${err.message}`)));
    req.end();
  });
}
