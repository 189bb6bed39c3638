import { BerthError } from '../../lib/errors.js';
import type { FilesystemOps, PrepareOptions } from '../../volume-plugin/fs/types.js';
import type { Filesystem } from '../../volume-plugin/options.js';
import { Faults } from './faults.js';
import { FakeHost } from './host.js';

export type FilesystemOp = 'prepare' | 'mkfs' | 'mount' | 'unmount' | 'grow' | 'sync' | 'ensureMountpoint' | 'removeMountpoint';

/**
 * In-memory FilesystemOps with the rules of the real ones (volume-plugin/fs/filesystem.ts,
 * docs/design.md §6): a device must be present; a blank one is formatted, one
 * holding the asked filesystem is left alone, one holding another is refused
 * (UNSAFE_DEVICE) and a partial one is formatted again only when the caller
 * says its format was interrupted; mount needs the mountpoint made and the
 * device formatted; unmounting what is not mounted is success; a mountpoint
 * is removed only when nothing is mounted on it. `mkfs` is its own fault
 * point, after beforeFormat ran: a failure or abort there leaves a partial filesystem.
 */
export class FakeFilesystem implements FilesystemOps {
  readonly faults = new Faults<FilesystemOp>();

  constructor(readonly host: FakeHost = new FakeHost()) {}

  async prepare(devicePath: string, fs: Filesystem, options: PrepareOptions = {}): Promise<{ formatted: boolean }> {
    await this.faults.enter('prepare', options.signal);
    const { host } = this;
    if (!host.present.has(devicePath)) throw new BerthError('UNSAFE_DEVICE', `device ${devicePath} is not present`);
    const found = host.formatted.get(devicePath);
    const partial = host.partial.has(devicePath);
    if (found === fs && !partial) return { formatted: false };
    if (found !== undefined && found !== fs && !partial) {
      throw new BerthError('UNSAFE_DEVICE', `${devicePath} holds a ${found} filesystem, not ${fs}; refusing to format it`);
    }
    if (partial && !options.interrupted) throw new BerthError('UNSAFE_DEVICE', `${devicePath} holds a damaged ${found ?? 'unknown'} filesystem; refusing to format it`);
    await options.beforeFormat?.();
    host.partial.add(devicePath);
    host.formatted.set(devicePath, fs);
    await this.faults.enter('mkfs', options.signal);
    options.signal?.throwIfAborted();
    host.partial.delete(devicePath);
    return { formatted: true };
  }

  async mount(devicePath: string, mountpoint: string, fs: Filesystem): Promise<void> {
    await this.faults.enter('mount');
    const { host } = this;
    if (!host.present.has(devicePath)) throw new BerthError('UNSAFE_DEVICE', `device ${devicePath} is not present`);
    if (!host.mountpoints.has(mountpoint)) throw new BerthError('INTERNAL', `mountpoint ${mountpoint} does not exist`);
    if (host.formatted.get(devicePath) !== fs || host.partial.has(devicePath)) throw new BerthError('INTERNAL', `mount: ${devicePath} holds no ${fs} filesystem`);
    if (host.mounts.has(mountpoint)) throw new BerthError('CONFLICT', `something is already mounted at ${mountpoint}`);
    host.mounts.set(mountpoint, devicePath);
  }

  async unmount(mountpoint: string): Promise<void> {
    await this.faults.enter('unmount');
    this.host.mounts.delete(mountpoint);
  }

  /** syncfs of a mounted filesystem: fails on a mountpoint with nothing mounted, as syncfs on the bare directory would not reach the volume. */
  async sync(mountpoint: string): Promise<void> {
    await this.faults.enter('sync');
    if (!this.host.mounts.has(mountpoint)) throw new BerthError('INTERNAL', `sync: nothing is mounted at ${mountpoint}`);
  }

  /** Device sizes in bytes (a test grows a device by setting a larger one); unset: 1 GiB. */
  readonly sizes = new Map<string, number>();
  /** The size each mounted filesystem was last grown to (by mountpoint). */
  readonly filesystemSizes = new Map<string, number>();

  async deviceBytes(devicePath: string): Promise<number> {
    if (!this.host.present.has(devicePath)) throw new BerthError('UNSAFE_DEVICE', `device ${devicePath} is not present`);
    return this.sizes.get(devicePath) ?? 2 ** 30;
  }

  /** Grows the mounted filesystem to its device, as resize2fs / xfs_growfs do online. */
  async grow(devicePath: string, mountpoint: string): Promise<{ grown: boolean }> {
    await this.faults.enter('grow');
    const device = await this.deviceBytes(devicePath);
    const before = this.filesystemSizes.get(mountpoint);
    this.filesystemSizes.set(mountpoint, device);
    return { grown: before !== undefined && device > before };
  }

  async isMounted(mountpoint: string, devicePath?: string): Promise<boolean> {
    const at = this.host.mounts.get(mountpoint);
    return at !== undefined && (devicePath === undefined || at === devicePath);
  }

  async ensureMountpoint(mountpoint: string): Promise<void> {
    await this.faults.enter('ensureMountpoint');
    this.host.mountpoints.add(mountpoint);
  }

  async removeMountpoint(mountpoint: string): Promise<void> {
    await this.faults.enter('removeMountpoint');
    if (this.host.mounts.has(mountpoint)) throw new BerthError('CONFLICT', `${mountpoint} is still mounted`);
    this.host.mountpoints.delete(mountpoint);
  }
}
