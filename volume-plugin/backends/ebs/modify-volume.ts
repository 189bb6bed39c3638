import type { ModifyVolumeCommandInput, Volume, VolumeModification } from '@aws-sdk/client-ec2';
import { BerthError, errorMessage } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import type { VolumeOptions } from '../../options.js';
import { formatSize } from '../../options.js';
import { codeOf, ec2Error } from './ec2-errors.js';
import type { Ec2Port } from './ec2-port.js';
import { DEFAULT_TYPE, ebsOptions, validateEbsOptions, type EbsVolumeOptions } from './ebs-options.js';

/**
 * EBS Elastic Volumes for `berth resize` (docs/design.md §6 "Online grow"):
 * EBS's rules, each checked before EC2 is called, then ModifyVolume and the
 * wait for the modification to reach `optimizing`.
 *
 * Rules, as read on 2026-12-06:
 * - ModifyVolume, EC2 API reference: "After you initiate a volume modification, you must wait for that
 *   modification to reach the completed state before you can initiate another modification for the same
 *   volume. You can modify a volume up to four times within a rolling 24-hour period, as long as the
 *   volume is in the in-use or available state, and all previous modifications for that volume are
 *   complete." (Until 2025 the rule was one modification, then a six-hour cooldown; the SDK docs of older
 *   versions still say so.) So one open modification (not `completed` or `failed`) blocks the next,
 *   `optimizing` included, and a fifth within 24 hours of the first of four is refused.
 * - "The target volume size must be greater than or equal to the existing size": grow only.
 * - Per type (size, IOPS range and IOPS:GiB ratio, throughput range and throughput:IOPS): the same table
 *   a Create is checked against, `EBS_LIMITS` in ebs-options.ts (one source), applied to the options the
 *   volume would have after the change.
 * - The new size is usable once the modification is `optimizing` (EBS User Guide, "Monitor the progress
 *   of volume modifications": "the volume's new size is available as soon as it enters the optimizing
 *   state"; aws-ebs-csi-driver's ResizeOrModifyDisk waits for `optimizing` or `completed` likewise).
 */

/** Modifications per volume in a rolling 24 hours (ModifyVolume, API reference, read 2026-12-06). */
export const MODIFICATIONS_PER_DAY = 4;
const DAY_MS = 24 * 3600_000;
const GiB = 2 ** 30;

/** EC2 answers this for a volume that was never modified (aws-ebs-csi-driver, pkg/cloud: isAWSErrorModificationNotFound). */
const NO_MODIFICATION = 'InvalidVolumeModification.NotFound';

/** Modifications still under way: another waits until these are `completed` (or `failed`). */
const isOpen = (m: VolumeModification) => m.ModificationState !== 'completed' && m.ModificationState !== 'failed';

/** The ModifyVolume parameters that change `current` into `options`, after EBS's per-type rules; refuses what they forbid. */
export function modificationOf(name: string, volume: Volume, current: VolumeOptions, options: VolumeOptions): ModifyVolumeCommandInput {
  const was = ebsOptions(current);
  const want = ebsOptions(options);
  if (want.sizeBytes < was.sizeBytes) {
    throw new BerthError('INVALID_ARGUMENT', `volume ${name} is ${formatSize(was.sizeBytes)}; EBS volumes only grow, not shrink to ${formatSize(want.sizeBytes)}. Nothing was changed`);
  }
  const fixed = (['fs', 'mountOptions', 'onRemove', 'encrypted', 'kmsKeyId', 'snapshotId'] as const).filter((k) => want[k] !== was[k]);
  if (fixed.length > 0) throw new BerthError('INVALID_ARGUMENT', `volume ${name}: ${fixed.join(', ')} cannot change in place; only size, type, iops and throughput can`);
  // A new type starts from its own defaults: the old type's IOPS or throughput does not carry over unless asked.
  const typeChanges = (want.type ?? DEFAULT_TYPE) !== (was.type ?? DEFAULT_TYPE);
  const t: EbsVolumeOptions = { ...want };
  if (typeChanges && want.iops === was.iops) delete t.iops;
  if (typeChanges && want.throughput === was.throughput) delete t.throughput;
  validateEbsOptions(name, t);
  const input: ModifyVolumeCommandInput = { VolumeId: volume.VolumeId! };
  if (t.sizeBytes !== was.sizeBytes) input.Size = t.sizeBytes / GiB;
  if (typeChanges) input.VolumeType = t.type!;
  if (t.iops !== undefined && t.iops !== was.iops) input.Iops = t.iops;
  if (t.throughput !== undefined && t.throughput !== was.throughput) input.Throughput = t.throughput;
  if (Object.keys(input).length === 1) throw new BerthError('INVALID_ARGUMENT', `volume ${name} already has the size, type, iops and throughput asked for; nothing to change`);
  return input;
}

