import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { tagKeys } from '../../lib/node-contract.js';
import { roleNamePrefix } from './naming.js';

export interface SnapshotPolicyArgs {
  /** The environment whose volumes it snapshots (the regional stack's); another environment's are not its business. */
  readonly environment: pulumi.Input<string>;
  /** Snapshots kept per volume (default 14). */
  readonly retain?: number;
  /** Hours between snapshots: 1, 2, 3, 4, 6, 8, 12 or 24 (default 24). */
  readonly intervalHours?: number;
  /** UTC start time of the daily window, HH:MM (default 03:00). */
  readonly time?: string;
  readonly tags?: Readonly<Record<string, string>>;
}

export const DLM_INTERVALS = [1, 2, 3, 4, 6, 8, 12, 24] as const;

export function validateSnapshotArgs(args: Omit<SnapshotPolicyArgs, 'environment'>): void {
  if (args.retain !== undefined && (!Number.isInteger(args.retain) || args.retain < 1 || args.retain > 1000)) {
    throw new Error(`SnapshotPolicy: retain must be 1 to 1000 snapshots, not ${args.retain}`);
  }
  if (args.intervalHours !== undefined && !(DLM_INTERVALS as readonly number[]).includes(args.intervalHours)) {
    throw new Error(`SnapshotPolicy: intervalHours must be one of ${DLM_INTERVALS.join(', ')}, not ${args.intervalHours}`);
  }
  if (args.time !== undefined && !/^([01]\d|2[0-3]):[0-5]\d$/.test(args.time)) throw new Error(`SnapshotPolicy: time must be HH:MM (UTC), not ${args.time}`);
}

/**
 * What a DLM policy of `environment` targets: one tag, `<prefix>environment=<environment>`, which
 * only berth's node volumes carry (infra's, and those berth creates with BERTH_ENVIRONMENT set).
 * One tag on purpose: with several target tags DLM targets a volume that has any one of them, so
 * `managed-by=berth` beside it would snapshot every environment's volumes.
 */
export function snapshotTargetTags<E = string>(environment: E): Record<string, E> {
  return { [tagKeys().environment]: environment };
}

/** A DLM policy snapshotting every node volume of its own environment in the region. */
export class SnapshotPolicy extends pulumi.ComponentResource {
  readonly policyArn: pulumi.Output<string>;

  constructor(name: string, args: SnapshotPolicyArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:storage:SnapshotPolicy', name, {}, opts);
    validateSnapshotArgs(args);
    const retain = args.retain ?? 14;
    const interval = args.intervalHours ?? 24;
    const role = new aws.iam.Role(`${name}-dlm`, { namePrefix: roleNamePrefix(`${name}-dlm`), assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: 'dlm.amazonaws.com' }) }, { parent: this });
    new aws.iam.RolePolicyAttachment(`${name}-dlm`, {
      role: role.name, policyArn: 'arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole',
    }, { parent: this });
    const policy = new aws.dlm.LifecyclePolicy(`${name}-volumes`, {
      description: 'berth node volumes',
      executionRoleArn: role.arn,
      state: 'ENABLED',
      policyDetails: {
        resourceTypes: ['VOLUME'],
        targetTags: snapshotTargetTags(args.environment),
        schedules: [{
          // DLM ScheduleName is [0-9A-Za-z _-]+ (no commas), at most 120 characters.
          name: `every ${interval}h keep ${retain}`,
          createRule: { interval, intervalUnit: 'HOURS', times: args.time ?? '03:00' },
          retainRule: { count: retain },
          copyTags: true,
          tagsToAdd: { [tagKeys().snapshot]: 'dlm' },
        }],
      },
      tags: args.tags,
    }, { parent: this });
    this.policyArn = policy.arn;
    this.registerOutputs({ policyArn: this.policyArn });
  }
}
