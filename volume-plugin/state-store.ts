import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import * as z from 'zod/mini';
import '../lib/zod-english.js';
import { writeFileAtomic } from '../lib/atomic-file.js';
import { BerthError, errorMessage } from '../lib/errors.js';
import type { VolumeRecord } from './backends/backend.js';
import { CORE_ONLY, storedOptionsSchema, type BackendOptions } from './options.js';

/** A map with no prototype: names such as `constructor` or `__proto__` are keys like any other. */
export type Dict<V> = Record<string, V>;

export function dict<V>(entries: Iterable<readonly [string, V]> = []): Dict<V> {
  const out = Object.create(null) as Dict<V>;
  for (const [k, v] of entries) out[k] = v;
  return out;
}

/** What survives an agent restart: records and who has each volume mounted. */
export interface PersistedVolume {
  record: VolumeRecord;
  /** Docker mount ID → number of Mount calls not yet matched by an Unmount. A prototype-free map. */
  mounts: Dict<number>;
  mounted: boolean;
  devicePath?: string;
  lastError?: string;
  /**
   * Found mounted at start without a record of who uses it (state file lost):
   * the references are unknown but may be live; the engine or the next Unmount resolves them.
   */
  unknownRefs?: boolean;
  /** Set before mkfs runs, cleared once it completed: a device with this mark was never in use and may be formatted again. */
  formatting?: boolean;
  /** Mounted with no reference in the unmount grace (unmount-grace.ts); a start finding it unmounts the volume. */
  unmountPending?: boolean;
}

/** References counted for the volume (Mount calls not yet matched by an Unmount). */
export function refCount(v: PersistedVolume): number {
  return Object.values(v.mounts).reduce((a, b) => a + b, 0);
}

/** Held by someone: a counted reference, or unknown ones found after a rebuild. */
export function held(v: PersistedVolume): boolean {
  return refCount(v) > 0 || v.unknownRefs === true;
}

export interface PersistedState {
  version: 1;
  /** Volume name → volume. A prototype-free map. */
  volumes: Dict<PersistedVolume>;
}

export function emptyState(): PersistedState {
  return { version: 1, volumes: dict() };
}

const plainObject = z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'must be a JSON object');

/** A state file entry; its record's options are the core's and the running backend's (options.ts). */
const volumeSchemaOf = (backend: BackendOptions) => z.object({
  record: z.object({
    name: z.string().check(z.minLength(1)),
    id: z.string().check(z.minLength(1)),
    options: storedOptionsSchema(backend),
    createdAt: z.string(),
    status: plainObject,
  }),
  mounts: plainObject,
  mounted: z.boolean(),
  devicePath: z.optional(z.string()),
  lastError: z.optional(z.string()),
  unknownRefs: z.optional(z.boolean()),
  formatting: z.optional(z.boolean()),
  unmountPending: z.optional(z.boolean()),
});

const StateSchema = z.object({ version: z.literal(1), volumes: plainObject });

const refCountSchema = z.number().check(z.int(), z.positive());

/**
 * Validates a parsed state file entry by entry. Maps are read through their
 * own keys into prototype-free maps (a `__proto__` key stays a key). Throws
 * with the first problem found.
 */
