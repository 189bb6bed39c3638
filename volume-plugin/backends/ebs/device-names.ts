import { BerthError } from '../../../lib/errors.js';

/** Device names berth attaches at: /dev/xvdba … /dev/xvdzz (the root and early letters are the AMI's). */
export const DEVICE_NAMES: readonly string[] = (() => {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const out: string[] = [];
  for (const first of letters.slice(1)) for (const second of letters) out.push(`/dev/xvd${first}${second}`);
  return out;
})();

/**
 * The device-name rotation of one instance (docs/design.md §6): the next free name, never one an
 * attach in flight holds (reserved), nor one EC2 reported in use or one attached here (skipped),
 * and a name just given back is not handed out again at once. Seeded once, before the first
 * attach, with what is attached to the instance now.
 */
export class DeviceNames {
  private readonly reserved = new Set<string>();
  private readonly skip = new Set<string>();
  private next = 0;
  private seeded: Promise<void> | undefined;

  /** `attachedNow`: device names attached to the instance now (one DescribeVolumes). */
  constructor(
    private readonly instanceId: string,
    private readonly attachedNow: () => Promise<string[]>,
  ) {}

  /** Seeds the rotation once; a failed seed is tried again by the next caller. */
  seed(): Promise<void> {
    this.seeded ??= this.attachedNow().then(
      (devices) => {
        for (const d of devices) this.markInUse(d);
      },
      (err: unknown) => {
        this.seeded = undefined;
        throw err;
      },
    );
    return this.seeded;
  }

  /** Next free name in the rotation, reserved until release(). */
  take(): string {
    for (let i = 0; i < DEVICE_NAMES.length; i++) {
      const name = DEVICE_NAMES[(this.next + i) % DEVICE_NAMES.length]!;
      if (this.reserved.has(name) || this.skip.has(name)) continue;
      this.next = (this.next + i + 1) % DEVICE_NAMES.length;
      this.reserved.add(name);
      return name;
    }
    throw new BerthError('LIMIT_EXCEEDED', `no free device name left for ${this.instanceId} (${DEVICE_NAMES.length} names, all in use or refused by EC2)`);
  }

  /** Holds a name an attach already under way uses. */
  reserve(name: string): void {
    this.reserved.add(name);
  }

  release(name: string): void {
    this.reserved.delete(name);
  }

  /** A name attached here, or one EC2 said is in use: skipped from now on. */
  markInUse(name: string): void {
    if (DEVICE_NAMES.includes(name)) this.skip.add(name);
  }

  /** A name this instance no longer uses (its volume detached). */
  free(name: string): void {
    this.skip.delete(name);
  }
}
