/**
 * The Traefik routes of a node as ECS Docker labels (docs/traefik-labels.md),
 * and the parser that reads them back. infra builds a node's labels with
 * nodeRouterLabels; tests check those and the documented example task
 * definition with routerProblems, so both follow one set of rules.
 */
import { tagKeys } from './node-contract.js';

/** Entry points of the regional Traefik (traefik/traefik.yml) that route to nodes, and what kind of router each takes. */
export const NODE_ENTRY_POINTS = {
  'http-api': { kind: 'http', suffix: 'api' },
  websocket: { kind: 'http', suffix: 'ws' },
  tcp: { kind: 'tcp', suffix: 'tcp' },
} as const;

export type NodeEntryPoint = keyof typeof NODE_ENTRY_POINTS;

/** Container port per entry point. */
export type NodeRoutes = Partial<Record<NodeEntryPoint, number>>;

/** A Go regular expression (Traefik v3 rules) matching exactly this host name. */
export function exactHostPattern(host: string): string {
  return `^${host.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
}

/** The Docker label that says which environment a node's container belongs to (the contract's tag key). */
export const environmentLabel = (): string => tagKeys().environment;

/**
 * The ECS provider constraint of an environment's Traefik (traefik/traefik.yml, filled in by
 * traefik/entrypoint.sh): only containers labelled with this environment are routed. Traefik's
 * `Label(key, value)` matches a label of exactly that key and value (traefik
 * pkg/provider/constraints/constraints_labels.go).
 */
export function environmentConstraint(environment: string): string {
  return `Label(\`${environmentLabel()}\`, \`${environment}\`)`;
}

/**
 * Labels routing `host` to the node's container ports: one router per entry
 * point, each with TLS on (the TLS store's default certificate) and its own
 * service naming the container port, and the environment label the
 * environment's Traefik is constrained to. `id` names routers and services and
 * must be unique in the account (`nodeQualifiedId`): Traefik discovers every
 * cluster's tasks.
 */
export function nodeRouterLabels(id: string, host: string, routes: NodeRoutes, environment: string): Record<string, string> {
  const labels: Record<string, string> = { 'traefik.enable': 'true', [environmentLabel()]: environment };
  for (const [entryPoint, port] of Object.entries(routes) as Array<[NodeEntryPoint, number | undefined]>) {
    const spec = NODE_ENTRY_POINTS[entryPoint];
    if (!spec) throw new Error(`unknown Traefik entry point ${JSON.stringify(entryPoint)} (known: ${Object.keys(NODE_ENTRY_POINTS).join(', ')})`);
    if (port === undefined) continue;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`route ${entryPoint}: port must be 1-65535, not ${String(port)}`);
    const name = `${id}-${spec.suffix}`;
    const router = `traefik.${spec.kind}.routers.${name}`;
    const match = spec.kind === 'tcp' ? 'HostSNIRegexp' : 'HostRegexp';
    labels[`${router}.rule`] = `${match}(\`${exactHostPattern(host)}\`)`;
    labels[`${router}.entrypoints`] = entryPoint;
    labels[`${router}.tls`] = 'true';
    labels[`${router}.service`] = name;
    labels[`traefik.${spec.kind}.services.${name}.loadbalancer.server.port`] = String(port);
  }
  return labels;
}

export interface ParsedRouter {
  kind: 'http' | 'tcp';
  name: string;
  rule?: string;
  /** Matcher and its one argument, when the rule is a single host matcher. */
  matcher?: { fn: string; arg: string };
  entrypoints: string[];
  tls?: string;
  service?: string;
  /** The service's container port. */
  port?: string;
}

