import * as z from 'zod/mini';
import '../lib/zod-english.js';
import { BerthError } from '../lib/errors.js';
import { quote } from '../lib/quote.js';

/**
 * Volume options as Docker passes them (`-o key=value`, ECS `driverOpts`):
 * every value is a string. The core schema here holds the options every
 * backend shares (size, fs, mountOptions, onRemove); each backend declares
 * its own keys and their parsers (`BackendOptions`: loop.ts, ebs/ebs-options.ts),
 * and a volume's options are parsed against the core and the running
 * backend's together. Unknown keys are refused; a key of another backend is
 * refused with a sentence naming it. Keys are user input:
 * they are only ever looked up as own keys of prototype-free objects, so
 * `__proto__` or `constructor` is an unknown option like any other, and
 * every value quoted in an error is cut short (lib/quote.ts).
 */

export const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;

export function assertVolumeName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !VOLUME_NAME.test(name)) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `invalid volume name ${quote(name)}: use 1-255 characters from [a-zA-Z0-9_.-], starting with a letter or digit`,
    );
  }
}

const UNITS: Readonly<Record<string, number>> = Object.assign(Object.create(null) as Record<string, number>, {
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
});

/** Parses `10GiB`, `512MiB`, `1G`, `1073741824` into bytes. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new BerthError('INVALID_ARGUMENT', `invalid size ${quote(text)}: use a number with a unit, e.g. 10GiB or 512MiB`);
  }
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new BerthError('INVALID_ARGUMENT', `invalid size ${quote(text)}: must be a positive size`);
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

/** An option value that must be a positive whole number (backends' option parsers use it). */
export const positiveInt = (what: string) =>
  z.pipe(
    z.string().check(z.regex(/^\d+$/, `${what} must be a positive whole number`)),
    z.transform(Number).check(z.refine((n) => Number.isSafeInteger(n) && n > 0, `${what} must be a positive whole number`)),
  );

/** An option value `true` or `false`. */
export const bool = z.pipe(z.enum(['true', 'false']), z.transform((v) => v === 'true'));

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

/**
 * Mount options a volume may ask for, per filesystem: flags, or `key=value`
 * with the value's pattern. Only options that tune or restrict a mount are
 * here; anything else is refused at Create (and at Mount, for options stored
 * by an older berth or tagged on an EBS volume by hand). Every mount also gets
 * DEFAULT_MOUNT_OPTIONS, which the user's options cannot undo.
 */
type MountOptionRule = null | { pattern: RegExp; shown: string };
const value = (pattern: RegExp, shown: string): MountOptionRule => ({ pattern, shown });

const COMMON_MOUNT_OPTIONS: Record<string, MountOptionRule> = {
  noatime: null,
  nodiratime: null,
  relatime: null,
  strictatime: null,
  lazytime: null,
  nolazytime: null,
  discard: null,
  nodiscard: null,
  noexec: null,
  nosuid: null,
  nodev: null,
  sync: null,
  dirsync: null,
};
const ALLOWED_MOUNT_OPTIONS: Readonly<Record<Filesystem, ReadonlyMap<string, MountOptionRule>>> = {
  ext4: new Map(
    Object.entries({
      ...COMMON_MOUNT_OPTIONS,
      data: value(/^(ordered|journal)$/, 'ordered|journal'),
      commit: value(/^([1-9]|[1-9]\d|[12]\d\d|300)$/, '<1-300 seconds>'),
      errors: value(/^(remount-ro|continue)$/, 'remount-ro|continue'),
      journal_checksum: null,
      noauto_da_alloc: null,
    }),
  ),
  xfs: new Map(
    Object.entries({
      ...COMMON_MOUNT_OPTIONS,
      logbufs: value(/^[2-8]$/, '<2-8>'),
      logbsize: value(/^(16|32|64|128|256)k$/, '16k|32k|64k|128k|256k'),
      allocsize: value(/^\d{1,7}[kmg]$/, '<size>k|m|g'),
      largeio: null,
      nolargeio: null,
      inode64: null,
    }),
  ),
};

