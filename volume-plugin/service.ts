import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { BerthError, errorMessage } from '../lib/errors.js';
import { quote } from '../lib/quote.js';
import type { Backend, ResizeResult, VolumeRecord } from './backends/backend.js';
import { DEADLINES, UNKNOWN_REFERENCE_RECHECK_MS, type CallKind } from './budgets.js';
import type { CallOptions, Scope } from './call.js';
import { EngineCheck, seenReferences, type EngineReferences, type SeenReferences } from './engine-check.js';
import type { FilesystemOps } from './fs/types.js';
import { mountsIn, type HostPaths, type MountLayout } from './host-paths.js';
import { KeyedLock } from './keyed-lock.js';
import {
  assertVolumeName,
  conflictingOptions,
  formatSize,
  parseGivenOptions,
  resolveOptions,
  type OptionDefaults,
  type VolumeOptions,
} from './options.js';
import { OnlineGrow, type GrowFacts } from './online-grow.js';
import { recoverAtStart } from './recovery.js';
import { registerVolumeGauges } from './service-metrics.js';
import { dict, held, refCount, StateStore, type PersistedState, type PersistedVolume } from './state-store.js';
import { UnmountGrace } from './unmount-grace.js';
import { ViewChanges, type ViewListener } from './view-changes.js';

export { DEADLINES };
export type { EngineReferences };

export interface ServiceDeps {
  backend: Backend;
  fs: FilesystemOps;
  /** The state file lives in stateDir; volumes are mounted under mountsDir unless `layout` says otherwise. */
  paths: Pick<HostPaths, 'stateDir' | 'mountsDir'>;
  /** Where each volume is mounted; default `<mountsDir>/<name>`. */
  layout?: MountLayout;
  defaults: OptionDefaults;
  logger: Logger;
  registry?: Registry;
  /** Who really holds volumes: the container engine. Without it, references are only what Mount and Unmount say. */
  engine?: EngineReferences;
  /** Per-call deadlines; default dockerd's (budgets.ts DEADLINES). */
  deadlines?: Partial<typeof DEADLINES>;
  /** Called before every state file write (a test seam for crash points; production passes none). */
  beforeStateWrite?: () => void;
  /** How long a volume stays mounted after its last Unmount (unmount-grace.ts); default 0: unmounted at once. */
  unmountGraceMs?: number;
}

/**
 * One volume as berth sees it, in berth's own terms: what every front end
 * (Docker's protocol, a CSI server, /status) turns into its own answer.
 */
export interface VolumeView {
  name: string;
  /** The backend's identity of the volume (loop: image path; ebs: vol-…). */
  id: string;
  options: VolumeOptions;
  /** RFC 3339. */
  createdAt: string;
  mounted: boolean;
  /** Where the volume is mounted on this host (or would be, while it is not). */
  mountpoint: string;
  /** The block device, while mounted. */
  device?: string;
  /** Consumers (Docker mount IDs, …) counted as using it now. */
  consumers: number;
  /** Mounted with no consumer, in the unmount grace (unmount-grace.ts). */
  unmountPending?: boolean;
  lastError?: string;
  /** While mounted: the device's size as last read, and the last online grow (online-grow.ts). */
  size?: GrowFacts;
  /** The backend's facts for people (docker volume inspect's Status); never decided on. */
  status: Readonly<Record<string, string>>;
}

/** The local view of one volume, for /status, the CLI and readiness. */
export interface VolumeStatus {
  name: string;
  id: string;
  mountpoint: string;
  mounted: boolean;
  refs: number;
  devicePath?: string;
  lastError?: string;
  /** Mounted with no reference, in the unmount grace (unmount-grace.ts). */
  unmountPending?: boolean;
  /** While mounted: the device's size as last read, and the last online grow (online-grow.ts). */
  size?: GrowFacts;
}

/** What `resize` did: the backend's answer and whether the mounted filesystem was grown already. */
export interface ResizeOutcome {
  name: string;
  /** The volume's size now asked for (bytes). */
  sizeBytes: number;
  state: ResizeResult['state'];
  detail?: string;
  mounted: boolean;
  /** The mounted filesystem was grown to the new size within this call. */
  grown: boolean;
}