/** The volume's modifications, oldest first; none for a volume never modified. */
async function modificationsOf(port: Ec2Port, volumeId: string, signal: AbortSignal): Promise<VolumeModification[]> {
  try {
    const out = await port.describeVolumesModifications({ VolumeIds: [volumeId] }, signal);
    return [...(out.VolumesModifications ?? [])].sort((a, b) => (a.StartTime?.getTime() ?? 0) - (b.StartTime?.getTime() ?? 0));
  } catch (err) {
    if (codeOf(err) === NO_MODIFICATION) return [];
    throw ec2Error(err, `reading the modifications of ${volumeId}`);
  }
}

/** Refuses, before ModifyVolume is sent, what EBS's rate rules would refuse. */
export function assertModifiable(name: string, volumeId: string, history: readonly VolumeModification[], now: number): void {
  const open = history.find(isOpen);
  if (open) {
    throw new BerthError(
      'CONFLICT',
      `volume ${name} (${volumeId}) is still being modified (started ${open.StartTime?.toISOString() ?? '?'}, ${open.ModificationState}, ${open.Progress ?? 0}%); EBS takes the next change only once it is completed. Nothing was changed`,
    );
  }
  const recent = history.filter((m) => (m.StartTime?.getTime() ?? 0) > now - DAY_MS);
  if (recent.length >= MODIFICATIONS_PER_DAY) {
    const next = new Date(recent[recent.length - MODIFICATIONS_PER_DAY]!.StartTime!.getTime() + DAY_MS);
    throw new BerthError(
      'LIMIT_EXCEEDED',
      `volume ${name} (${volumeId}) was modified ${recent.length} times in the last 24 hours, EBS's limit is ${MODIFICATIONS_PER_DAY}; try again after ${next.toISOString()}. Nothing was changed`,
    );
  }
}

export interface ModifyOutcome {
  state: 'optimizing' | 'modifying';
  detail: string;
}

/**
 * Checks the rules, sends ModifyVolume and waits up to `waitMs` (and the signal) for `optimizing`.
 * `modifying` when the wait ran out: the change goes on at EC2, and the agent's online grow check grows
 * the filesystem once the device shows the new size.
 */
export async function modifyEbsVolume(
  port: Ec2Port,
  args: { name: string; volume: Volume; current: VolumeOptions; options: VolumeOptions; signal: AbortSignal; waitMs: number; pollMs?: number; now?: () => number },
): Promise<ModifyOutcome> {
  const { name, volume, signal } = args;
  const volumeId = volume.VolumeId!;
  const input = modificationOf(name, volume, args.current, args.options);
  assertModifiable(name, volumeId, await modificationsOf(port, volumeId, signal), (args.now ?? Date.now)());
  const started = await port.modifyVolume(input, signal).catch((err: unknown) => {
    throw ec2Error(err, `modifying ${volumeId}`);
  });
  const startedAt = started.VolumeModification?.StartTime?.getTime();
  const deadline = Date.now() + args.waitMs;
  for (;;) {
    const mine = (await modificationsOf(port, volumeId, signal).catch(() => [])).find((m) => m.StartTime?.getTime() === startedAt) ?? started.VolumeModification;
    const state = mine?.ModificationState;
    if (state === 'failed') throw new BerthError('INTERNAL', `EBS reports the modification of ${volumeId} failed: ${mine?.StatusMessage ?? 'no reason given'}`);
    if (state === 'optimizing' || state === 'completed') return { state: 'optimizing', detail: `${volumeId} ${state} (${mine?.Progress ?? 0}%); the new size is usable` };
    if (Date.now() >= deadline) return { state: 'modifying', detail: `${volumeId} modifying (${mine?.Progress ?? 0}%)` };
    await sleep(args.pollMs ?? 1_000, signal).catch((err: unknown) => {
      throw new BerthError('TIMEOUT', `stopped waiting for ${volumeId}'s modification: ${errorMessage(err)}; it goes on at EC2 and the agent grows the filesystem when the device grows`);
    });
  }
}
