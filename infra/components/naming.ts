import { createHash } from 'node:crypto';

/**
 * Physical names of what berth declares. Two rules: a name fits AWS's limits whatever the
 * logical name it comes from (a 63-character host id included), and no fixed name stops a
 * second environment in the same account and region (names carry the environment).
 */

/** An environment's name (`berth:environment`, default the global stack's name): it prefixes repositories, aliases, log groups and clusters. */
export function validateEnvironment(env: string): string {
  if (!/^[a-z][a-z0-9-]{0,19}$/.test(env) || env.endsWith('-')) {
    throw new Error(`environment "${env}" must be 1-20 lowercase letters, digits or "-", starting with a letter (it prefixes ECR repositories, KMS aliases and log groups)`);
  }
  return env;
}

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