export function parseState(raw: unknown, backend: BackendOptions = CORE_ONLY): PersistedState {
  const top = StateSchema.safeParse(raw);
  if (!top.success) throw new Error(describe(top.error));
  const volumes = dict<PersistedVolume>();
  const VolumeSchema = volumeSchemaOf(backend);
  for (const [name, entry] of Object.entries(top.data.volumes)) {
    const parsed = VolumeSchema.safeParse(entry);
    if (!parsed.success) throw new Error(`volume ${JSON.stringify(name)}: ${describe(parsed.error)}`);
    const v = parsed.data;
    if (v.record.name !== name) throw new Error(`volume ${JSON.stringify(name)}: its record is named ${JSON.stringify(v.record.name)}`);
    const mounts = dict<number>();
    for (const [id, count] of Object.entries(v.mounts)) {
      if (!refCountSchema.safeParse(count).success) throw new Error(`volume ${JSON.stringify(name)}: mount ${JSON.stringify(id)} has count ${JSON.stringify(count)}`);
      mounts[id] = count as number;
    }
    if (!v.mounted && Object.keys(mounts).length > 0) throw new Error(`volume ${JSON.stringify(name)}: container mounts recorded but not mounted`);
    const status = dict<string>(Object.entries(v.record.status).filter((kv): kv is [string, string] => typeof kv[1] === 'string'));
    volumes[name] = {
      ...v,
      record: { ...v.record, options: stripUndefined(v.record.options), status },
      mounts,
    } as PersistedVolume;
  }
  return { version: 1, volumes };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function describe(error: z.core.$ZodError): string {
  return error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
}

/**
 * The state file, replaced atomically on every change. A missing file starts
 * empty; one that cannot be read or does not match the schema (corrupt, the
 * wrong shape, a directory) is kept aside as state.json.corrupt-<time> and the
 * caller rebuilds from the backend and mountinfo. Loading never throws for the
 * file's content: a bad file must not stop the agent (a restart loop).
 *
 * Saves coalesce: saves asked for while a write is under way share the next
 * write (it starts after they asked, so it holds each one's change). A boot
 * reconcile mounting 50 volumes at once writes and fsyncs a few times, not 50
 * times side by side; one save at a time, alone, writes exactly once.
 */
export class StateStore {
  readonly path: string;
  private writing: Promise<void> | undefined;
  private nextWrite: Promise<void> | undefined;

  constructor(
    stateDir: string,
    private readonly logger?: Logger,
    /** Whose options the records hold: the running backend's. */
    private readonly backendOptions: BackendOptions = CORE_ONLY,
    /** Called before every write (a test seam for crash points; production passes none). */
    private readonly beforeWrite?: () => void,
  ) {
    this.path = join(stateDir, 'state.json');
  }

  async load(): Promise<{ state: PersistedState; rebuilt: boolean }> {
    let problem: string;
    try {
      return { state: parseState(JSON.parse(await readFile(this.path, 'utf8')), this.backendOptions), rebuilt: false };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.logger?.warn({ path: this.path }, 'no state file; rebuilding from the backend and mountinfo');
        return { state: emptyState(), rebuilt: true };
      }
      problem = errorMessage(err);
    }
    const aside = `${this.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(this.path, aside);
    this.logger?.warn({ path: this.path, aside, err: problem.slice(0, 500) }, 'state file is unusable; kept aside, rebuilding from the backend and mountinfo');
    return { state: emptyState(), rebuilt: true };
  }

  /**
   * Records `state` (as it is when the write starts), sharing a write with
   * saves asked for meanwhile. A failure is a BerthError whose sentence ends
   * with `done`: what happened anyway, when the write follows a step that
   * cannot be undone.
   */
  async save(state: PersistedState, done = 'nothing was changed'): Promise<void> {
    try {
      await this.sharedWrite(state);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new BerthError(code === 'ENOSPC' || code === 'EDQUOT' ? 'UNAVAILABLE' : 'INTERNAL', `could not record the change in ${this.path} (${code ?? errorMessage(err)}); ${done}`, { cause: err });
    }
  }

  /** One write of the file, alone: write, fsync, rename, fsync the directory. */
  async write(state: PersistedState): Promise<void> {
    await writeFileAtomic(this.path, JSON.stringify(state), 0o600);
  }

  private sharedWrite(state: PersistedState): Promise<void> {
    if (this.nextWrite) return this.nextWrite;
    const next = (this.writing ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => {
        this.nextWrite = undefined;
        this.writing = next;
        this.beforeWrite?.();
        return this.write(state);
      })
      .finally(() => {
        if (this.writing === next) this.writing = undefined;
      });
    this.nextWrite = next;
    return next;
  }
}
