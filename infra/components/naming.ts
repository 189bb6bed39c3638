import { createHash } from 'node:crypto';

/**
 * Physical names of what berth declares. Two rules: a name fits AWS's limits whatever the
 * logical name it comes from (a 63-character host id included), and no fixed name stops a
 * second environment in the same account and region (names carry the environment).
 */

/** An environment's name (`berth:environment`, default the global stack's name): the contract's one rule. */
export { validateEnvironment } from '../../lib/node-contract.js';

/**
 * ECS cluster names of an environment start with one of these: `<environment>-unit-` (one per
 * berth cluster) and `<environment>-traefik-` (one per region). The environment name rule keeps
 * them apart between environments; the agent-update job and its IAM policy are scoped by them.
 */
export function environmentEcsClusterPrefixes(environment: string): { unit: string; traefik: string } {
  return { unit: `${environment}-unit-`, traefik: `${environment}-traefik-` };
}

/** ECS cluster name of a berth cluster; `unit` keeps unit clusters apart from the regional Traefik one. */
export const unitEcsClusterName = (environment: string, cluster: string) => `${environmentEcsClusterPrefixes(environment).unit}${cluster}`;

/** ECS cluster name of a region's Traefik host (also its task family and log group `/<name>`). */
export const traefikEcsClusterName = (environment: string, region: string) => `${environmentEcsClusterPrefixes(environment).traefik}${region}`;

const hash = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);

/** `name` if it is at most `max` characters, else its head and a hash of the whole (still unique, still readable). */
export function fitName(name: string, max: number): string {
  if (name.length <= max) return name;
  return `${name.slice(0, max - 9)}-${hash(name, 8)}`;
}

/**
 * AWS adds 26 characters to a `namePrefix` (IAM roles: at most 38 characters of prefix, 64 in all);
 * Pulumi's own auto-name adds 8 to the logical name, which overflows for long host ids.
 */
export const ROLE_NAME_PREFIX_MAX = 38;

/** The `namePrefix` of an IAM role declared as `logical`: always within IAM's 64-character RoleName. */
export function roleNamePrefix(logical: string): string {
  return `${fitName(logical, ROLE_NAME_PREFIX_MAX - 1)}-`;
}
