import type { Filesystem } from '../options.js';

export interface PrepareOptions {
  /**
   * A format of this device was started and never completed (the caller's
   * mark): a device that blkid finds blank or holding a partial filesystem of
   * the asked kind is formatted again. Never set it for a device that was mounted.
   */
  interrupted?: boolean;
  /** Runs just before mkfs: the caller records its mark here (and may refuse by throwing). */
  beforeFormat?: () => Promise<void>;
  /** mkfs is stopped when this aborts (the caller's mark then still says the format was interrupted). */
  signal?: AbortSignal;
  /** The backend knows the device reads as zeros (AttachedDevice.blank): formatted without running blkid. */
  blank?: boolean;
}

export interface MountOptions {
  /**
   * The caller's prepare() formatted this device in this same call, under the
   * volume's lock, and nothing has mounted it since: the filesystem is the
   * one mkfs just made, so its check (e2fsck) and its size read for the grow
   * check are skipped (docs/design.md §6).
   */
  justFormatted?: boolean;
  /** mount(8) is stopped when this aborts (the caller's deadline); fsck is let finish. */
  signal?: AbortSignal;
}

/**
 * Filesystem operations on a verified block device (docs/design.md §6 formatting
 * rules). Implemented over real blkid/mkfs/fsck/mount with an injected Runner.
 */
export interface FilesystemOps {
  /**
   * Formats the device only when blkid finds nothing on it (exit 2). A device
   * holding the asked filesystem is left alone; one holding another
   * filesystem or a partition table is refused (UNSAFE_DEVICE), data untouched.
   */
  prepare(devicePath: string, fs: Filesystem, options?: PrepareOptions): Promise<{ formatted: boolean }>;
  /** fsck (ext4) then mount; resolves only once mountinfo shows this device at this mountpoint. */
  mount(devicePath: string, mountpoint: string, fs: Filesystem, mountOptions?: string, options?: MountOptions): Promise<void>;
  /** Unmounting what is not mounted is success; resolves only once mountinfo no longer shows it. */
  unmount(mountpoint: string): Promise<void>;
  /** Grows the mounted filesystem online to the device size when it is smaller. */
  grow(devicePath: string, mountpoint: string, fs: Filesystem, options?: Pick<MountOptions, 'justFormatted'>): Promise<{ grown: boolean }>;
  /**
   * The block device's size in bytes, from sysfs (`/sys/dev/block/<maj:min>/size`): one small read, no
   * process, no filesystem read; the online grow check reads it for every mounted volume (online-grow.ts).
   */
  deviceBytes(devicePath: string): Promise<number>;
  /** Writes the mounted filesystem's dirty data and metadata to its device (syncfs(2)). */
  sync(mountpoint: string): Promise<void>;
  /** Whether mountinfo shows something (that device, when given) mounted at the mountpoint. */
  isMounted(mountpoint: string, devicePath?: string): Promise<boolean>;
  /** Creates the empty mountpoint directory and makes it immutable (chattr +i). */
  ensureMountpoint(mountpoint: string): Promise<void>;
  /** Clears the immutable flag and removes the (unmounted, empty) directory. */
  removeMountpoint(mountpoint: string): Promise<void>;
}
