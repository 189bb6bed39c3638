import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { BerthError, errorMessage } from '../lib/errors.js';
import type { Backend, VolumeRecord } from './backends/backend.js';
import { AnswerCache } from './answers.js';
import type { FilesystemOps } from './fs/types.js';
import {
  assertVolumeName,
  conflictingOptions,
  formatSize,
  parseGivenOptions,
  resolveOptions,
  type OptionDefaults,
} from './options.js';
import type { Scope, VolumeDriver, VolumeInfo } from './protocol.js';
import { StateStore, type PersistedState, type PersistedVolume } from './state-store.js';

export interface ManagerDeps {
  backend: Backend;
  fs: FilesystemOps;
  stateDir: string;
  defaults: OptionDefaults;
  logger: Logger;
  registry?: Registry;
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
}

const MOUNT_ID = /^[A-Za-z0-9_.-]{1,128}$/;

function refCount(v: PersistedVolume): number {
  return Object.values(v.mounts).reduce((a, b) => a + b, 0);
}

/**
 * Implements the Docker volume protocol over a Backend and real filesystem
 * operations. Create/Mount/Unmount/Remove (and reconcile) on one name are
 * serialized by a per-name lock; Get/List/Path answer from the local view and
 * never wait on a lock or the backend.
 */
export class VolumeManager implements VolumeDriver {
  private readonly store: StateStore;
  /** Get, Path and List answers, kept serialized between changes of the view (the plugin's hot path). */
  readonly answers = new AnswerCache(this);
  /** Every change of a volume's view runs under its lock, or calls answers.invalidate() (answers.ts). */
  private readonly lock = this.answers.lock;
  private state: PersistedState = { version: 1, volumes: {} };
  private readonly log: Logger;
  private started = false;

  constructor(private readonly deps: ManagerDeps) {
    this.store = new StateStore(deps.stateDir, deps.logger);
    this.log = deps.logger;
    if (deps.registry) {
      const volumes = () => Object.values(this.state.volumes);
      new Gauge({
        name: 'berth_volumes_mounted',
        help: 'Volumes mounted on this host by berth',
        registers: [deps.registry],
        collect() {
          this.set(volumes().filter((v) => v.mounted).length);
        },
      });
      new Gauge({
        name: 'berth_volumes_known',
        help: "Volumes in berth's local view",
        registers: [deps.registry],
        collect() {
          this.set(volumes().length);
        },
      });
    }
  }

  get isStarted(): boolean {
    return this.started;
  }

  mountpointOf(name: string): string {
    return join(this.deps.stateDir, 'mounts', name);
  }

  /**
   * Loads the state file and rebuilds it against mountinfo: a recorded mount
   * that is no longer there is dropped; a mount found without a record (state
   * file lost) is kept, with its container references unknown.
   */
  async start(): Promise<void> {
    await mkdir(this.deps.stateDir, { recursive: true, mode: 0o700 });
    const { state, rebuilt } = await this.store.load();
    this.state = state;
    try {
      for (const record of await this.deps.backend.list()) {
        const known = this.state.volumes[record.name];
        if (known) known.record = record;
        else this.state.volumes[record.name] = { record, mounts: {}, mounted: false };
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'could not list the backend\'s volumes at start; answering from the state file');
    }
    for (const [name, vol] of Object.entries(this.state.volumes)) {
      const mountpoint = this.mountpointOf(name);
      const reallyMounted = vol.devicePath
        ? await this.deps.fs.isMounted(mountpoint, vol.devicePath).catch(() => false)
        : await this.deps.fs.isMounted(mountpoint);
      if (vol.mounted && !reallyMounted) {
        this.log.warn({ name, refs: refCount(vol) }, 'state file says mounted but mountinfo does not; dropping its mount references');
        vol.mounted = false;
        vol.mounts = {};
        delete vol.devicePath;
      } else if (!vol.mounted && reallyMounted) {
        this.log.warn({ name, rebuilt }, 'found mounted without a record of who uses it; keeping it mounted');
        vol.mounted = true;
      }
    }
    this.answers.invalidate();
    await this.store.save(this.state);
    this.started = true;
  }

  capabilities(): { Scope: Scope } {
    return { Scope: this.deps.backend.scope };
  }

  async create(name: string, opts: Record<string, string>): Promise<void> {
    assertVolumeName(name);
    const given = parseGivenOptions(opts);
    await this.lock.run(name, async () => {
      let vol = this.state.volumes[name];
      if (!vol) {
        let record = await this.deps.backend.find(name);
        if (!record) {
          const options = resolveOptions(given, this.deps.defaults);
          this.deps.backend.validate(name, options);
          record = await this.deps.backend.create(name, options);
          this.log.info({ name, id: record.id, size: formatSize(options.sizeBytes), fs: options.fs }, 'volume created');
        }
        vol = { record, mounts: {}, mounted: false };
        this.state.volumes[name] = vol;
        await this.store.save(this.state);
      }
      const conflicts = conflictingOptions(given, vol.record.options);
      if (conflicts.length > 0) {
        throw new BerthError('CONFLICT', `volume ${name} already exists with other options: ${conflicts.join('; ')}. Use other options only with a new name`);
      }
    });
  }