/** Why a mount option someone might reach for is refused; the rest are simply not on the list. */
const REFUSED_MOUNT_OPTIONS: ReadonlyMap<string, string> = new Map([
  ...['bind', 'rbind', 'move', 'rmove', 'remount', 'make-shared', 'shared', 'rshared', 'private', 'rprivate', 'slave', 'rslave', 'unbindable', 'runbindable', 'x-mount.mkdir'].map(
    (o): [string, string] => [o, 'it changes what is mounted where, not how'],
  ),
  ['suid', 'berth mounts every volume nosuid'],
  ['dev', 'berth mounts every volume nodev'],
  ['exec', 'volumes are mounted exec already; only noexec can be asked for'],
  ['ro', 'a volume is mounted read-write; mount it read-only per container (docker run -v NAME:/path:ro)'],
  ['rw', 'a volume is mounted read-write already'],
  ['user', 'it lets users mount the device'],
  ['users', 'it lets users mount the device'],
  ['owner', 'it lets users mount the device'],
  ['group', 'it lets users mount the device'],
  ['nouuid', 'berth sets it for xfs itself'],
  ['errors=panic', 'a filesystem error would crash the whole host'],
  ['nobarrier', 'a power loss could lose data written before it'],
  ['barrier=0', 'a power loss could lose data written before it'],
  ['data=writeback', 'a crash could leave old data in recently written files'],
]);

/** Options every berth mount carries, before the volume's own: no set-uid programs, no device nodes. */
export const DEFAULT_MOUNT_OPTIONS: Readonly<Record<Filesystem, readonly string[]>> = {
  ext4: ['nosuid', 'nodev'],
  xfs: ['nosuid', 'nodev', 'nouuid'],
};

function describeAllowed(fs: Filesystem): string {
  return [...ALLOWED_MOUNT_OPTIONS[fs]].map(([k, rule]) => (rule ? `${k}=${rule.shown}` : k)).join(', ');
}

/** Problems with a mountOptions value for this filesystem (or for either one, when it is not known yet). */
function mountOptionProblems(text: string, fs: Filesystem | undefined): string[] {
  const kinds = fs ? [fs] : Filesystems;
  const problems: string[] = [];
  for (const option of text.split(',')) {
    if (option === '') {
      problems.push('an empty option (two commas?)');
      continue;
    }
    const eq = option.indexOf('=');
    const key = eq < 0 ? option : option.slice(0, eq);
    const given = eq < 0 ? undefined : option.slice(eq + 1);
    const allowedFor = kinds.filter((k) => {
      const rule = ALLOWED_MOUNT_OPTIONS[k].get(key);
      return rule !== undefined && (rule === null ? given === undefined : given !== undefined && rule.pattern.test(given));
    });
    if (allowedFor.length > 0) continue;
    const why = REFUSED_MOUNT_OPTIONS.get(option) ?? REFUSED_MOUNT_OPTIONS.get(key);
    problems.push(`${quote(option, 32)} is not allowed${why ? ` (${why})` : ''}`);
  }
  if (problems.length === 0) return [];
  const allowed = kinds.map((k) => `for ${k}: ${describeAllowed(k)}`).join('; ');
  return [`mountOptions: ${problems.join(', ')}. Allowed ${allowed}. Every volume is mounted ${DEFAULT_MOUNT_OPTIONS.ext4.join(',')}`];
}

/**
 * The `-o` argument of mount(8) for a volume: the defaults, then its own
 * options, which must be on the allow-list (a refused one fails the Mount:
 * it was stored before this check, or tagged on an EBS volume by hand).
 */
export function mountOptionArgument(fs: Filesystem, mountOptions: string | undefined): string {
  if (mountOptions) {
    const problems = mountOptionProblems(mountOptions, fs);
    if (problems.length > 0) throw new BerthError('INVALID_ARGUMENT', `the volume's ${problems.join('; ')}`);
  }
  return [...DEFAULT_MOUNT_OPTIONS[fs], ...(mountOptions ? [mountOptions] : [])].join(',');
}

