import type { NodeHealthCheck } from '../components/node-task.js';
import { clusterPublishedLabels, labelCollisions, labelOwner, nodeHostLabelProblem, type PublishedLabel } from '../../lib/node-contract.js';
import type { NodeRoutes } from '../../lib/traefik-routes.js';
import { isTraefikHostId } from '../components/traefik-names.js';

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
  /** Its ECS service at 0 tasks: the container stops, berth unmounts and later detaches the volume (a zone move's first step). */
  readonly stopped?: boolean;
  /**
   * The node's EBS volume after a zone move (the cluster API's `moveNode` writes it): the unit
   * program adopts (imports) this volume with inputs equal to what the move created, under a
   * logical name that changes with it, so Pulumi forgets the old volume (retained) and never makes
   * a blank one (docs/design.md §6, "Zone moves").
   */
  readonly volume?: MovedVolume;
}

/** What the move created, as the unit program must declare it for the import to match (CreateVolume from the move's snapshot). */
export interface MovedVolume {
  readonly id: string;
  readonly snapshotId: string;
  readonly iops?: number;
  readonly throughput?: number;
}

export class ClusterInvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClusterInvariantError';
  }
}

// A DNS label (part of the `<node>-<cluster>.<zone>` records) is also a valid tag value and ECS attribute value.
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function assertName(kind: string, name: string): void {
  if (!DNS_LABEL.test(name)) {
    throw new ClusterInvariantError(`${kind} name "${name}" must be 1-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen`);
  }
  // Reserved: a region's Traefik host is cluster and host `traefik-<region>` (its tags, ECS
  // attribute, DNS record `traefik-<region>.<zone>` and log group); nodes live under their cluster's name.
  if (kind !== 'node' && isTraefikHostId(name)) {
    throw new ClusterInvariantError(`${kind} name "${name}" is reserved: traefik-<region> names a region's Traefik host (its DNS record, log group, tags and ECS attribute); choose another name`);
  }
}

/**
 * Checks a proposed change before anything is applied; `current` is the state now deployed
 * (undefined on create), `next` undefined deletes the whole cluster.
 */
export function checkTransition(current: ClusterSpec | undefined, next: ClusterSpec | undefined, regions: readonly string[]): void {
  if (next === undefined) {
    if (current) checkDeletion(current, regions);
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
    // A node's DNS name is one label, `<node>-<cluster>` (so `*.<zone>` covers it): refused here, before anything is applied.
    const tooLong = nodeHostLabelProblem(n.name, next.name);
    if (tooLong) throw new ClusterInvariantError(tooLong);
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
    // A host in another zone needs the volume moved first (moveNode); the final apply of that move
    // is the one change of host allowed, recognised by the moved volume it carries.
    if (before && before.host !== n.host && (n.volume === undefined || n.volume.id === before.volume?.id)) {
      throw new ClusterInvariantError(`node ${n.name} is on host ${before.host}; moving it to ${n.host} is not a cluster change (its volume follows its host): use the cluster API's moveNode, which moves the volume too`);
    }
    // Dropping or replacing a moved node's volume in place would make Pulumi create a blank volume
    // (`<node>-data` again) or adopt another one: only a move changes it, with the host.
    if (before?.volume && before.host === n.host && n.volume?.id !== before.volume.id) {
      throw new ClusterInvariantError(`node ${n.name} has volume ${before.volume.id} since its zone move; a spec ${n.volume ? `with volume ${n.volume.id}` : 'without it'} would make Pulumi ${n.volume ? 'adopt another volume' : 'create a blank one'}: keep its \`volume\` as the cluster's status shows it (only moveNode changes it)`);
    }
    if (n.volume !== undefined && !/^vol-[0-9a-f]{8,17}$/.test(n.volume.id)) throw new ClusterInvariantError(`node ${n.name}: volume id "${n.volume.id}" is not an EBS volume id (vol-…)`);
    // The node's EBS volume changes in place (the AWS provider's ModifyVolume), which only grows
    // (ModifyVolume: "The target volume size must be greater than or equal to the existing size").
    if (before?.sizeGiB !== undefined && n.sizeGiB !== undefined && n.sizeGiB < before.sizeGiB) {
      throw new ClusterInvariantError(`node ${n.name} has a ${before.sizeGiB} GiB volume; EBS volumes only grow, not shrink to ${n.sizeGiB} GiB`);
    }
  }
  // Every label the cluster publishes (its own and `<node>-<cluster>` per node) against the
  // regional stacks' `traefik-<region>`, for any region: a name the zone has refuses a second record.
  for (const l of publishedLabels(next)) {
    if (isTraefikHostId(l.label)) {
      throw new ClusterInvariantError(`${labelOwner(l)}: its DNS name would be ${l.label}.<zone>, a region's Traefik host's (traefik-<region>.<zone>, the regional stack's record); choose another ${l.node === undefined ? 'cluster' : 'node'} name`);
    }
  }
  const used = new Set(next.nodes.map((n) => n.host));
  const idle = next.hosts.filter((h) => !used.has(h));
  if (idle.length > 0) throw new ClusterInvariantError(`host(s) ${idle.join(', ')} would carry no node; hosts live only as long as their nodes`);
}

/** The labels a cluster spec publishes under its zone (`clusterPublishedLabels`, lib/node-contract.ts). */
export function publishedLabels(spec: ClusterSpec): PublishedLabel[] {
  return clusterPublishedLabels(spec.name, spec.nodes.map((n) => n.name));
}

