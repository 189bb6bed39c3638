import { collectDefaultMetrics, Registry } from 'prom-client';

/** One registry per agent; modules register their own berth_* metrics on it. */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'berth_' });
  return registry;
}
