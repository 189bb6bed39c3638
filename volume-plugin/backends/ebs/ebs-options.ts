import type { Volume, VolumeType as Ec2VolumeType } from '@aws-sdk/client-ec2';
import * as z from 'zod/mini';
import '../../../lib/zod-english.js';
import { BerthError } from '../../../lib/errors.js';
import { bool, Filesystems, formatSize, ON_REMOVE_DEFAULT, positiveInt, type BackendOptions, type OptionDefaults, type VolumeOptions } from '../../options.js';

/**
 * EBS rules for volume options (EC2 User Guide, "Amazon EBS volume types"),
 * checked before anything is created, and the `<prefix>options` tag that
 * stores the options a volume was created with.
 */

const GiB = 2 ** 30;

export const VolumeTypes = ['gp3', 'gp2', 'io1', 'io2', 'st1', 'sc1'] as const;
export type VolumeType = (typeof VolumeTypes)[number];

/** A volume's options on the EBS backend: the core's (options.ts) and EBS's own (EBS_OPTIONS below). */
export interface EbsVolumeOptions extends VolumeOptions {
  type?: VolumeType;
  iops?: number;
  throughput?: number;
  encrypted?: boolean;
  kmsKeyId?: string;
  snapshotId?: string;
}

/**
 * The EBS view of a volume's options. Every value under EBS's keys came through EBS_OPTIONS:
 * a given one through its parser, a stored one (state file) through its schema, one read back
 * from EC2 through optionsOf; so the narrowing holds.
 */
export const ebsOptions = (o: VolumeOptions): EbsVolumeOptions => o as EbsVolumeOptions;

/**
 * The options only EBS takes (`-o type=io2 -o iops=4000`), beside the core
 * ones (options.ts): each given value's parser, and the stored value's schema.
 * The numbers' limits per type are checked by validateEbsOptions once the
 * options are resolved.
 */
export const EBS_OPTIONS: BackendOptions = {
  backend: 'ebs',
  given: {
    type: z.enum(VolumeTypes),
    iops: positiveInt('iops'),
    throughput: positiveInt('throughput'),
    encrypted: bool,
    kmsKeyId: z.string().check(z.minLength(1), z.maxLength(2048)),
    snapshotId: z.string().check(z.regex(/^snap-[0-9a-f]{8,17}$/, 'snapshotId must look like snap-0123456789abcdef0')),
  },
  stored: {
    type: z.optional(z.enum(VolumeTypes)),
    iops: z.optional(z.number()),
    throughput: z.optional(z.number()),
    encrypted: z.optional(z.boolean()),
    kmsKeyId: z.optional(z.string()),
    snapshotId: z.optional(z.string()),
  },
};

interface TypeLimits {
  minGiB: number;
  maxGiB: number;
  /** maxPerGiB: provisioned IOPS per GiB of size. */
  iops?: { min: number; max: number; default?: number; maxPerGiB: number };
  throughput?: { min: number; max: number; default: number };
}

// Sizes, IOPS and throughput: the EC2 API reference's CreateVolume (botocore 1.43's ec2 model,
// read 2026-12-06): gp3 1–65,536 GiB, 3,000–80,000 IOPS, 125–2,000 MiB/s; io2 4–65,536 GiB.
export const EBS_LIMITS: Record<VolumeType, TypeLimits> = {
  gp3: { minGiB: 1, maxGiB: 65_536, iops: { min: 3_000, max: 80_000, default: 3_000, maxPerGiB: 500 }, throughput: { min: 125, max: 2_000, default: 125 } },
  gp2: { minGiB: 1, maxGiB: 16_384 },
  io1: { minGiB: 4, maxGiB: 16_384, iops: { min: 100, max: 64_000, maxPerGiB: 50 } },
  io2: { minGiB: 4, maxGiB: 65_536, iops: { min: 100, max: 256_000, maxPerGiB: 1_000 } },
  st1: { minGiB: 125, maxGiB: 16_384 },
  sc1: { minGiB: 125, maxGiB: 16_384 },
};

export const DEFAULT_TYPE: VolumeType = 'gp3';

/** Tag values hold at most 256 characters. */
const TAG_VALUE_MAX = 256;

