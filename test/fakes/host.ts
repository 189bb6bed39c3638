/**
 * What the in-memory Backend and FilesystemOps share, as the kernel is shared
 * by the real loop backend and the real filesystem operations: which block
 * devices are present, what filesystem each holds, what is mounted where.
 */
export class FakeHost {
  /** Device paths present now (attached). */
  readonly present = new Set<string>();
  /** Device path → the filesystem on it (kept while detached: it is the volume's data). */
  readonly formatted = new Map<string, 'ext4' | 'xfs'>();
  /** Devices whose mkfs began and never finished (a partial filesystem). */
  readonly partial = new Set<string>();
  /** Mountpoint → device mounted there (mountinfo). */
  readonly mounts = new Map<string, string>();
  /** Mountpoint directories that exist. */
  readonly mountpoints = new Set<string>();
}
