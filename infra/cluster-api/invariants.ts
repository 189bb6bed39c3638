import type { NodeHealthCheck } from '../components/node-task.js';
import type { NodeRoutes } from '../../lib/traefik-routes.js';

/** Desired state of one cluster as the dynamic API applies it: hosts, and nodes placed on them. */
export interface ClusterSpec {
  readonly name: string;
  readonly region: string;
  readonly hosts: readonly string[];
  readonly nodes: readonly NodeSpec[];
  /** Instance type of every host (the unit program's default when omitted). */
  readonly instanceType?: string;
}

/** A node and where it runs; image, port and size fall back to the unit program's defaults. */
export interface NodeSpec {
  readonly name: string;
  readonly host: string;
  readonly image?: string;
  readonly port?: number;
  readonly sizeGiB?: number;
  /** Container port per Traefik entry point (`http-api`, `websocket`, `tcp`); default: `port` on each. */
  readonly routes?: NodeRoutes;
  /** The container's health check; none by default. */
  readonly healthCheck?: NodeHealthCheck;
}

export class ClusterInvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClusterInvariantError';
  }
}

// A DNS label (used in `<node>.<zone>` records) is also a valid tag value and ECS attribute value.
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function assertName(kind: string, name: string): void {
  if (!DNS_LABEL.test(name)) {
    throw new ClusterInvariantError(`${kind} name "${name}" must be 1-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen`);
  }
}

/** Checks a proposed change before anything is applied; `current` is the state now deployed (undefined on create). */
export function checkTransition(current: ClusterSpec | undefined, next: ClusterSpec | undefined, regions: readonly string[]): void {
  if (next === undefined) {
    if (current && current.nodes.length > 0) {
      throw new ClusterInvariantError(`cluster ${current.name} still has ${current.nodes.length} node(s); delete its nodes before its hosts`);
    }
    return;
  }
  assertName('cluster', next.name);
  if (!regions.includes(next.region)) {
    throw new ClusterInvariantError(`region ${next.region} is not a designated region (${regions.join(', ')})`);
  }
  if (current && current.region !== next.region) {
    throw new ClusterInvariantError(`cluster ${next.name} lives in ${current.region}; it cannot move to ${next.region}`);
  }
  if (next.nodes.length < 1) throw new ClusterInvariantError(`cluster ${next.name} must keep at least one node`);
  const seen = new Set<string>();
  for (const h of next.hosts) {
    assertName('host', h);
    if (seen.has(h)) throw new ClusterInvariantError(`host ${h} is listed twice`);
    seen.add(h);
  }
  const nodeNames = new Set<string>();
  for (const n of next.nodes) {
    assertName('node', n.name);
    if (nodeNames.has(n.name)) throw new ClusterInvariantError(`node ${n.name} is listed twice`);
    nodeNames.add(n.name);
    if (!seen.has(n.host)) {
      const removed = current?.hosts.includes(n.host) === true;
      throw new ClusterInvariantError(
        removed
          ? `node ${n.name} is placed on host ${n.host}, which this change removes`
          : `node ${n.name} is placed on unknown host ${n.host}`,
      );
    }
  }
  for (const n of next.nodes) {
    const before = current?.nodes.find((c) => c.name === n.name);
    if (before && before.host !== n.host) {
      throw new ClusterInvariantError(`node ${n.name} is on host ${before.host}; moving it to ${n.host} is not a cluster change (its volume follows its host)`);
    }
  }
  const used = new Set(next.nodes.map((n) => n.host));
  const idle = next.hosts.filter((h) => !used.has(h));
  if (idle.length > 0) throw new ClusterInvariantError(`host(s) ${idle.join(', ')} would carry no node; hosts live only as long as their nodes`);
}
