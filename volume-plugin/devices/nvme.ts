import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BerthError } from '../../lib/errors.js';
import { majorMinorOf } from '../../lib/mountinfo.js';
import { sleep } from '../../lib/sleep.js';

/**
 * Finds the block device of an attached EBS volume by identity, not by name.
 *
 * Nitro: every EBS volume is an NVMe namespace whose controller serial is the
 * volume id without its dash (`vol0123…`), whatever device name was asked
 * for; the names under /dev/disk/by-id and udev's /dev/xvd* links are hints
 * that can be stale, so they are never read. Xen: the device appears under
 * the requested name (sdX shows as xvdX); its identity rests on EC2 having
 * reported the attachment of this volume, to this instance, at this name.
 *
 * Either way the /dev node is checked against the kernel's device number in
 * sysfs, so a stale node left behind by an earlier attachment is refused.
 */

export interface DeviceResolverDeps {
  /** sysfs root; /sys on a host, a prepared tree in tests. */
  sysfsRoot: string;
  /** Directory of the device nodes; /dev on a host. */
  devRoot: string;
}

export interface ResolvedDevice {
  /** e.g. /dev/nvme2n1 */
  path: string;
  how: 'nvme-serial' | 'xen-name';
}

const NVME_NAMESPACE = /^nvme\d+n\d+$/;

/** `vol-0abc…` → `vol0abc…`, as NVMe controllers report it. */
export function nvmeSerialOf(volumeId: string): string {
  return volumeId.replace('-', '');
}

const EBS_SERIAL = /^vol([0-9a-f]{8,17})$/;

/** `vol0abc…` → `vol-0abc…`; undefined for a serial that is not an EBS volume's (instance store: `AWS…`). */
export function volumeIdOfSerial(serial: string): string | undefined {
  const m = EBS_SERIAL.exec(serial);
  return m ? `vol-${m[1]}` : undefined;
}

/** EC2 device names as Xen guests see them: /dev/sdf → xvdf, /dev/xvdba → xvdba. */
export function xenNameOf(requested: string): string {
  return basename(requested).replace(/^sd/, 'xvd');
}

export interface DeviceResolver {
  /** The verified device of this volume, or undefined while none shows it. */
  find(volumeId: string, requestedDevice?: string): Promise<ResolvedDevice | undefined>;
  /** Polls find() until the device shows up; TIMEOUT with a clear error (or the signal's reason) after timeoutMs. */
  waitFor(volumeId: string, requestedDevice: string | undefined, timeoutMs: number, options?: { pollMs?: number; signal?: AbortSignal }): Promise<ResolvedDevice>;
  /**
   * The EBS volumes whose NVMe namespaces this host shows now (their serials), read from sysfs
   * without any EC2 call. undefined on a Xen instance (xvd* block devices): there a device does
   * not say which volume it is, and the caller must ask EC2.
   */
  attachedVolumeIds(): Promise<ReadonlySet<string> | undefined>;
}

export function createDeviceResolver(deps: DeviceResolverDeps): DeviceResolver {
  const blockDir = join(deps.sysfsRoot, 'block');
  const read = (path: string) => readFile(path, 'utf8').then((s) => s.trim(), () => undefined);

  /** The /dev node must carry the device number the kernel gives this block device. */
  async function verifiedNode(name: string, volumeId: string): Promise<string> {
    const path = join(deps.devRoot, name);
    const kernel = await read(join(blockDir, name, 'dev'));
    const node = await stat(path).catch(() => undefined);
    if (!kernel || !node?.isBlockDevice()) {
      throw new BerthError('UNSAFE_DEVICE', `${path} (for ${volumeId}) is not a block device the kernel lists; refusing to use it`);
    }
    if (majorMinorOf(node.rdev) !== kernel) {
      throw new BerthError('UNSAFE_DEVICE', `${path} is device ${majorMinorOf(node.rdev)} but the kernel's ${name} is ${kernel} (stale device node); refusing to use it for ${volumeId}`);
    }
    return path;
  }

  /** What one read of sysfs showed: every block device, and the NVMe namespaces by serial. */
  interface Scan {
    names: string[];
    bySerial: Map<string, string[]>;
  }
  /** The next scan, not started yet: every lookup that arrives before it starts shares it. */
  let nextScan: Promise<Scan> | undefined;

  async function readScan(): Promise<Scan> {
    const names = await readdir(blockDir).catch(() => [] as string[]);
    const namespaces = names.filter((n) => NVME_NAMESPACE.test(n));
    const serials = await Promise.all(namespaces.map((name) => read(join(blockDir, name, 'device', 'serial'))));
    const bySerial = new Map<string, string[]>();
    namespaces.forEach((name, i) => {
      const serial = serials[i];
      if (serial !== undefined) bySerial.set(serial, [...(bySerial.get(serial) ?? []), name]);
    });
    return { names, bySerial };
  }

  /**
   * A scan that starts after this call (so it sees what is there now), shared: 50 volumes
   * attaching at once read sysfs once per round instead of once each (a boot reconcile's
   * lookups otherwise queue thousands of reads on libuv's four threads).
   */
  function scan(): Promise<Scan> {
    nextScan ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      nextScan = undefined;
      return readScan();
    });
    return nextScan;
  }

  async function find(volumeId: string, requestedDevice?: string): Promise<ResolvedDevice | undefined> {
    const serial = nvmeSerialOf(volumeId);
    const { names, bySerial } = await scan();
    const matches = bySerial.get(serial) ?? [];
    if (matches.length > 1) {
      throw new BerthError('UNSAFE_DEVICE', `devices ${matches.join(', ')} all report serial ${serial}; refusing to guess which is ${volumeId}`);
    }
    if (matches.length === 1) return { path: await verifiedNode(matches[0]!, volumeId), how: 'nvme-serial' };
    if (requestedDevice) {
      const xen = xenNameOf(requestedDevice);
      // A Nitro host never lists xvd* block devices (udev's xvd* names are only links in /dev).
      if (names.includes(xen)) return { path: await verifiedNode(xen, volumeId), how: 'xen-name' };
    }
    return undefined;
  }

  return {
    find,
    async waitFor(volumeId, requestedDevice, timeoutMs, { pollMs = 100, signal } = {}) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        signal?.throwIfAborted();
        const found = await find(volumeId, requestedDevice);
        if (found) return found;
        if (Date.now() >= deadline) {
          throw new BerthError(
            'TIMEOUT',
            `EC2 reports ${volumeId} attached${requestedDevice ? ` at ${requestedDevice}` : ''}, but no block device with serial ${nvmeSerialOf(volumeId)} appeared within ${Math.round(timeoutMs / 1000)} s`,
          );
        }
        await sleep(pollMs, signal).catch((err: unknown) => {
          signal?.throwIfAborted();
          throw err;
        });
      }
    },
    async attachedVolumeIds() {
      const { names, bySerial } = await scan();
      // A Nitro host never lists xvd* block devices; a Xen one shows its EBS volumes only so.
      if (names.some((n) => n.startsWith('xvd'))) return undefined;
      const ids = new Set<string>();
      for (const serial of bySerial.keys()) {
        const id = volumeIdOfSerial(serial);
        if (id) ids.add(id);
      }
      return ids;
    },
  };
}
