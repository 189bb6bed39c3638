/**
 * Where the account's EC2 schedule lives in S3 (docs/design.md §6, "Sharing the account"): one
 * object per Region under a prefix of the environment bucket. The agent (agent/config.ts,
 * agent/backend-factory.ts) and the host role (infra/components/host-policy.ts) both name it from
 * here, so the object berth writes is the object the role may write.
 */

/** `BERTH_EC2_SCHEDULE_PREFIX`'s default. */
export const DEFAULT_EC2_SCHEDULE_PREFIX = 'ec2-schedule/';

/** EC2's token buckets are per account and Region, so the schedule is too: `<prefix><region>.json`. */
export function ec2ScheduleKey(prefix: string, region: string): string {
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) throw new Error(`EC2 schedule: "${region}" is not an AWS Region name`);
  return `${prefix}${region}.json`;
}

/** The object of the store's one-time self-check (does the store honour conditional writes?). */
export function ec2ScheduleCheckKey(key: string): string {
  return `${key}.check`;
}
