import { BerthError } from '../../lib/errors.js';
import type { AttachedDevice, Backend, CallOptions, CreateOptions, VolumeRecord } from '../../volume-plugin/backends/backend.js';
import { LOOP_OPTIONS } from '../../volume-plugin/backends/loop.js';
import type { VolumeOptions } from '../../volume-plugin/options.js';
import { Faults } from './faults.js';
import { FakeHost } from './host.js';

export type BackendOp = 'create' | 'find' | 'list' | 'attach' | 'release' | 'detach' | 'remove' | 'recover';

interface Stored {
  record: VolumeRecord;
  retained: boolean;
  /** The volume's block device: stable, so what was formatted on it is still there at the next attach. */
  device: string;
}

/**
 * An in-memory Backend with the loop backend's rules (volume-plugin/backends/loop.ts,
 * the reference for each): Create is idempotent and asks `accept` before it
 * adopts or returns an existing volume (a refusal leaves a retained one
 * retained); Remove with onRemove=retain keeps the data but hides the volume
 * from find and list; release detaches at once; recover detaches the devices
 * of volumes that are not mounted. Every call goes through `faults` first.
 */
export class FakeBackend implements Backend {
  readonly scope = 'local' as const;
  /** The loop backend's option keys: none beyond the core's, EBS's refused. */
  readonly options = LOOP_OPTIONS;
  readonly faults = new Faults<BackendOp>();
  private readonly volumes = new Map<string, Stored>();
  private serial = 0;

  constructor(
    readonly host: FakeHost = new FakeHost(),
    private readonly rules: { validate?(name: string, options: VolumeOptions): void } = {},
  ) {}

  validate(name: string, options: VolumeOptions): void {
    this.rules.validate?.(name, options);
  }

  async create(name: string, options: VolumeOptions, call: CreateOptions = {}): Promise<VolumeRecord> {
    await this.faults.enter('create', call.signal);
    const existing = this.volumes.get(name);
    if (existing) {
      call.accept?.(existing.record, existing.retained);
      existing.retained = false;
      return existing.record;
    }
    const device = `/dev/fake${this.serial++}`;
    const record: VolumeRecord = { name, id: `fake:${name}:${this.serial}`, options, createdAt: new Date(0).toISOString(), status: { backend: 'fake' } };
    this.volumes.set(name, { record, retained: false, device });
    return record;
  }

  async find(name: string): Promise<VolumeRecord | undefined> {
    await this.faults.enter('find');
    const v = this.volumes.get(name);
    return v && !v.retained ? v.record : undefined;
  }

  async list(): Promise<VolumeRecord[]> {
    await this.faults.enter('list');
    return [...this.volumes.values()].filter((v) => !v.retained).map((v) => v.record);
  }

  async attach(record: VolumeRecord, call: CallOptions = {}): Promise<AttachedDevice> {
    await this.faults.enter('attach', call.signal);
    const v = this.volumes.get(record.name);
    if (!v || v.record.id !== record.id) throw new BerthError('NOT_FOUND', `volume ${record.name}: not in the fake backend`);
    this.host.present.add(v.device);
    return { devicePath: v.device, record: v.record };
  }

  async release(record: VolumeRecord): Promise<void> {
    await this.faults.enter('release');
    this.unplug(record.name);
  }

  async detach(record: VolumeRecord): Promise<void> {
    await this.faults.enter('detach');
    this.unplug(record.name);
  }

  async remove(record: VolumeRecord, call: CallOptions = {}): Promise<void> {
    await this.faults.enter('remove', call.signal);
    const v = this.volumes.get(record.name);
    if (!v) return;
    this.unplug(record.name);
    if (record.options.onRemove === 'delete') {
      this.volumes.delete(record.name);
      this.host.formatted.delete(v.device);
      this.host.partial.delete(v.device);
    } else {
      v.retained = true;
    }
  }

  async recover(mounted: ReadonlySet<string>): Promise<void> {
    await this.faults.enter('recover');
    for (const v of this.volumes.values()) if (!mounted.has(v.record.id)) this.host.present.delete(v.device);
  }

  /** Test view: 'live', 'retained' or undefined (never created, or deleted). */
  stateOf(name: string): 'live' | 'retained' | undefined {
    const v = this.volumes.get(name);
    return v && (v.retained ? 'retained' : 'live');
  }

  /** Test view: whether the volume's device is present (attached). */
  isAttached(name: string): boolean {
    const v = this.volumes.get(name);
    return v !== undefined && this.host.present.has(v.device);
  }

  deviceOf(name: string): string | undefined {
    return this.volumes.get(name)?.device;
  }

  private unplug(name: string): void {
    const v = this.volumes.get(name);
    if (v) this.host.present.delete(v.device);
  }
}
