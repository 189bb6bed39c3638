import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';

/** The config namespace of every berth program: `berth:<key>`. */
export const config = () => new pulumi.Config('berth');

/** A config key as the CLI and the Automation API name it (`berth:<key>`): config, not a tag. */
export const configKey = (key: string): string => `berth:${key}`;

/** The region the stack deploys to (`aws:region`). */
export const stackRegion = (): string => new pulumi.Config('aws').require('region');

export const accountId = (): pulumi.Output<string> => aws.getCallerIdentityOutput().accountId;

/** `berth:availabilityZones` when set (pin them: subnets never move), else the region's available zones in name order. */
export function availabilityZones(): pulumi.Input<readonly string[]> {
  const pinned = config().getObject<string[]>('availabilityZones');
  if (pinned) return pinned;
  return aws.getAvailabilityZonesOutput({ state: 'available', filters: [{ name: 'opt-in-status', values: ['opt-in-not-required'] }] })
    .names.apply((n) => [...n].sort());
}

/** Reads a string list from config, refusing anything else with the key named. */
export function stringList(key: string, required: true): string[];
export function stringList(key: string, required: false): string[] | undefined;
export function stringList(key: string, required: boolean): string[] | undefined {
  const c = config();
  const v = required ? c.requireObject<unknown>(key) : c.getObject<unknown>(key);
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string' && x.length > 0)) {
    throw new Error(`config berth:${key} must be a non-empty list of strings, e.g. ["a","b"]`);
  }
  return v as string[];
}

/** The outputs of another stack, typed by the caller. */
export function stackOutput<T>(ref: pulumi.StackReference, name: string): pulumi.Output<T> {
  return ref.requireOutput(name) as pulumi.Output<T>;
}