const MOUNT_OPTIONS_MAX = 256;

/** The options every backend takes, as given: each parser turns the string into the stored value. */
const CORE_OPTIONS = {
  size: SizeSchema,
  fs: z.enum(Filesystems),
  mountOptions: z.string().check(
    z.maxLength(MOUNT_OPTIONS_MAX, `mountOptions must be at most ${MOUNT_OPTIONS_MAX} characters`),
    z.regex(/^[a-zA-Z0-9_=,.:-]+$/, 'mountOptions must be a comma-separated list like noatime,discard'),
  ),
  onRemove: z.enum(['retain', 'delete']),
};

/** Stored values (state file, loop sidecars) of the core options, checked when read back. */
export const CORE_STORED_OPTIONS = {
  sizeBytes: z.number().check(z.int(), z.positive()),
  fs: z.enum(Filesystems),
  onRemove: z.enum(['retain', 'delete']),
  mountOptions: z.optional(z.string()),
};

/**
 * The option keys a backend takes beyond the core's: for each, the parser of
 * the given string (its output is stored under the same key) and the schema
 * of the stored value. `foreign` names the other backends whose keys this one
 * refuses with "need the … backend" rather than "unknown".
 */
export interface BackendOptions {
  /** The backend's name, as messages show it ("this agent runs the … backend"). */
  readonly backend: string;
  readonly given: Readonly<Record<string, z.ZodMiniType<unknown, string>>>;
  readonly stored: Readonly<Record<string, z.ZodMiniType>>;
  readonly foreign?: readonly BackendOptions[];
}

/** No keys beyond the core's (tests of the core alone, and a state file read before its backend is known). */
export const CORE_ONLY: BackendOptions = { backend: 'core', given: {}, stored: {} };

/** Options as given, validated; absent keys stay absent so they can be compared with stored ones. */
export type GivenOptions = Partial<{ size: number; fs: Filesystem; mountOptions: string; onRemove: 'retain' | 'delete' }> & { readonly [key: string]: unknown };

const givenSchemas = new WeakMap<BackendOptions, z.ZodMiniType<GivenOptions, unknown>>();
function givenSchemaOf(backend: BackendOptions): z.ZodMiniType<GivenOptions, unknown> {
  let schema = givenSchemas.get(backend);
  if (!schema) {
    // Another backend's keys are parsed too, so that a bad value is named as such beside "need the … backend".
    const foreign = Object.assign({}, ...(backend.foreign ?? []).map((b) => b.given)) as BackendOptions['given'];
    schema = z.partial(z.object({ ...foreign, ...CORE_OPTIONS, ...backend.given })) as unknown as z.ZodMiniType<GivenOptions, unknown>;
    givenSchemas.set(backend, schema);
  }
  return schema;
}

/** The schema of a backend's stored options: the core's and its own. */
export function storedOptionsSchema(backend: BackendOptions) {
  return z.object({ ...CORE_STORED_OPTIONS, ...backend.stored });
}

const knownKeys = (backend: BackendOptions): string[] => [...Object.keys(CORE_OPTIONS), ...Object.keys(backend.given)];

/** An option key as a message shows it: as it is when plain, else quoted and cut short. */
function optionKey(key: string): string {
  return /^[\w.-]{1,32}$/.test(key) ? key : quote(key, 32);
}

/**
 * The `Opts` of a Create as a prototype-free map of strings. Every own key
 * is kept, `__proto__` included (a plain record would drop it, or worse,
 * take it for the prototype), so that it is refused as an unknown option.
 */
