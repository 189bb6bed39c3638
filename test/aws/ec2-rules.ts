import type { Tag, VolumeType } from '@aws-sdk/client-ec2';
import { invalidParameter, missingParameter, parameterCombination } from './ec2-errors.js';

// EC2's validation rules for volumes, tags, ids and device names, as the model enforces them.

export const ID_PATTERN = {
  vol: /^vol-[0-9a-f]{17}$/,
  i: /^i-[0-9a-f]{17}$/,
  snap: /^snap-[0-9a-f]{17}$/,
};

export const DEVICE_PATTERN = /^\/dev\/(?:sd[a-z]{1,2}\d*|xvd[a-z]{1,2})$/;
export const MAX_TAGS = 50;

// CreateVolume's valid sizes, IOPS and throughput (botocore 1.43's ec2 model, read 2026-12-06).
export const SIZE_LIMITS: Record<VolumeType, { min: number; max: number }> = {
  gp2: { min: 1, max: 16384 },
  gp3: { min: 1, max: 65536 },
  io1: { min: 4, max: 16384 },
  io2: { min: 4, max: 65536 },
  st1: { min: 125, max: 16384 },
  sc1: { min: 125, max: 16384 },
  standard: { min: 1, max: 1024 },
};

/** IOPS range and the most IOPS per GiB, for types that take Iops. */
const IOPS_LIMITS: Partial<Record<VolumeType, { min: number; max: number; perGiB: number }>> = {
  gp3: { min: 3000, max: 80000, perGiB: 500 },
  io1: { min: 100, max: 64000, perGiB: 50 },
  io2: { min: 100, max: 256000, perGiB: 1000 },
};

/** Checks size, Iops and Throughput for a type like EC2 and fills in the type's defaults. */
export function checkVolumeConfig(type: string, size: number, iops: number | undefined, throughput: number | undefined): { iops?: number; throughput?: number } {
  const sizeLimit = SIZE_LIMITS[type as VolumeType];
  if (!sizeLimit) throw invalidParameter(`Value (${type}) for parameter volumeType is invalid.`);
  if (!Number.isInteger(size) || size < sizeLimit.min) {
    throw invalidParameter(`Volume of ${size}GiB is too small; minimum is ${sizeLimit.min}GiB for ${type}.`);
  }
  if (size > sizeLimit.max) throw invalidParameter(`Volume of ${size}GiB is too large; maximum is ${sizeLimit.max}GiB for ${type}.`);
  const iopsLimit = IOPS_LIMITS[type as VolumeType];
  if (iops !== undefined && !iopsLimit) throw parameterCombination(`The parameter iops is not supported for ${type} volumes.`);
  if (throughput !== undefined && type !== 'gp3') throw parameterCombination(`The parameter throughput is not supported for ${type} volumes.`);
  if (type === 'io1' || type === 'io2') {
    if (iops === undefined) throw missingParameter(`The parameter iops must be specified for ${type} volumes.`);
  }
  if (type === 'gp2') return { iops: Math.min(16000, Math.max(100, 3 * size)) };
  if (!iopsLimit) return {};
  const chosen = iops ?? iopsLimit.min;
  if (!Number.isInteger(chosen) || chosen < iopsLimit.min || chosen > iopsLimit.max) {
    throw invalidParameter(`Value (${chosen}) for parameter iops is invalid. Expected a value between ${iopsLimit.min} and ${iopsLimit.max} for ${type}.`);
  }
  if (chosen > Math.max(iopsLimit.min, iopsLimit.perGiB * size)) {
    throw invalidParameter(`Iops to volume size ratio of ${(chosen / size).toFixed(1)} is too high; maximum is ${iopsLimit.perGiB}.`);
  }
  if (type !== 'gp3') return { iops: chosen };
  const chosenThroughput = throughput ?? 125;
  if (!Number.isInteger(chosenThroughput) || chosenThroughput < 125 || chosenThroughput > 2000) {
    throw invalidParameter(`Value (${chosenThroughput}) for parameter throughput is invalid. Expected a value between 125 and 2000.`);
  }
  if (chosenThroughput > 125 && chosenThroughput > chosen / 4) {
    throw invalidParameter(`Throughput (MiBps) to iops ratio of ${(chosenThroughput / chosen).toFixed(3)} is too high; maximum is 0.25 MiBps per iops.`);
  }
  return { iops: chosen, throughput: chosenThroughput };
}

/** Validates tags like EC2 (key 1-128 characters, not aws:, value up to 256) and returns them as a map. */
export function checkTags(tags: readonly Tag[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const tag of tags) {
    const key = tag.Key ?? '';
    if (key.length < 1 || key.length > 128) throw invalidParameter(`Tag key must be between 1 and 128 characters: '${key}'`);
    if (key.toLowerCase().startsWith('aws:')) throw invalidParameter("Tag keys starting with 'aws:' are reserved for internal use");
    const value = tag.Value ?? '';
    if (value.length > 256) throw invalidParameter(`Tag value for key '${key}' must be at most 256 characters`);
    out.set(key, value);
  }
  return out;
}