/**
 * Refuses a change that would publish a label another cluster of the environment publishes, or
 * means to (`others`: the other clusters' deployed and desired specs). `-` joins names that may
 * contain `-`, so node `a-b` of cluster `c`, node `a` of cluster `b-c` and cluster `a-b-c` all
 * publish `a-b-c.<zone>`; Route 53 would refuse the second record only during `pulumi up`. Only
 * labels `current` does not publish yet are checked: what is deployed already holds its records.
 */
export function checkPublishedLabels(current: ClusterSpec | undefined, next: ClusterSpec, others: readonly ClusterSpec[]): void {
  const held = new Set(current ? publishedLabels(current).map((l) => l.label) : []);
  const fresh = publishedLabels(next).filter((l) => !held.has(l.label));
  const collisions = labelCollisions(fresh, others.filter((o) => o.name !== next.name).flatMap(publishedLabels));
  if (collisions.length === 0) return;
  throw new ClusterInvariantError(collisions
    .map((c) => `${labelOwner(c.mine)} would publish ${c.label}.<zone>, which ${labelOwner(c.other)} publishes (<node>-<cluster> joins names that may contain "-")`)
    .join('; ') + `; rename the ${collisions.some((c) => c.mine.node !== undefined) ? 'node or the cluster' : 'cluster'}`);
}

/**
 * A whole cluster may go at once: the unit stack declares every node `dependsOn` its host, so a
 * destroy removes each node's service (ECS drains its task, Docker unmounts its volume) before the
 * host's group, and the node volumes are retained. That holds only for a deployed spec whose every
 * node is on one of its hosts; anything else is refused rather than destroyed in an unknown order.
 */
export function checkDeletion(current: ClusterSpec, regions: readonly string[]): void {
  assertName('cluster', current.name);
  if (!regions.includes(current.region)) {
    throw new ClusterInvariantError(`cluster ${current.name} is in ${current.region}, which is not a designated region (${regions.join(', ')})`);
  }
  const hosts = new Set(current.hosts);
  const orphans = current.nodes.filter((n) => !hosts.has(n.host));
  if (orphans.length > 0) {
    throw new ClusterInvariantError(`cluster ${current.name} has node(s) ${orphans.map((n) => `${n.name} on ${n.host}`).join(', ')} outside its hosts; repair the stack before deleting it`);
  }
}

/** The spec after adding nodes; a node's host joins the cluster when it is new. */
export function withNodes(current: ClusterSpec, nodes: readonly NodeSpec[]): ClusterSpec {
  const hosts = [...current.hosts];
  for (const n of nodes) if (!hosts.includes(n.host)) hosts.push(n.host);
  return { ...current, hosts, nodes: [...current.nodes, ...nodes] };
}

/** The spec after removing nodes by name; a host left without nodes leaves with them. */
export function withoutNodes(current: ClusterSpec, names: readonly string[]): ClusterSpec {
  for (const name of names) {
    if (!current.nodes.some((n) => n.name === name)) throw new ClusterInvariantError(`cluster ${current.name} has no node ${name}`);
  }
  const nodes = current.nodes.filter((n) => !names.includes(n.name));
  const used = new Set(nodes.map((n) => n.host));
  return { ...current, hosts: current.hosts.filter((h) => used.has(h)), nodes };
}

/** The spec with node `name` stopped (its service at 0 tasks): a zone move's first apply. */
export function withNodeStopped(current: ClusterSpec, name: string): ClusterSpec {
  if (!current.nodes.some((n) => n.name === name)) throw new ClusterInvariantError(`cluster ${current.name} has no node ${name}`);
  return { ...current, nodes: current.nodes.map((n) => (n.name === name ? { ...n, stopped: true } : n)) };
}

/**
 * The spec after a zone move of node `name` to host `to`: the node on `to` (which joins the cluster
 * when new), running, with the volume the move made and its size; a host left without nodes leaves.
 */
export function withNodeMoved(current: ClusterSpec, name: string, to: string, volume: MovedVolume, sizeGiB?: number): ClusterSpec {
  if (!current.nodes.some((n) => n.name === name)) throw new ClusterInvariantError(`cluster ${current.name} has no node ${name}`);
  const nodes = current.nodes.map((n) => {
    if (n.name !== name) return n;
    const { stopped: _stopped, ...rest } = n;
    return { ...rest, host: to, volume, ...(sizeGiB !== undefined ? { sizeGiB } : {}) };
  });
  const hosts = current.hosts.includes(to) ? [...current.hosts] : [...current.hosts, to];
  const used = new Set(nodes.map((n) => n.host));
  return { ...current, hosts: hosts.filter((h) => used.has(h)), nodes };
}

/**
 * `next` with each node's moved volume (NodeSpec.volume) filled in from `current` where `next`
 * leaves it out for the same node on the same host: a caller's spec need not repeat it.
 */
export function withMovedVolumes(current: ClusterSpec, next: ClusterSpec): ClusterSpec {
  const before = new Map(current.nodes.map((n) => [n.name, n]));
  return {
    ...next,
    nodes: next.nodes.map((n) => {
      const b = before.get(n.name);
      return n.volume === undefined && b?.volume !== undefined && b.host === n.host ? { ...n, volume: b.volume } : n;
    }),
  };
}