/** A consumer id as stored in the state file: Docker's mount IDs are 64 hex digits; a CSI front end would derive one from its target path. */
export const CONSUMER_ID = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * The volumes of this host over a Backend and real filesystem operations,
 * in no protocol's terms (docs/design.md §2): create, remove, publish and
 * unpublish for a consumer id, ensure mounted, release, describe and list.
 * The agent builds it once and hands it to its front ends (docker-driver.ts
 * maps Docker's protocol onto it); a front end that keeps answers between
 * changes subscribes to its change notifications (view-changes.ts).
 * Names and consumer ids are validated here, at the core's boundary.
 * Every change on one name is serialized by the per-name lock; describe,
 * names and list answer from the local view and never wait on a lock or the
 * backend.
 *
 * Its concerns live in modules of their own: recovery at start (recovery.ts),
 * the engine reference check (engine-check.ts), the state file and its
 * coalesced writes (state-store.ts), metrics (service-metrics.ts), the unmount
 * grace (unmount-grace.ts), the time budgets (budgets.ts).
 */
export class VolumeService {
  private readonly store: StateStore;
  /** Tells subscribers when work on a name starts and ends (the lock reports to it), and when the whole view resets. */
  private readonly changes = new ViewChanges();
  /** Every change of a volume's view runs under its lock, or is followed by changes.reset(). */
  private readonly lock = new KeyedLock(this.changes);
  private readonly layout: MountLayout;
  private state: PersistedState = { version: 1, volumes: dict() };
  private readonly deadlines: typeof DEADLINES;
  private readonly log: Logger;
  private started = false;
  private readonly grace: UnmountGrace;
  private readonly engine: EngineCheck;
  private readonly growth: OnlineGrow;

  constructor(private readonly deps: ServiceDeps) {
    this.log = deps.logger;
    this.store = new StateStore(deps.paths.stateDir, deps.logger, deps.backend.options, deps.beforeStateWrite);
    this.layout = deps.layout ?? mountsIn(deps.paths.mountsDir);
    this.deadlines = { ...DEADLINES, ...deps.deadlines };
    this.engine = new EngineCheck(deps.engine, deps.logger);
    this.grace = new UnmountGrace(deps.unmountGraceMs ?? 0, {
      lock: this.lock,
      volume: (name) => this.state.volumes[name],
      held,
      unmountNow: (name, vol) => this.unmountLocked(name, vol, 'release'),
      sync: (name) => this.deps.fs.sync(this.mountpointOf(name)),
      save: () => this.save(),
      log: deps.logger,
    });
    const { backend } = deps;
    this.growth = new OnlineGrow(
      {
        lock: this.lock,
        volume: (name) => (Object.hasOwn(this.state.volumes, name) ? this.state.volumes[name] : undefined),
        volumes: () => Object.entries(this.state.volumes),
        mountpointOf: (name) => this.mountpointOf(name),
        fs: deps.fs,
        ...(backend.verifyDevice ? { verifyDevice: (record: VolumeRecord, devicePath: string) => backend.verifyDevice!(record, devicePath) } : {}),
        save: () => this.save(),
        log: deps.logger,
      },
      deps.registry,
    );
    if (deps.registry) registerVolumeGauges(deps.registry, () => Object.values(this.state.volumes));
  }

  /** Adds a listener to the view's change notifications (a front end's answer cache); returns the function that removes it. */
  subscribe(listener: ViewListener): () => void {
    return this.changes.subscribe(listener);
  }

  get isStarted(): boolean {
    return this.started;
  }

  get scope(): Scope {
    return this.deps.backend.scope;
  }

  mountpointOf(name: string): string {
    return this.layout.mountpointOf(name);
  }

  /** Loads the state file and recovers it against the backend and mountinfo (recovery.ts), then records the result. */
  async start(): Promise<void> {
    await mkdir(this.deps.paths.stateDir, { recursive: true, mode: 0o700 });
    const { state, rebuilt } = await this.store.load();
    this.state = state;
    await recoverAtStart(state, rebuilt, { backend: this.deps.backend, fs: this.deps.fs, mountpointOf: (name) => this.mountpointOf(name), log: this.log });
    this.changes.reset();
    // A full state disk must not stop the agent: the view is in memory, and each change tries the write again.
    await this.save().catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'could not write the state file at start'));
    this.started = true;
  }

  async create(name: string, opts: Record<string, string>, call: CallOptions = {}): Promise<void> {
    assertVolumeName(name);
    const given = parseGivenOptions(opts, this.deps.backend.options);
    const refuseConflicts = (existing: VolumeRecord) => {
      const conflicts = conflictingOptions(given, existing.options);
      if (conflicts.length > 0) {
        throw new BerthError('CONFLICT', `volume ${name} already exists with other options: ${conflicts.join('; ')}. Use other options only with a new name`);
      }
    };
    await this.withDeadline('create', `Create ${name}`, call, (signal) =>
      this.lock.run(
        name,
        async () => {
          const known = this.state.volumes[name];
          if (known) return refuseConflicts(known.record);
          const found = await this.deps.backend.find(name);
          if (found) {
            refuseConflicts(found);
            this.state.volumes[name] = { record: found, mounts: dict(), mounted: false };
            return;
          }
          const options = resolveOptions(given, this.deps.defaults, this.deps.backend.options);
          this.deps.backend.validate(name, options);
          let existed: 'live' | 'retained' | undefined;
          const record = await this.deps.backend.create(name, options, {
            signal,
            accept: (existing, retained) => {
              refuseConflicts(existing);
              existed = retained ? 'retained' : 'live';
            },
          });
          this.state.volumes[name] = { record, mounts: dict(), mounted: false };
          try {
            signal.throwIfAborted();
            await this.save();
          } catch (err) {
            delete this.state.volumes[name];
            await this.undoCreate(record, existed);
            throw err;
          }
          this.log.info({ name, id: record.id, size: formatSize(record.options.sizeBytes), fs: record.options.fs, existed }, 'volume created');
        },
        signal,
      ),
    );
  }

  /** A Create that failed after the backend made (or adopted) the volume: put the backend back as it was. */
  private async undoCreate(record: VolumeRecord, existed: 'live' | 'retained' | undefined): Promise<void> {
    if (existed === 'live') return;
    const onRemove = existed === 'retained' ? 'retain' : 'delete';
    await this.deps.backend.remove({ ...record, options: { ...record.options, onRemove } }).then(
      () => this.log.warn({ name: record.name, onRemove }, 'create failed after the backend acted; undone'),
      (err: unknown) => this.log.error({ name: record.name, err: errorMessage(err) }, 'create failed and could not be undone'),
    );
  }

  async remove(name: string, call: CallOptions = {}): Promise<void> {
    assertVolumeName(name);
    await this.withDeadline('other', `Remove ${name}`, call, (signal) =>
      this.lock.run(
        name,
        async () => {
          const vol = await this.known(name);
          if (refCount(vol) > 0 && this.engine.configured) await this.dropUnheldLocked(name, vol, await this.engine.inUse(signal), 'before Remove');
          const refs = refCount(vol);
          if (refs > 0) {
            throw new BerthError('CONFLICT', `volume ${name} is in use by ${refs} container mount(s); stop them first`);
          }
          await this.unmountLocked(name, vol, 'keep');
          delete vol.unknownRefs;
          await this.deps.backend.remove(vol.record, { signal }).catch((err: unknown) => {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err;
            throw new BerthError('UNAVAILABLE', `volume ${name}: no space left under ${this.deps.paths.stateDir} to remove it (${code}); it is kept as it was`, { cause: err });
          });
          await this.deps.fs.removeMountpoint(this.mountpointOf(name));
          delete this.state.volumes[name];
          await this.save();
          this.log.info({ name, onRemove: vol.record.options.onRemove }, 'volume removed');
        },
        signal,
      ),
    );
  }

  /**
   * Makes the volume mounted and counts one reference for the consumer;
   * returns the mountpoint. A consumer may publish more than once (each needs
   * its own unpublish). Past the deadline nothing is counted and the mount is undone.
   */
  async publish(name: string, consumer: string, call: CallOptions = {}): Promise<string> {
    assertVolumeName(name);
    if (!CONSUMER_ID.test(consumer)) throw new BerthError('INVALID_ARGUMENT', `invalid mount ID ${quote(consumer)}`);
    const id = consumer;
    return this.withDeadline('mount', `Mount ${name}`, call, (signal) =>
      this.lock.run(
        name,
        async () => {
          const vol = await this.known(name);
          const mountpoint = await this.mountLocked(name, vol, signal);
          vol.mounts[id] = (Object.hasOwn(vol.mounts, id) ? vol.mounts[id]! : 0) + 1;
          try {
            // A caller that has gone (dockerd gave up) will never Unmount: count nothing for it.
            signal.throwIfAborted();
            await this.save();
          } catch (err) {
            this.dropRef(vol, id);
            if (!held(vol)) {
              await this.unmountLocked(name, vol, 'release').catch((e: unknown) => this.log.error({ name, err: errorMessage(e) }, 'undoing a Mount: unmount failed'));
            }
            await this.save().catch(() => undefined);
            this.log.error({ name, id, err: errorMessage(err) }, 'mount undone');
            throw err;
          }
          this.log.info({ name, id, refs: refCount(vol) }, 'mounted for a container');
          return mountpoint;
        },
        signal,
      ),
    );
  }

  /** Drops one reference of the consumer; the last one unmounts and releases the volume (after the unmount grace). An unknown consumer is success. */
  async unpublish(name: string, consumer: string, call: CallOptions = {}): Promise<void> {
    assertVolumeName(name);
    const id = consumer;
    await this.withDeadline('other', `Unmount ${name}`, call, (signal) =>
      this.lock.run(
        name,
        async () => {
          const vol = this.state.volumes[name];
          if (vol && !Object.hasOwn(vol.mounts, id) && vol.unknownRefs && vol.mounted) {
            // References unknown since a rebuild: this is one of them. The engine says whether others remain;
            // without it, the first Unmount is taken as the last (docs/operations.md, "References after a crash").
            await this.resolveUnknownLocked(name, vol, signal);
            return;
          }
          if (!vol || !Object.hasOwn(vol.mounts, id)) {
            this.log.info({ name, id: quote(id) }, 'unmount for an unknown mount ID; nothing to do');
            return;
          }
          this.dropRef(vol, id);
          const last = !held(vol);
          if (last) await this.grace.lastUnmount(name, vol);
          // Done all the same (dockerd never sends this Unmount again): say so, not "nothing was changed".
          const outcome = !last ? 'released by this container' : vol.unmountPending ? 'released (its unmount grace runs)' : 'unmounted';
          await this.save(`volume ${name} is ${outcome} all the same; the file catches up with the next change that has room`);
        },
        signal,
      ),
    );
  }

  private async resolveUnknownLocked(name: string, vol: PersistedVolume, signal: AbortSignal): Promise<void> {
    if (this.engine.configured) {
      const inUse = await this.engine.inUse(signal);
      if (inUse?.has(name)) {
        // The caller may itself still show as running while dockerd stops it: look again shortly.
        this.log.info({ name }, 'unmount for a reference unknown since a rebuild; the engine still lists a container using it');
        setTimeout(() => void this.reconcileReferences('after an unmount of an unknown reference'), UNKNOWN_REFERENCE_RECHECK_MS).unref();
        return;
      }
    }
    delete vol.unknownRefs;
    if (refCount(vol) === 0) await this.unmountLocked(name, vol, 'release');
    await this.save();
    this.log.info({ name }, 'unmount for a reference unknown since a rebuild; no other user known, unmounted');
  }

  /**
   * Drops the references of volumes that no container holds according to the
   * engine (engine-check.ts), and unmounts what is then unused. Without an
   * engine, or when it does not answer, nothing changes.
   */
  async reconcileReferences(reason: string, call: CallOptions = {}): Promise<void> {
    if (!this.engine.configured) return;
    const candidates = Object.entries(this.state.volumes).filter(([, v]) => held(v));
    if (candidates.length === 0) return;
    // What was held before asking: a Mount that completes meanwhile is not dropped.
    const before = new Map(candidates.map(([name, v]) => [name, seenReferences(v)]));
    const inUse = await this.withDeadline('other', 'reconcile references', call, (signal) => this.engine.inUse(signal));
    if (!inUse) return;
    for (const [name, seen] of before) {
      if (inUse.has(name)) continue;
      await this.lock
        .run(name, async () => {
          const vol = this.state.volumes[name];
          if (vol) await this.dropUnheldLocked(name, vol, inUse, reason, seen);
        })
        .catch((err: unknown) => this.log.error({ name, err: errorMessage(err) }, 'could not drop references no container holds'));
    }
  }

  private async dropUnheldLocked(name: string, vol: PersistedVolume, inUse: ReadonlySet<string> | undefined, reason: string, seen?: SeenReferences): Promise<void> {
    if (!this.engine.drop(name, vol, inUse, reason, seen)) return;
    if (!held(vol) && vol.mounted) {
      await this.unmountLocked(name, vol, 'release').catch((err: unknown) => this.log.error({ name, err: errorMessage(err) }, 'could not unmount a volume no container holds'));
    }
    await this.save();
  }

  /** The volume from the local view alone; undefined when the name is not in it. Never waits. */
  describe(name: string): VolumeView | undefined {
    const vol = Object.hasOwn(this.state.volumes, name) ? this.state.volumes[name] : undefined;
    return vol && this.viewOf(name, vol);
  }

  /** describe() for a caller's name: refuses a name that is not a volume name. */
  lookup(name: string): VolumeView | undefined {
    assertVolumeName(name);
    return this.describe(name);
  }

  /** Names in the local view. */
  names(): string[] {
    return Object.keys(this.state.volumes);
  }

  /** The volume from the local view, else from the backend; fails only when the backend says it does not exist. */
  async find(name: string): Promise<VolumeView> {
    assertVolumeName(name);
    const local = this.describe(name);
    if (local) return local;
    const record = await this.deps.backend.find(name);
    if (!record) throw new BerthError('NOT_FOUND', `no volume named ${name}`);
    return this.viewOf(name, { record, mounts: dict(), mounted: false });
  }

  /** Every volume in the local view. */
  list(): VolumeView[] {
    return Object.entries(this.state.volumes).map(([name, vol]) => this.viewOf(name, vol));
  }

  /** Attach and mount with no container reference (boot reconcile). */
  async ensureMounted(name: string): Promise<string> {
    assertVolumeName(name);
    return this.lock.run(name, () =>
      // A Mount's deadline from when the work starts (after the lock); the reason says whose deadline it was.
      this.withDeadline('mount', `mounting ${name} for the reconciler`, {}, async (signal) => {
        const vol = await this.known(name);
        const mountpoint = await this.mountLocked(name, vol, signal);
        await this.save();
        return mountpoint;
      }),
    );
  }

  /** Unmount and detach a volume no container uses; false when one does. */
  async releaseIfUnused(name: string, reason: string): Promise<boolean> {
    assertVolumeName(name);
    return this.lock.run(name, async () => {
      const vol = this.state.volumes[name];
      if (!vol) return true;
      if (held(vol)) {
        this.log.warn({ name, reason, refs: refCount(vol) }, 'not releasing a volume containers still use');
        return false;
      }
      await this.unmountLocked(name, vol, 'detach');
      await this.save();
      this.log.info({ name, reason }, 'volume released');
      return true;
    });
  }

  /** Re-reads the backend's volumes into the local view; `records`: as the caller just listed them (one list per reconcile pass). */
  async refresh(records?: readonly VolumeRecord[]): Promise<void> {
    records ??= await this.deps.backend.list();
    const listed = new Set(records.map((r) => r.name));
    for (const record of records) {
      const vol = this.state.volumes[record.name];
      if (vol) vol.record = record;
      else this.state.volumes[record.name] = { record, mounts: dict(), mounted: false };
    }
    for (const [name, vol] of Object.entries(this.state.volumes)) {
      if (listed.has(name) || vol.mounted) continue;
      // Under the name's lock: a Mount under way of a name the list does not show (claiming a stray) keeps its entry.
      await this.lock.run(name, async () => {
        if (!this.state.volumes[name]?.mounted) delete this.state.volumes[name];
      });
    }
    this.changes.reset();
    await this.save();
  }

  snapshot(): VolumeStatus[] {
    return Object.entries(this.state.volumes).map(([name, vol]) => ({
      name,
      id: vol.record.id,
      mountpoint: this.mountpointOf(name),
      mounted: vol.mounted,
      refs: refCount(vol),
      ...(vol.unmountPending ? { unmountPending: true } : {}),
      ...(vol.devicePath ? { devicePath: vol.devicePath } : {}),
      ...(vol.lastError ? { lastError: vol.lastError } : {}),
      ...this.sizeOf(name, vol),
    }));
  }

  private sizeOf(name: string, vol: PersistedVolume): { size?: GrowFacts } {
    const size = vol.mounted ? this.growth.factsOf(name) : undefined;
    return size ? { size } : {};
  }

  /**
   * One online grow pass (online-grow.ts): every mounted volume whose device
   * grew since the last pass gets its filesystem grown in place, under its
   * lock. The agent runs it on a timer; it never rejects.
   */
  async growMounted(): Promise<void> {
    await this.growth.check();
  }

  /**
   * Makes the volume larger (and/or changes the backend's own options, e.g.
   * EBS type, IOPS, throughput) in place, under its lock: `change` holds
   * `size` and backend keys as strings, parsed like a Create's options. Grow
   * only; the core's other keys (fs, mountOptions, onRemove) are refused; the
   * backend refuses what its rules forbid, before it changes anything. A
   * mounted volume whose device has its new size by the end is grown online
   * at once; otherwise the online grow check does it when the device grows.
   */
  async resize(name: string, change: Record<string, string>, call: CallOptions = {}): Promise<ResizeOutcome> {
    assertVolumeName(name);
    const given = parseGivenOptions(change, this.deps.backend.options);
    const fixed = (['fs', 'mountOptions', 'onRemove'] as const).filter((k) => given[k] !== undefined);
    if (fixed.length > 0) throw new BerthError('INVALID_ARGUMENT', `resize changes the size and the backend's own options only, not ${fixed.join(', ')}`);
    if (Object.keys(given).length === 0) throw new BerthError('INVALID_ARGUMENT', `resize ${name}: give a new size (or a backend option to change)`);
    return this.withDeadline('create', `Resize ${name}`, call, (signal) =>
      this.lock.run(
        name,
        async () => {
          const vol = await this.known(name);
          const { backend } = this.deps;
          if (!backend.resize) throw new BerthError('INVALID_ARGUMENT', `the ${backend.options.backend} backend cannot resize a volume`);
          const current = vol.record.options;
          const { size, ...rest } = given;
          if (size !== undefined && size < current.sizeBytes) {
            throw new BerthError('INVALID_ARGUMENT', `volume ${name} is ${formatSize(current.sizeBytes)}; it can only grow, not shrink to ${formatSize(size)} (no data was touched)`);
          }
          const options = { ...current, ...rest, sizeBytes: size ?? current.sizeBytes } as VolumeOptions;
          const unchanged = conflictingOptions(given, current).length === 0;
          if (unchanged) throw new BerthError('INVALID_ARGUMENT', `volume ${name} already has ${Object.keys(change).join(', ')} as asked; nothing to change`);
          const result = await backend.resize(vol.record, options, { signal });
          vol.record = result.record;
          await this.save();
          this.log.info({ name, size: formatSize(options.sizeBytes), state: result.state, detail: result.detail }, 'volume resized');
          const grown = result.state !== 'modifying' && vol.mounted ? (await this.growth.growLocked(name, 'resize')).grown : false;
          return {
            name,
            sizeBytes: options.sizeBytes,
            state: result.state,
            ...(result.detail ? { detail: result.detail } : {}),
            mounted: vol.mounted,
            grown,
          };
        },
        signal,
      ),
    );
  }

  private async known(name: string): Promise<PersistedVolume> {
    const vol = this.state.volumes[name];
    if (vol) return vol;
    const record = await this.deps.backend.find(name);
    if (!record) throw new BerthError('NOT_FOUND', `no volume named ${name}; create it first (docker volume create -d <driver> ${name})`);
    const adopted: PersistedVolume = { record, mounts: dict(), mounted: false };
    this.state.volumes[name] = adopted;
    return adopted;
  }

  /**
   * Makes the volume mounted at its mountpoint; on failure leaves nothing
   * behind. The one way a volume goes into use: it ends the unmount grace
   * first, so a Mount in the grace finds the volume still mounted.
   */
  private async mountLocked(name: string, vol: PersistedVolume, signal: AbortSignal): Promise<string> {
    this.grace.end(name, vol);
    const { fs, backend } = this.deps;
    const mountpoint = this.mountpointOf(name);
    if (vol.mounted && vol.devicePath && (await fs.isMounted(mountpoint, vol.devicePath))) return mountpoint;
    const { fs: kind, mountOptions } = vol.record.options;
    let attached: Awaited<ReturnType<Backend['attach']>> | undefined;
    let formatted = false;
    try {
      // Side by side: making the mountpoint spawns chattr, attaching may wait seconds for EC2.
      const [made, attaching] = await Promise.allSettled([fs.ensureMountpoint(mountpoint), backend.attach(vol.record, { signal })]);
      if (attaching.status === 'rejected') throw attaching.reason;
      attached = attaching.value;
      // Attached but no mountpoint: the catch below releases the device.
      if (made.status === 'rejected') throw made.reason;
      signal.throwIfAborted();
      ({ formatted } = await fs.prepare(attached.devicePath, kind, {
        interrupted: vol.formatting === true,
        blank: attached.blank === true,
        signal,
        beforeFormat: async () => {
          // Marked first: a format cut short (crash, deadline) is redone, never mounted half-made.
          vol.formatting = true;
          await this.save();
        },
      }));
      // Cleared by the caller's next save (the Mount's reference): until then no container can have the
      // filesystem, so a crash that keeps the mark only makes the next Mount format again, losing nothing.
      delete vol.formatting;
      signal.throwIfAborted();
      await fs.mount(attached.devicePath, mountpoint, kind, mountOptions, { justFormatted: formatted, signal });
    } catch (err) {
      vol.lastError = errorMessage(err);
      vol.mounted = false;
      delete vol.devicePath;
      // Only our own device: a foreign mount found at the mountpoint is refused, never unmounted.
      if (attached && (await fs.isMounted(mountpoint, attached.devicePath).catch(() => false))) {
        await fs.unmount(mountpoint).catch((e: unknown) => this.log.error({ name, err: errorMessage(e) }, 'cleanup after a failed mount: unmount failed'));
      }
      // Detach at once (not release: EBS would keep it attached for the idle period): nothing uses it.
      // Unless the caller gave up (its deadline) with the device verified: then release, so a
      // Mount retried soon (ECS restarts the task) finds it attached, and the account's shared
      // budget is not spent on a detach and an attach again (docs/design.md §6).
      const cleanup = signal.aborted ? backend.release.bind(backend) : backend.detach.bind(backend);
      if (attached) await cleanup(vol.record).catch((e: unknown) => this.log.error({ name, err: errorMessage(e) }, 'cleanup after a failed mount: detach failed'));
      await this.save().catch(() => undefined);
      this.log.error({ name, err: vol.lastError }, 'mount failed');
      throw err;
    }
    vol.record = attached.record;
    vol.mounted = true;
    vol.devicePath = attached.devicePath;
    delete vol.lastError;
    // A filesystem smaller than its device is still usable: a failed grow is reported (lastError), not fatal.
    await this.growth.growLocked(name, 'mount', { justFormatted: formatted });
    this.log.info({ name, device: attached.devicePath, mountpoint }, 'volume mounted');
    return mountpoint;
  }

  /**
   * Unmounts the volume now; the one way a volume comes off its mountpoint,
   * so it ends the unmount grace first. Then the device: `release` (the volume
   * went idle: the backend may keep it attached for a while, ebs), `detach`
   * (host release: at once), `keep` (Remove: the backend's remove decides).
   * A failed unmount of a volume going idle is recorded on it (Get shows it);
   * Remove and host release answer it to their caller.
   */
  private async unmountLocked(name: string, vol: PersistedVolume, device: 'release' | 'detach' | 'keep'): Promise<void> {
    this.grace.end(name, vol);
    try {
      await this.deps.fs.unmount(this.mountpointOf(name));
    } catch (err) {
      if (device === 'release') vol.lastError = errorMessage(err);
      throw err;
    }
    vol.mounted = false;
    delete vol.devicePath;
    this.growth.forget(name);
    if (device === 'release') {
      await this.deps.backend.release(vol.record);
      this.log.info({ name }, 'volume unmounted');
    } else if (device === 'detach') {
      await this.deps.backend.detach(vol.record);
    }
  }

  /** Agent shutdown: every volume in its unmount grace is unmounted now. */
  async flushUnmountGrace(): Promise<void> {
    await this.grace.flush();
  }

  /** Records the view in the state file (coalesced, state-store.ts); `done` says what happened anyway when the write fails after a step that cannot be undone. */
  private save(done?: string): Promise<void> {
    return this.store.save(this.state, done);
  }

  /** Runs work with the call's deadline: the caller's signal, or dockerd's limit for this kind of call, whichever comes first. */
  private async withDeadline<T>(kind: CallKind, what: string, call: CallOptions, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ms = this.deadlines[kind];
    const timer = new AbortController();
    const t = setTimeout(() => timer.abort(new BerthError('TIMEOUT', `${what} did not finish within ${Math.round(ms / 1000)} s (the caller's deadline); stopped and undone`)), ms);
    t.unref();
    try {
      return await work(call.signal ? AbortSignal.any([call.signal, timer.signal]) : timer.signal);
    } finally {
      clearTimeout(t);
    }
  }

  private dropRef(vol: PersistedVolume, id: string): void {
    const left = (Object.hasOwn(vol.mounts, id) ? vol.mounts[id]! : 0) - 1;
    if (left > 0) vol.mounts[id] = left;
    else delete vol.mounts[id];
  }

  private viewOf(name: string, vol: PersistedVolume): VolumeView {
    const { record } = vol;
    return {
      name,
      id: record.id,
      options: record.options,
      createdAt: record.createdAt,
      mounted: vol.mounted,
      mountpoint: this.mountpointOf(name),
      ...(vol.mounted && vol.devicePath ? { device: vol.devicePath } : {}),
      consumers: refCount(vol),
      ...(vol.unmountPending ? { unmountPending: true } : {}),
      ...(vol.lastError ? { lastError: vol.lastError } : {}),
      ...this.sizeOf(name, vol),
      status: record.status,
    };
  }

  /**
   * Detaches a volume the local view does not use (a stray: attached here, tagged elsewhere), under
   * its name's lock, so it never runs while a Mount of that name is under way; false (nothing done)
   * when the view has this very volume mounted or held.
   */
  async detachIfUnused(record: VolumeRecord, reason: string): Promise<boolean> {
    return this.lock.run(record.name, async () => {
      const vol = Object.hasOwn(this.state.volumes, record.name) ? this.state.volumes[record.name] : undefined;
      if (vol && vol.record.id === record.id && (vol.mounted || held(vol))) {
        this.log.warn({ name: record.name, id: record.id, reason }, 'not detaching a volume mounted here');
        return false;
      }
      await this.deps.backend.detach(record);
      this.log.info({ name: record.name, id: record.id, reason }, 'volume detached');
      return true;
    });
  }
}

export type { VolumeRecord };
