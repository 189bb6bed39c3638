/**
 * The names of a region's Traefik host and the network mode of its Traefik task. Pure (no
 * Pulumi import), so the cluster API's invariants can refuse a cluster or host that would take
 * one of the names, and a system test can run a container the way the task runs.
 */

/** The logical host id of a region's Traefik host; the Traefik service is pinned to it. */
export const traefikHostId = (region: string) => `traefik-${region}`;

/** An AWS region name: `eu-west-1`, `us-gov-west-1`, `ap-southeast-2`. */
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d+$/;

/**
 * Whether `name` is, or would be once its region is added, a Traefik host's id. The regional
 * stack uses it as a host id, an ECS attribute value, the `berth:cluster` and `berth:host` tags of
 * the Traefik instance, and the DNS record `traefik-<region>.<zone>`; a cluster or host of that
 * name would share all of them.
 */
export function isTraefikHostId(name: string): boolean {
  const prefix = traefikHostId('');
  return name.startsWith(prefix) && REGION.test(name.slice(prefix.length));
}

/**
 * The Traefik task's network mode. `bridge`, not `host`: IMDS answers with IP TTL = the instance's
 * hop limit (1, single-instance-group.ts), and a reply the host must forward into a container's
 * network namespace dies at that hop, so a bridge-mode container cannot get an IMDSv2 token and
 * never sees the instance role's credentials; in `host` mode the container is the host and IMDS
 * answers it (EC2 User Guide, "Use IMDSv2": hop limit; ECS Developer Guide, "Task IAM role":
 * bridge-mode tasks get their role from 169.254.170.2, which ecs-init routes to the agent).
 * Traefik's entry points are published one to one on the host's ports. docs/deploy.md, "Traefik
 * and the instance role".
 */
export const TRAEFIK_NETWORK_MODE = 'bridge';