  async remove(name: string): Promise<void> {
    assertVolumeName(name);
    await this.lock.run(name, async () => {
      const vol = await this.known(name);
      const refs = refCount(vol);
      if (refs > 0) {
        throw new BerthError('CONFLICT', `volume ${name} is in use by ${refs} container mount(s); stop them first`);
      }
      const mountpoint = this.mountpointOf(name);
      await this.deps.fs.unmount(mountpoint);
      vol.mounted = false;
      await this.deps.backend.remove(vol.record);
      await this.deps.fs.removeMountpoint(mountpoint);
      delete this.state.volumes[name];
      await this.store.save(this.state);
      this.log.info({ name, onRemove: vol.record.options.onRemove }, 'volume removed');
    });
  }

  async mount(name: string, id: string): Promise<string> {
    assertVolumeName(name);
    if (!MOUNT_ID.test(id)) throw new BerthError('INVALID_ARGUMENT', `invalid mount ID ${JSON.stringify(id)}`);
    return this.lock.run(name, async () => {
      const vol = await this.known(name);
      const mountpoint = await this.mountLocked(name, vol);
      vol.mounts[id] = (vol.mounts[id] ?? 0) + 1;
      try {
        await this.store.save(this.state);
      } catch (err) {
        // Docker will not send an Unmount for a Mount that failed: undo the reference.
        this.dropRef(vol, id);
        throw err;
      }
      this.log.info({ name, id, refs: refCount(vol) }, 'mounted for a container');
      return mountpoint;
    });
  }

  async unmount(name: string, id: string): Promise<void> {
    assertVolumeName(name);
    await this.lock.run(name, async () => {
      const vol = this.state.volumes[name];
      if (!vol || !vol.mounts[id]) {
        this.log.info({ name, id }, 'unmount for an unknown mount ID; nothing to do');
        return;
      }
      this.dropRef(vol, id);
      if (refCount(vol) === 0) await this.unmountLocked(name, vol);
      await this.store.save(this.state);
    });
  }

  async path(name: string): Promise<string> {
    assertVolumeName(name);
    const vol = this.state.volumes[name];
    if (!vol) throw new BerthError('NOT_FOUND', `no volume named ${name}`);
    return vol.mounted ? this.mountpointOf(name) : '';
  }

  /** Get's answer from the local view alone; undefined when the name is not in it. */
  view(name: string): VolumeInfo | undefined {
    const vol = Object.hasOwn(this.state.volumes, name) ? this.state.volumes[name] : undefined;
    return vol && this.info(name, vol);
  }

  names(): string[] {
    return Object.keys(this.state.volumes);
  }

  async get(name: string): Promise<VolumeInfo> {
    assertVolumeName(name);
    const local = this.view(name);
    if (local) return local;
    // Not in the local view: only an authoritative "does not exist" may fail.
    const record = await this.deps.backend.find(name);
    if (!record) throw new BerthError('NOT_FOUND', `no volume named ${name}`);
    return this.info(name, { record, mounts: {}, mounted: false });
  }

  async list(): Promise<VolumeInfo[]> {
    return Object.entries(this.state.volumes).map(([name, vol]) => this.info(name, vol));
  }

  /** Attach and mount with no container reference (boot reconcile). */
  async ensureMounted(name: string): Promise<string> {
    assertVolumeName(name);
    return this.lock.run(name, async () => {
      const vol = await this.known(name);
      const mountpoint = await this.mountLocked(name, vol);
      await this.store.save(this.state);
      return mountpoint;
    });
  }

  /** Unmount and detach a volume no container uses; false when one does. */
  async releaseIfUnused(name: string, reason: string): Promise<boolean> {
    assertVolumeName(name);
    return this.lock.run(name, async () => {
      const vol = this.state.volumes[name];
      if (!vol) return true;
      if (refCount(vol) > 0) {
        this.log.warn({ name, reason, refs: refCount(vol) }, 'not releasing a volume containers still use');
        return false;
      }
      await this.deps.fs.unmount(this.mountpointOf(name));
      vol.mounted = false;
      delete vol.devicePath;
      await this.deps.backend.detach(vol.record);
      await this.store.save(this.state);
      this.log.info({ name, reason }, 'volume released');
      return true;
    });
  }

  /** Re-reads the backend's volumes into the local view. */
  async refresh(): Promise<void> {
    const records = await this.deps.backend.list();
    const listed = new Set(records.map((r) => r.name));
    for (const record of records) {
      const vol = this.state.volumes[record.name];
      if (vol) vol.record = record;
      else this.state.volumes[record.name] = { record, mounts: {}, mounted: false };
    }
    for (const [name, vol] of Object.entries(this.state.volumes)) {
      if (!listed.has(name) && !vol.mounted) delete this.state.volumes[name];
    }
    this.answers.invalidate();
    await this.store.save(this.state);
  }

