/**
 * The names of a region's Traefik host. Pure (no Pulumi import), so the cluster API's
 * invariants can refuse a cluster or host that would take one of them.
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
