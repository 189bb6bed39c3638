import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { errorMessage } from '../lib/errors.js';
import type { VolumeRecord } from './backends/backend.js';
import type { FilesystemOps } from './fs/types.js';
import type { KeyedLock } from './keyed-lock.js';
import { formatSize } from './options.js';
import type { PersistedVolume } from './state-store.js';

/** What the online grow needs from the volume service; `growLocked` runs under the volume's lock. */
export interface GrowHost {
  lock: Pick<KeyedLock, 'run'>;
  volume(name: string): PersistedVolume | undefined;
  volumes(): Iterable<[string, PersistedVolume]>;
  mountpointOf(name: string): string;
  fs: Pick<FilesystemOps, 'deviceBytes' | 'grow' | 'isMounted'>;
  /**
   * The backend's check that the device is still this volume's (loop: the kernel's backing file is its
   * image; ebs: the NVMe serial is its volume id). Without it nothing is grown online (only at Mount,
   * right after the attach verified the device).
   */
  verifyDevice?: (record: VolumeRecord, devicePath: string) => Promise<void>;
  save(): Promise<void>;
  log: Logger;
}

/** The last online grow of a volume, for people (`berth inspect`, /status). */
export interface GrowFacts {
  /** The device's size as last read. */
  deviceBytes: number;
  /** RFC 3339: when berth last grew the mounted filesystem; absent when it never did since the mount. */
  grownAt?: string;
  /** The device's size before that grow. */
  grownFromBytes?: number;
}

export type GrowReason = 'mount' | 'device grew' | 'resize';

/**
 * Online grow (docs/design.md §6 "Online grow"): a mounted volume's device
 * that grew (`berth resize`, or EBS ModifyVolume from anywhere: Pulumi, the
 * console) gets its filesystem grown in place with `resize2fs` / `xfs_growfs`,
 * with no unmount and no container restart.
 *
 * Noticing costs one sysfs read per mounted volume per check (`check()`, on
 * the agent's timer, BERTH_GROW_CHECK_SECONDS): the kernel updates
 * `/sys/dev/block/<maj:min>/size` when a loop device's capacity is refreshed
 * (`losetup -c`) or an NVMe namespace reports its new size (the controller's
 * namespace-attribute-changed event; EBS sends it once the modification is
 * `optimizing`). No EC2 call, no process, no lock unless the size changed: the
 * lock is taken only for a volume whose device size moved since the last
 * check, and under it the device is verified again (mountinfo shows this very
 * device at the volume's mountpoint, and the backend says the device is the
 * volume's) before anything grows. A failure is recorded as the volume's
 * lastError and counted, never fatal; the next size change tries again.
 */
export class OnlineGrow {
  /** Device size per mounted volume at the last check (the cheap comparison outside the lock). */
  private readonly facts = new Map<string, GrowFacts>();
  private readonly grown?: Counter<'result'>;
  private warnedUnverifiable = false;

  constructor(
    private readonly host: GrowHost,
    registry?: Registry,
  ) {
    if (!registry) return;
    this.grown = new Counter({
      name: 'berth_volume_grow_total',
      help: 'Online grows of a mounted filesystem to its larger device, by result (grown, failed)',
      labelNames: ['result'],
      registers: [registry],
    });
    const facts = this.facts;
    new Gauge({
      name: 'berth_volume_size_bytes',
      help: 'Size of each mounted volume\'s block device as berth last read it (bytes)',
      labelNames: ['volume'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [volume, f] of facts) this.set({ volume }, f.deviceBytes);
      },
    });
  }

  /** What berth knows of the volume's size and its last grow, while it is mounted. */
  factsOf(name: string): GrowFacts | undefined {
    return this.facts.get(name);
  }

  /** The volume came off its device (unmount): nothing to watch. */
  forget(name: string): void {
    this.facts.delete(name);
  }

  /**
   * One pass: every mounted volume whose device size changed since the last
   * pass is grown under its lock. Resolves when the pass is done; never rejects.
   */
  async check(): Promise<void> {
    if (!this.host.verifyDevice) {
      if (!this.warnedUnverifiable) this.host.log.warn('this backend cannot verify a mounted device: filesystems grow only at Mount');
      this.warnedUnverifiable = true;
      return;
    }
    for (const [name, vol] of this.host.volumes()) {
      const { devicePath } = vol;
      if (!vol.mounted || !devicePath) continue;
      const bytes = await this.host.fs.deviceBytes(devicePath).catch(() => undefined);
      if (bytes === undefined || this.facts.get(name)?.deviceBytes === bytes) continue;
      await this.host.lock
        .run(name, () => this.growLocked(name, 'device grew'))
        .catch((err: unknown) => this.host.log.error({ name, err: errorMessage(err) }, 'online grow check failed'));
    }
  }

  /**
   * Grows the volume's mounted filesystem to its device when the device is
   * larger, under the volume's lock. `mount`: right after this Mount's own
   * attach verified the device (and `justFormatted` when its mkfs just ran).
   * Failures are recorded (lastError, the metric, the log), never thrown.
   */
  async growLocked(name: string, reason: GrowReason, options: { justFormatted?: boolean } = {}): Promise<{ grown: boolean }> {
    const vol = this.host.volume(name);
    if (!vol?.mounted || !vol.devicePath) return { grown: false };
    const { devicePath } = vol;
    const mountpoint = this.host.mountpointOf(name);
    const before = this.facts.get(name);
    let bytes: number | undefined;
    try {
      if (reason !== 'mount') {
        // The device must still be the one mounted there, and the volume's: never grow a device berth has not verified.
        if (!(await this.host.fs.isMounted(mountpoint, devicePath))) {
          throw new Error(`${devicePath} is no longer what is mounted at ${mountpoint}; not grown`);
        }
        if (!this.host.verifyDevice) throw new Error('this backend cannot verify the device; grown only at the next Mount');
        await this.host.verifyDevice(vol.record, devicePath);
      }
      bytes = await this.host.fs.deviceBytes(devicePath);
      const { grown } = await this.host.fs.grow(devicePath, mountpoint, vol.record.options.fs, options);
      const fromBytes = before?.deviceBytes;
      this.facts.set(name, grown ? { deviceBytes: bytes, grownAt: new Date().toISOString(), ...(fromBytes !== undefined ? { grownFromBytes: fromBytes } : {}) } : { ...before, deviceBytes: bytes });
      if (grown) {
        this.grown?.inc({ result: 'grown' });
        if (vol.lastError?.startsWith(GROW_FAILED)) delete vol.lastError;
        this.host.log.info({ name, device: devicePath, reason, from: fromBytes, to: bytes }, `filesystem grown online to ${formatSize(bytes)}`);
        if (reason !== 'mount') await this.host.save();
      }
      return { grown };
    } catch (err) {
      // Remembered as checked: the same size is not tried again every pass (the next change, or a Mount, tries).
      if (bytes !== undefined) this.facts.set(name, { ...before, deviceBytes: bytes });
      vol.lastError = `${GROW_FAILED}: ${errorMessage(err)}`;
      this.grown?.inc({ result: 'failed' });
      this.host.log.warn({ name, device: devicePath, reason, err: vol.lastError }, 'online grow failed; the volume stays mounted at its old size');
      if (reason !== 'mount') await this.host.save().catch(() => undefined);
      return { grown: false };
    }
  }
}

/** How a failed grow's lastError starts (a later successful grow clears only such an error). */
export const GROW_FAILED = 'could not grow the filesystem';
