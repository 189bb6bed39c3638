import { BerthError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { nvmeSerialOf, type DeviceResolver, type ResolvedDevice } from '../../volume-plugin/devices/nvme.js';
import { FakeHost } from './host.js';

/**
 * An in-memory DeviceResolver (volume-plugin/devices/nvme.ts) with the real one's rules: a volume's
 * block device is the NVMe namespace whose serial is its id, present only while bound (EC2 attached
 * it to this instance); waitFor() polls until it appears or times out, and stops on the signal;
 * attachedVolumeIds() lists the bound namespaces (undefined on a Xen host, where devices do not
 * say which volume they are). A bound device is `present` on the shared FakeHost, at a path that
 * stays the volume's (its data, the filesystem FakeFilesystem records, goes with it).
 */
export class FakeNvme implements DeviceResolver {
  private readonly bound = new Set<string>();
  /** Resolver calls by kind, for tests that count sysfs reads. */
  readonly reads = { find: 0, attachedVolumeIds: 0 };

  constructor(
    readonly host: FakeHost = new FakeHost(),
    private readonly options: { xen?: boolean } = {},
  ) {}

  /** The device path this volume shows at while bound. */
  static pathOf(volumeId: string): string {
    return `/dev/nvme-${nvmeSerialOf(volumeId)}`;
  }

  /** The kernel shows the namespace: EC2 attached the volume to this instance. */
  bind(volumeId: string): void {
    this.bound.add(volumeId);
    this.host.present.add(FakeNvme.pathOf(volumeId));
  }

  /** The namespace goes away (detached). */
  unbind(volumeId: string): void {
    this.bound.delete(volumeId);
    this.host.present.delete(FakeNvme.pathOf(volumeId));
  }

  isBound(volumeId: string): boolean {
    return this.bound.has(volumeId);
  }

  async find(volumeId: string): Promise<ResolvedDevice | undefined> {
    this.reads.find++;
    return this.bound.has(volumeId) ? { path: FakeNvme.pathOf(volumeId), how: 'nvme-serial' } : undefined;
  }

  async waitFor(volumeId: string, requestedDevice: string | undefined, timeoutMs: number, { pollMs = 5, signal }: { pollMs?: number; signal?: AbortSignal } = {}): Promise<ResolvedDevice> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const found = await this.find(volumeId);
      if (found) return found;
      if (Date.now() >= deadline) {
        throw new BerthError('TIMEOUT', `EC2 reports ${volumeId} attached${requestedDevice ? ` at ${requestedDevice}` : ''}, but no block device with serial ${nvmeSerialOf(volumeId)} appeared within ${Math.round(timeoutMs / 1000)} s`);
      }
      await sleep(pollMs, signal).catch((err: unknown) => {
        signal?.throwIfAborted();
        throw err;
      });
    }
  }

  async attachedVolumeIds(): Promise<ReadonlySet<string> | undefined> {
    this.reads.attachedVolumeIds++;
    return this.options.xen ? undefined : new Set(this.bound);
  }
}
