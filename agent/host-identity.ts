import type { Logger } from 'pino';
import { BerthError, errorMessage } from '../lib/errors.js';
import { tagKeys } from '../lib/node-contract.js';
import { sleep } from '../lib/sleep.js';
import type { HostIdentity } from '../volume-plugin/backends/ebs/ebs-backend.js';

/**
 * Who this host is, read once at start from IMDSv2: instance id, zone and
 * region, and the logical host id that survives instance replacement.
 */

/**
 * The one method of @aws-sdk/ec2-metadata-service's MetadataService berth uses
 * (it does the IMDSv2 token dance). Paths go without a leading slash: the
 * client appends them to the endpoint's path, which is already "/".
 */
export interface MetadataReader {
  request(path: string, options: { method?: string }): Promise<string>;
}

export interface IdentityOptions {
  imds: MetadataReader;
  /** BERTH_HOST_ID: wins over every tag. */
  hostId?: string;
  tagPrefix: string;
  /** Reads the instance's tags through EC2 when IMDS does not expose them (instance metadata tags off). */
  instanceTags?: (instanceId: string, region: string) => Promise<Record<string, string>>;
  endpointHint?: string;
}

const isMissing = (err: unknown) => /\b404\b|not ?found/i.test(errorMessage(err));

async function optional(imds: MetadataReader, path: string): Promise<string | undefined> {
  try {
    return (await imds.request(path, {})).trim() || undefined;
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

export async function discoverIdentity(o: IdentityOptions): Promise<HostIdentity> {
  let instanceId: string;
  let az: string;
  let region: string;
  try {
    [instanceId, az, region] = await Promise.all(
      ['instance-id', 'placement/availability-zone', 'placement/region'].map(async (p) => (await o.imds.request(`latest/meta-data/${p}`, {})).trim()),
    ) as [string, string, string];
  } catch (err) {
    throw new BerthError(
      'UNAVAILABLE',
      `cannot read this instance's identity from the instance metadata service (IMDSv2${o.endpointHint ? ` at ${o.endpointHint}` : ''}): ${errorMessage(err)}. On EC2, check that metadata is enabled (http-endpoint) and, for berth in a container, that the hop limit is at least 2`,
      { cause: err },
    );
  }
  const hostTag = tagKeys(o.tagPrefix).host;
  let hostId = o.hostId;
  hostId ??= await optional(o.imds, `latest/meta-data/tags/instance/${hostTag}`);
  hostId ??= await optional(o.imds, 'latest/meta-data/tags/instance/aws:autoscaling:groupName');
  if (!hostId && o.instanceTags) {
    const tags = await o.instanceTags(instanceId, region);
    hostId = tags[hostTag] ?? tags['aws:autoscaling:groupName'];
  }
  if (!hostId) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `cannot tell which logical host ${instanceId} is: set BERTH_HOST_ID, tag the instance ${hostTag}=<host id>, or run it in an Auto Scaling group`,
    );
  }
  return { instanceId, az, region, hostId };
}

/**
 * Instance credentials can lag the instance's boot by many seconds: wait for
 * them with backoff, saying so in the log, up to a bound.
 */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: Clock = { now: () => Date.now(), sleep };

export async function waitForCredentials(
  resolve: () => Promise<unknown>,
  maxWaitMs: number,
  logger?: Logger,
  clock: Clock = realClock,
): Promise<void> {
  const deadline = clock.now() + maxWaitMs;
  let delay = 500;
  for (let attempt = 1; ; attempt++) {
    try {
      await resolve();
      if (attempt > 1) logger?.info({ attempts: attempt }, 'instance credentials available');
      return;
    } catch (err) {
      if (clock.now() + delay > deadline) {
        throw new BerthError('UNAVAILABLE', `no AWS credentials after waiting ${Math.round(maxWaitMs / 1000)} s: ${errorMessage(err)}. Check the instance profile`, { cause: err });
      }
      logger?.info({ attempt, retryInMs: delay, err: errorMessage(err) }, 'waiting for instance credentials');
      await clock.sleep(delay);
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

/**
 * The instance's type and how many network interfaces it has now (IMDS `instance-type` and
 * `network/interfaces/macs/`, one `<mac>/` line per interface: EC2 User Guide, "Instance
 * metadata categories"). Interfaces take attachment slots on shared-limit types (docs/design.md §6).
 */
export async function instanceType(imds: MetadataReader): Promise<string> {
  return (await imds.request('latest/meta-data/instance-type', {})).trim();
}

export async function networkInterfaceCount(imds: MetadataReader): Promise<number> {
  const macs = (await imds.request('latest/meta-data/network/interfaces/macs/', {})).split('\n').filter((l) => l.trim() !== '');
  return Math.max(1, macs.length);
}