/** Reads the routers (and their services' ports) out of a container's Docker labels. */
export function parseRouterLabels(labels: Record<string, string>): ParsedRouter[] {
  const routers = new Map<string, ParsedRouter>();
  const ports = new Map<string, string>();
  for (const [key, value] of Object.entries(labels)) {
    const r = /^traefik\.(http|tcp)\.routers\.([^.]+)\.(.+)$/.exec(key);
    if (r) {
      const kind = r[1] as 'http' | 'tcp';
      const id = `${kind}/${r[2]!}`;
      const router = routers.get(id) ?? { kind, name: r[2]!, entrypoints: [] };
      routers.set(id, router);
      if (r[3] === 'rule') {
        router.rule = value;
        const m = /^(\w+)\(`([^`]*)`\)$/.exec(value.trim());
        if (m) router.matcher = { fn: m[1]!, arg: m[2]! };
      } else if (r[3] === 'entrypoints') router.entrypoints = value.split(',').map((s) => s.trim()).filter(Boolean);
      else if (r[3] === 'tls') router.tls = value;
      else if (r[3] === 'service') router.service = value;
      continue;
    }
    const s = /^traefik\.(http|tcp)\.services\.([^.]+)\.loadbalancer\.server\.port$/.exec(key);
    if (s) ports.set(`${s[1]!}/${s[2]!}`, value);
  }
  for (const router of routers.values()) {
    const port = ports.get(`${router.kind}/${router.service ?? router.name}`);
    if (port !== undefined) router.port = port;
  }
  return [...routers.values()];
}

const MATCHERS = { http: ['Host', 'HostRegexp'], tcp: ['HostSNI', 'HostSNIRegexp'] } as const;

/** Whether a parsed router's rule matches this host name (Host/HostSNI exactly, the Regexp forms as Go-compatible regexps). */
export function routerMatches(router: ParsedRouter, host: string): boolean {
  if (!router.matcher) return false;
  const { fn, arg } = router.matcher;
  return fn.endsWith('Regexp') ? new RegExp(arg).test(host) : arg.toLowerCase() === host.toLowerCase();
}

/**
 * What is wrong with a node's labels, as sentences (empty when nothing is):
 * opt-in, v3 host rules of the right kind per router, exactly one known entry
 * point each, TLS on, a service with a port, and at most one router per entry point.
 */
export function routerProblems(labels: Record<string, string>, entryPoints: readonly string[] = Object.keys(NODE_ENTRY_POINTS)): string[] {
  const out: string[] = [];
  if (labels['traefik.enable'] !== 'true') out.push('traefik.enable is not "true" (the ECS provider has exposedByDefault: false)');
  if (!labels[environmentLabel()]) out.push(`no ${environmentLabel()} label (Traefik routes only containers of its own environment)`);
  const routers = parseRouterLabels(labels);
  if (routers.length === 0) out.push('no routers');
  const seen = new Map<string, string>();
  for (const r of routers) {
    const what = `${r.kind} router ${r.name}`;
    if (!r.rule) out.push(`${what} has no rule`);
    else if (!r.matcher || !(MATCHERS[r.kind] as readonly string[]).includes(r.matcher.fn)) {
      out.push(`${what}: rule ${r.rule} must be one of ${MATCHERS[r.kind].join(', ')} with one backquoted argument`);
    } else if (/\{\w+:/.test(r.matcher.arg)) out.push(`${what}: rule ${r.rule} uses a v2 {name:regex} placeholder`);
    else if (r.matcher.fn.endsWith('Regexp') && !/^\^.*\$$/.test(r.matcher.arg)) out.push(`${what}: rule ${r.rule} is not anchored with ^…$`);
    if (r.entrypoints.length !== 1) out.push(`${what} must name exactly one entry point, not ${JSON.stringify(r.entrypoints)}`);
    for (const ep of r.entrypoints) {
      if (!entryPoints.includes(ep)) out.push(`${what}: unknown entry point ${ep}`);
      const expected = (NODE_ENTRY_POINTS as Record<string, { kind: string } | undefined>)[ep]?.kind;
      if (expected && expected !== r.kind) out.push(`${what} is on entry point ${ep}, which takes ${expected} routers`);
      const other = seen.get(ep);
      if (other) out.push(`${what} and ${other} share entry point ${ep}`);
      seen.set(ep, what);
    }
    if (r.tls !== 'true') out.push(`${what} does not set tls=true`);
    if (!r.service) out.push(`${what} names no service`);
    if (!r.port || !/^\d+$/.test(r.port)) out.push(`${what}: its service has no loadbalancer.server.port`);
  }
  return out;
}