export const DriverOptsSchema = z.pipe(
  z.unknown(),
  z.transform((raw: unknown, ctx): Record<string, string> => {
    const out = Object.create(null) as Record<string, string>;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      ctx.issues.push({ code: 'custom', message: `Opts must be an object of strings, got ${quote(raw)}`, input: raw });
      return z.NEVER;
    }
    let bad = 0;
    for (const key of Object.keys(raw)) {
      const value: unknown = (raw as Record<string, unknown>)[key];
      if (typeof value === 'string') out[key] = value;
      else if (++bad <= 3) ctx.issues.push({ code: 'custom', message: `must be a string, got ${quote(value, 32)}`, input: value, path: [optionKey(key)] });
    }
    if (bad > 3) ctx.issues.push({ code: 'custom', message: `and ${bad - 3} more option values that are not strings`, input: raw });
    if (bad > 0) return z.NEVER;
    return out;
  }),
);

/** A backend option's value once its backend's parser has read it. */
export type BackendOptionValue = string | number | boolean;

/**
 * A volume's resolved options: the core's, and those its backend declares
 * (Backend.options; EBS's in ebs/ebs-options.ts, typed there as
 * EbsVolumeOptions). The core never reads a backend's options: it stores,
 * compares and shows them as they are.
 */
export interface VolumeOptions {
  sizeBytes: number;
  fs: Filesystem;
  onRemove: 'retain' | 'delete';
  mountOptions?: string;
  readonly [backendOption: string]: BackendOptionValue | undefined;
}

/** What Remove does to a volume created without `-o onRemove`: keep its data (docs/design.md §4). Stated here only. */
export const ON_REMOVE_DEFAULT = 'retain' as const;

export interface OptionDefaults {
  sizeBytes: number;
  fs: Filesystem;
}

function invalidOptions(problems: string[], backend: BackendOptions): BerthError {
  return new BerthError('INVALID_ARGUMENT', `invalid volume options: ${problems.join('; ')} (known options: ${knownKeys(backend).join(', ')})`);
}

/** Validates options as given against the core schema and the running backend's keys. */
export function parseGivenOptions(raw: unknown, backend: BackendOptions = CORE_ONLY): GivenOptions {
  const opts = raw ?? {};
  if (typeof opts !== 'object' || Array.isArray(opts)) throw invalidOptions([`options must be an object of strings, got ${quote(opts)}`], backend);
  const problems: string[] = [];
  const known = new Set(knownKeys(backend));
  const foreign = new Map<string, string[]>();
  const unknown: string[] = [];
  for (const key of Object.keys(opts)) {
    if (known.has(key)) continue;
    const owner = backend.foreign?.find((b) => Object.hasOwn(b.given, key));
    if (owner) foreign.set(owner.backend, [...(foreign.get(owner.backend) ?? []), key]);
    else unknown.push(key);
  }
  for (const [owner, keys] of foreign) problems.push(`option(s) ${keys.join(', ')} need the ${owner} backend; this agent runs the ${backend.backend} backend`);
  if (unknown.length > 0) {
    const shown = unknown.slice(0, 5).map(optionKey);
    problems.push(`unknown option(s) ${shown.join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}`);
  }
  const parsed = givenSchemaOf(backend).safeParse(opts);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = issue.path.join('.');
      problems.push(key ? `${key}: ${issue.message}` : issue.message);
    }
  } else if (parsed.data.mountOptions !== undefined) {
    problems.push(...mountOptionProblems(parsed.data.mountOptions, parsed.data.fs));
  }
  if (problems.length > 0) throw invalidOptions(problems, backend);
  return parsed.data!;
}

/** Given options with defaults filled in; refuses mount options the resolved filesystem does not allow. */
export function resolveOptions(given: GivenOptions, defaults: OptionDefaults, backend: BackendOptions = CORE_ONLY): VolumeOptions {
  const { size, ...rest } = given;
  const fs = given.fs ?? defaults.fs;
  if (given.mountOptions !== undefined) {
    const problems = mountOptionProblems(given.mountOptions, fs);
    if (problems.length > 0) throw invalidOptions(problems, backend);
  }
  return { ...rest, sizeBytes: size ?? defaults.sizeBytes, fs, onRemove: given.onRemove ?? ON_REMOVE_DEFAULT } as VolumeOptions;
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