export function validateEbsOptions(name: string, options: VolumeOptions): void {
  const o = ebsOptions(options);
  const type = o.type ?? DEFAULT_TYPE;
  const limits = EBS_LIMITS[type];
  const bad = (why: string) => new BerthError('INVALID_ARGUMENT', `volume ${name}: ${why}`);
  if (o.sizeBytes % GiB !== 0) throw bad(`size ${formatSize(o.sizeBytes)} is not a whole number of GiB, which EBS needs (e.g. ${Math.ceil(o.sizeBytes / GiB)}GiB)`);
  const gib = o.sizeBytes / GiB;
  if (gib < limits.minGiB || gib > limits.maxGiB) throw bad(`size ${gib}GiB is outside ${limits.minGiB}–${limits.maxGiB} GiB for ${type}`);
  if (o.iops !== undefined) {
    if (!limits.iops) throw bad(`iops cannot be set for ${type} (only gp3, io1, io2)`);
    if (o.iops < limits.iops.min || o.iops > limits.iops.max) throw bad(`iops ${o.iops} is outside ${limits.iops.min}–${limits.iops.max} for ${type}`);
    const allowed = gib * limits.iops.maxPerGiB;
    if (o.iops > allowed && o.iops > (limits.iops.default ?? 0)) {
      throw bad(`iops ${o.iops} is more than ${limits.iops.maxPerGiB} per GiB for ${type} (${gib}GiB allows ${allowed}); make the volume larger or ask for fewer IOPS`);
    }
  } else if (limits.iops && limits.iops.default === undefined) {
    throw bad(`${type} needs -o iops=<${limits.iops.min}–${limits.iops.max}>`);
  }
  if (o.throughput !== undefined) {
    if (!limits.throughput) throw bad(`throughput cannot be set for ${type} (only gp3)`);
    if (o.throughput < limits.throughput.min || o.throughput > limits.throughput.max) {
      throw bad(`throughput ${o.throughput} MiB/s is outside ${limits.throughput.min}–${limits.throughput.max} for ${type}`);
    }
    // gp3: at most 0.25 MiB/s per provisioned IOPS.
    const iops = o.iops ?? limits.iops?.default ?? 0;
    if (o.throughput > iops / 4) throw bad(`throughput ${o.throughput} MiB/s is more than 0.25 MiB/s per provisioned IOPS (${iops} IOPS allow ${iops / 4}); ask for more IOPS`);
  }
  if (o.encrypted === false && o.kmsKeyId) throw bad('kmsKeyId needs encryption; drop encrypted=false');
  if (tagValueOf(o).length > TAG_VALUE_MAX) throw bad(`options are too long to store in an EBS tag (${TAG_VALUE_MAX} characters); shorten mountOptions`);
}

/** The options as a compact tag value; kmsKeyId is left out when it does not fit (EC2 keeps it on the volume). */
export function tagValueOf(options: VolumeOptions): string {
  const o = ebsOptions(options);
  const full = JSON.stringify(o);
  if (full.length <= TAG_VALUE_MAX || !o.kmsKeyId) return full;
  const { kmsKeyId: _dropped, ...rest } = o;
  return JSON.stringify(rest);
}

/**
 * The options of an existing volume, as resolved values: the stored tag for what only berth
 * knows (fs, mountOptions, onRemove, the kmsKeyId text it was given), and what EC2 says of the
 * volume for the rest (size, type, IOPS, throughput, encryption), so that a later Create naming
 * a value the volume has (`type=gp3`, `encrypted=true`, a type's default IOPS) is no conflict.
 * Volumes created outside berth (e.g. by infra/) get the agent's defaults for berth's part.
 */
export function optionsOf(volume: Volume, storedTag: string | undefined, defaults: OptionDefaults): EbsVolumeOptions {
  let stored: EbsVolumeOptions | undefined;
  if (storedTag) {
    try {
      const parsed = JSON.parse(storedTag) as EbsVolumeOptions;
      if (typeof parsed.sizeBytes === 'number' && (Filesystems as readonly string[]).includes(parsed.fs)) stored = parsed;
    } catch {
      // fall through: a damaged tag must not make the volume unusable
    }
  }
  const base: EbsVolumeOptions = stored ?? { sizeBytes: 0, fs: defaults.fs, onRemove: ON_REMOVE_DEFAULT };
  const type = (VolumeTypes as readonly string[]).includes(volume.VolumeType ?? '') ? (volume.VolumeType as VolumeType) : base.type;
  const limits = type ? EBS_LIMITS[type] : undefined;
  const out: EbsVolumeOptions = {
    ...base,
    ...(volume.Size !== undefined ? { sizeBytes: volume.Size * GiB } : {}),
    ...(type ? { type } : {}),
    ...(volume.Encrypted !== undefined ? { encrypted: volume.Encrypted } : {}),
    ...(volume.SnapshotId ? { snapshotId: volume.SnapshotId } : {}),
  };
  // EC2 reports IOPS for every type, but only gp3/io1/io2 take them as an option (throughput: gp3).
  if (limits?.iops && volume.Iops !== undefined) out.iops = volume.Iops;
  else if (!limits?.iops) delete out.iops;
  if (limits?.throughput && volume.Throughput !== undefined) out.throughput = volume.Throughput;
  else if (!limits?.throughput) delete out.throughput;
  if (out.encrypted && !out.kmsKeyId && volume.KmsKeyId) out.kmsKeyId = volume.KmsKeyId;
  if (out.encrypted === false) delete out.kmsKeyId;
  return out;
}

/** CreateVolume parameters for these options; encrypted unless asked otherwise. */
export function createParamsOf(options: VolumeOptions): {
  Size: number;
  VolumeType: Ec2VolumeType;
  Iops?: number;
  Throughput?: number;
  Encrypted: boolean;
  KmsKeyId?: string;
  SnapshotId?: string;
} {
  const o = ebsOptions(options);
  return {
    Size: o.sizeBytes / GiB,
    VolumeType: o.type ?? DEFAULT_TYPE,
    ...(o.iops !== undefined ? { Iops: o.iops } : {}),
    ...(o.throughput !== undefined ? { Throughput: o.throughput } : {}),
    Encrypted: o.encrypted ?? true,
    ...(o.kmsKeyId ? { KmsKeyId: o.kmsKeyId } : {}),
    ...(o.snapshotId ? { SnapshotId: o.snapshotId } : {}),
  };
}
