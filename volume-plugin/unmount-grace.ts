import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import type { KeyedLock } from './keyed-lock.js';
import type { PersistedVolume } from './state-store.js';

/** What the grace needs from the volume service; every call but `volume` runs under the volume's lock. */
export interface GraceHost {
  lock: Pick<KeyedLock, 'run'>;
  volume(name: string): PersistedVolume | undefined;
  /** Held by a container (counted or unknown references). */
  held(vol: PersistedVolume): boolean;
  /** Unmounts and releases the device now (the service's one unmount path; it calls end() first). */
  unmountNow(name: string, vol: PersistedVolume): Promise<void>;
  /** syncfs of the volume's mounted filesystem. */
  sync(name: string): Promise<void>;
  save(): Promise<void>;
  log: Logger;
}

/**
 * The unmount grace (docs/design.md §4, docs/operations.md "Unmount grace"):
 * after a volume's last Unmount its filesystem stays mounted for a short
 * time, so a `docker restart` or a `docker run` right after another finds it
 * mounted and pays no fsck and mount. The volume is marked `unmountPending`
 * (persisted: a start that finds the mark unmounts the volume, recovery.ts),
 * its data is flushed to the device before the Unmount answers, and one timer
 * per name unmounts it when the grace ends, under the volume's lock, only if
 * it is still unused.
 *
 * The service consults it at three points only: the last reference going
 * (lastUnmount decides: now, or after the grace), and its one mount path and
 * one unmount path, which each end the grace first (a Mount in the grace
 * finds the volume mounted; Remove, host release and an engine reference
 * drop unmount at once). Agent shutdown flushes it.
 *
 * A grace of 0 turns it off: the last Unmount unmounts at once.
 */
export class UnmountGrace {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    readonly ms: number,
    private readonly host: GraceHost,
  ) {}

  /** The last reference is gone (under the lock): unmount now, or flush the data and unmount when the grace ends. */
  async lastUnmount(name: string, vol: PersistedVolume): Promise<void> {
    if (!vol.mounted || this.ms <= 0) return this.host.unmountNow(name, vol);
    // What the container wrote is on the device when its Unmount answers, as with an immediate unmount.
    await this.host.sync(name);
    vol.unmountPending = true;
    this.arm(name);
    this.host.log.info({ name, graceMs: this.ms }, 'last container unmounted; volume stays mounted for the unmount grace');
  }

  /** Ends the grace of `name` without unmounting (under the lock): the caller mounts, unmounts or removes it. */
  end(name: string, vol: PersistedVolume): void {
    const timer = this.timers.get(name);
    if (timer !== undefined) clearTimeout(timer);
    this.timers.delete(name);
    delete vol.unmountPending;
  }

  pending(): string[] {
    return [...this.timers.keys()];
  }

  /** Agent shutdown: every volume in its grace is unmounted now, one after another. */
  async flush(): Promise<void> {
    for (const name of this.pending()) {
      clearTimeout(this.timers.get(name));
      this.timers.delete(name);
      await this.finish(name);
    }
  }

  private arm(name: string): void {
    clearTimeout(this.timers.get(name));
    // unref: a process that exits without flush() leaves the mount to the next start.
    const timer = setTimeout(() => {
      this.timers.delete(name);
      void this.finish(name);
    }, this.ms);
    timer.unref();
    this.timers.set(name, timer);
  }

  /** The grace ended: unmount if still pending and unused; a failed unmount (busy) is tried again after another grace. */
  private async finish(name: string): Promise<void> {
    const { host } = this;
    await host.lock
      .run(name, async () => {
        const vol = host.volume(name);
        if (!vol?.unmountPending || host.held(vol)) return;
        try {
          await host.unmountNow(name, vol);
        } catch (err) {
          vol.unmountPending = true;
          this.arm(name);
          throw err;
        } finally {
          await host.save().catch((err: unknown) => host.log.error({ name, err: errorMessage(err) }, 'could not record the end of an unmount grace'));
        }
      })
      .catch((err: unknown) => host.log.error({ name, err: errorMessage(err) }, 'unmount after the grace failed; trying again after another grace'));
  }
}