  snapshot(): VolumeStatus[] {
    return Object.entries(this.state.volumes).map(([name, vol]) => ({
      name,
      id: vol.record.id,
      mountpoint: this.mountpointOf(name),
      mounted: vol.mounted,
      refs: refCount(vol),
      ...(vol.devicePath ? { devicePath: vol.devicePath } : {}),
      ...(vol.lastError ? { lastError: vol.lastError } : {}),
    }));
  }

  private async known(name: string): Promise<PersistedVolume> {
    const vol = this.state.volumes[name];
    if (vol) return vol;
    const record = await this.deps.backend.find(name);
    if (!record) throw new BerthError('NOT_FOUND', `no volume named ${name}; create it first (docker volume create -d <driver> ${name})`);
    const adopted: PersistedVolume = { record, mounts: {}, mounted: false };
    this.state.volumes[name] = adopted;
    return adopted;
  }

  /** Makes the volume mounted at its mountpoint; on failure leaves nothing behind. */
  private async mountLocked(name: string, vol: PersistedVolume): Promise<string> {
    const { fs, backend } = this.deps;
    const mountpoint = this.mountpointOf(name);
    if (vol.mounted && vol.devicePath && (await fs.isMounted(mountpoint, vol.devicePath))) return mountpoint;
    const { fs: kind, mountOptions } = vol.record.options;
    let attached: Awaited<ReturnType<Backend['attach']>> | undefined;
    try {
      // Side by side: making the mountpoint spawns chattr, attaching may wait seconds for EC2.
      const [made, attaching] = await Promise.allSettled([fs.ensureMountpoint(mountpoint), backend.attach(vol.record)]);
      if (attaching.status === 'rejected') throw attaching.reason;
      attached = attaching.value;
      // Attached but no mountpoint: the catch below releases the device.
      if (made.status === 'rejected') throw made.reason;
      await fs.prepare(attached.devicePath, kind);
      await fs.mount(attached.devicePath, mountpoint, kind, mountOptions);
    } catch (err) {
      vol.lastError = errorMessage(err);
      vol.mounted = false;
      delete vol.devicePath;
      await fs.unmount(mountpoint).catch((e: unknown) => this.log.error({ name, err: errorMessage(e) }, 'cleanup after a failed mount: unmount failed'));
      if (attached) await backend.release(vol.record).catch((e: unknown) => this.log.error({ name, err: errorMessage(e) }, 'cleanup after a failed mount: release failed'));
      await this.store.save(this.state).catch(() => undefined);
      this.log.error({ name, err: vol.lastError }, 'mount failed');
      throw err;
    }
    vol.record = attached.record;
    vol.mounted = true;
    vol.devicePath = attached.devicePath;
    delete vol.lastError;
    // A filesystem smaller than its device is still usable: a failed grow is reported, not fatal.
    await fs.grow(attached.devicePath, mountpoint, kind).catch((err: unknown) => {
      vol.lastError = `could not grow the filesystem: ${errorMessage(err)}`;
      this.log.warn({ name, err: vol.lastError }, 'grow failed; volume mounted at its old size');
    });
    this.log.info({ name, device: attached.devicePath, mountpoint }, 'volume mounted');
    return mountpoint;
  }

  private async unmountLocked(name: string, vol: PersistedVolume): Promise<void> {
    try {
      await this.deps.fs.unmount(this.mountpointOf(name));
    } catch (err) {
      vol.lastError = errorMessage(err);
      throw err;
    }
    vol.mounted = false;
    delete vol.devicePath;
    await this.deps.backend.release(vol.record);
    this.log.info({ name }, 'volume unmounted');
  }

  private dropRef(vol: PersistedVolume, id: string): void {
    const left = (vol.mounts[id] ?? 0) - 1;
    if (left > 0) vol.mounts[id] = left;
    else delete vol.mounts[id];
  }

  private info(name: string, vol: PersistedVolume): VolumeInfo {
    const { options } = vol.record;
    return {
      Name: name,
      Mountpoint: vol.mounted ? this.mountpointOf(name) : '',
      CreatedAt: vol.record.createdAt,
      Status: {
        ...vol.record.status,
        size: formatSize(options.sizeBytes),
        fs: options.fs,
        onRemove: options.onRemove,
        ...(options.mountOptions ? { mountOptions: options.mountOptions } : {}),
        mounted: vol.mounted,
        ...(vol.mounted && vol.devicePath ? { device: vol.devicePath } : {}),
        containerMounts: refCount(vol),
        ...(vol.lastError ? { lastError: vol.lastError } : {}),
      },
    };
  }
}

export type { VolumeRecord };
