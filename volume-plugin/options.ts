import * as z from 'zod/mini';
import '../lib/zod-english.js';
import { BerthError } from '../lib/errors.js';

/**
 * Volume options as Docker passes them (`-o key=value`, ECS `driverOpts`):
 * every value is a string. One schema validates them and turns them into
 * typed, normalized options; unknown keys are refused.
 */

export const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;

export function assertVolumeName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !VOLUME_NAME.test(name)) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `invalid volume name ${JSON.stringify(name)}: use 1-255 characters from [a-zA-Z0-9_.-], starting with a letter or digit`,
    );
  }
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 2 ** 10,
  kib: 2 ** 10,
  mi: 2 ** 20,
  mib: 2 ** 20,
  gi: 2 ** 30,
  gib: 2 ** 30,
  ti: 2 ** 40,
  tib: 2 ** 40,
};

/** Parses `10GiB`, `512MiB`, `1G`, `1073741824` into bytes. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new BerthError('INVALID_ARGUMENT', `invalid size ${JSON.stringify(text)}: use a number with a unit, e.g. 10GiB or 512MiB`);
  }
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new BerthError('INVALID_ARGUMENT', `invalid size ${JSON.stringify(text)}: must be a positive size`);
  }
  return bytes;
}

export function formatSize(bytes: number): string {
  const units = ['TiB', 'GiB', 'MiB', 'KiB'] as const;
  for (const [i, unit] of units.entries()) {
    const factor = 2 ** (40 - 10 * i);
    if (bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}`;
}

const positiveInt = (what: string) =>
  z.pipe(
    z.string().check(z.regex(/^\d+$/, `${what} must be a positive whole number`)),
    z.transform(Number).check(z.refine((n) => Number.isSafeInteger(n) && n > 0, `${what} must be a positive whole number`)),
  );

const bool = z.pipe(z.enum(['true', 'false']), z.transform((v) => v === 'true'));

export const VolumeTypes = ['gp3', 'gp2', 'io1', 'io2', 'st1', 'sc1'] as const;
export type VolumeType = (typeof VolumeTypes)[number];
export const Filesystems = ['ext4', 'xfs'] as const;
export type Filesystem = (typeof Filesystems)[number];

/** A size as text (`10GiB`, `512MiB`) turned into bytes, with parseSize's message when it is not one. */
export const SizeSchema = z.pipe(
  z.string(),
  z.transform((v: string, ctx) => {
    try {
      return parseSize(v);
    } catch (err) {
      ctx.issues.push({ code: 'custom', message: (err as Error).message, input: v });
      return z.NEVER;
    }
  }),
);

/** Options as given, validated; absent keys stay absent so they can be compared with stored ones. */
export const GivenOptionsSchema = z.partial(
  z.strictObject({
    size: SizeSchema,
    type: z.enum(VolumeTypes),
    iops: positiveInt('iops'),
    throughput: positiveInt('throughput'),
    fs: z.enum(Filesystems),
    encrypted: bool,
    kmsKeyId: z.string().check(z.minLength(1), z.maxLength(2048)),
    snapshotId: z.string().check(z.regex(/^snap-[0-9a-f]{8,17}$/, 'snapshotId must look like snap-0123456789abcdef0')),
    mountOptions: z.string().check(z.regex(/^[a-zA-Z0-9_=,.:-]+$/, 'mountOptions must be a comma-separated list like noatime,discard')),
    onRemove: z.enum(['retain', 'delete']),
  }),
);

export type GivenOptions = z.infer<typeof GivenOptionsSchema>;

export interface VolumeOptions {
  sizeBytes: number;
  fs: Filesystem;
  onRemove: 'retain' | 'delete';
  type?: VolumeType;
  iops?: number;
  throughput?: number;
  encrypted?: boolean;
  kmsKeyId?: string;
  snapshotId?: string;
  mountOptions?: string;
}

export interface OptionDefaults {
  sizeBytes: number;
  fs: Filesystem;
}

export function parseGivenOptions(raw: unknown): GivenOptions {
  const parsed = GivenOptionsSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const why = parsed.error.issues
      .map((issue) => {
        if (issue.code === 'unrecognized_keys') return `unknown option(s) ${issue.keys.join(', ')}`;
        const key = issue.path.join('.');
        return key ? `${key}: ${issue.message}` : issue.message;
      })
      .join('; ');
    throw new BerthError(
      'INVALID_ARGUMENT',
      `invalid volume options: ${why} (known options: ${Object.keys(GivenOptionsSchema.shape).join(', ')})`,
    );
  }
  return parsed.data;
}

/** Given options with defaults filled in. */
export function resolveOptions(given: GivenOptions, defaults: OptionDefaults): VolumeOptions {
  const { size, ...rest } = given;
  return { ...rest, sizeBytes: size ?? defaults.sizeBytes, fs: given.fs ?? defaults.fs, onRemove: given.onRemove ?? 'retain' };
}

/**
 * The keys a later Create gave that differ from what the volume was created
 * with. Keys it did not give are not compared: a bare Create adopts the volume.
 */
export function conflictingOptions(given: GivenOptions, stored: VolumeOptions): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(given)) {
    const storedValue = key === 'size' ? stored.sizeBytes : stored[key as keyof VolumeOptions];
    if (value !== undefined && storedValue !== value) {
      out.push(`${key} (asked ${key === 'size' ? formatSize(value as number) : String(value)}, volume has ${storedValue === undefined ? 'none' : key === 'size' ? formatSize(storedValue as number) : String(storedValue)})`);
    }
  }
  return out;
}
