import type { CallOptions, Scope } from '../call.js';
import type { BackendOptions, VolumeOptions } from '../options.js';

export type { CallOptions, Scope };

/**
 * What a backend knows of one volume. `id` is the backend's own identity for
 * it (loop: image path; ebs: vol-…), the thing a block device is verified
 * against before anything is formatted or mounted.
 */
export interface VolumeRecord {
  name: string;
  id: string;
  options: VolumeOptions;
  /** RFC 3339. */
  createdAt: string;
  /**
   * Backend facts for people, shown by `docker volume inspect` (Status) and
   * /status, e.g. volumeId, az, attachedTo. Display only: nothing decides on
   * these keys or values (renaming one must change no behaviour); facts code
   * acts on belong in typed fields.
   */
  status: Record<string, string>;
}

/** A block device whose identity was checked against the record. */
export interface AttachedDevice {
  /** Absolute path of the block device, e.g. /dev/loop3 or /dev/nvme2n1. */
  devicePath: string;
  /** The record as of the attach (may carry new status, e.g. the instance it is attached to). */
  record: VolumeRecord;
  /** The device reads as zeros (a loop image this agent made and never attached): the probe for existing data is skipped. */
  blank?: boolean;
}

export interface CreateOptions extends CallOptions {
  /**
   * Called with a volume that already exists under the name (retained or not)
   * before create() adopts or returns it; throwing refuses the Create with no
   * side effect (a refused Create must not adopt a retained volume).
   */
  accept?(existing: VolumeRecord, retained: boolean): void;
}

/** A volume removed with onRemove=retain whose data this backend still keeps on this host (`berth retained`). */
export interface RetainedVolume {
  name: string;
  /** Where the data is kept, for people (loop: the image file). */
  image: string;
  sizeBytes: number;
  /** Bytes the data really takes; undefined when it is missing. */
  allocatedBytes: number | undefined;
  createdAt: string;
  /** Devices still backed by the data: it is in use, and is never purged. */
  devices: string[];
}

/** Where a resize stands when the backend answers (docs/design.md §6 "Online grow"). */
export interface ResizeResult {
  /** The record with the new options (size, and the backend's own keys). */
  record: VolumeRecord;
  /**
   * `done`: the device has its new size now (loop); `optimizing`: EBS's modification is far enough for the
   * new size to be usable; `modifying`: not yet: the agent's online grow check grows the filesystem once the
   * device shows the new size.
   */
  state: 'done' | 'optimizing' | 'modifying';
  /** A sentence for people, e.g. the modification's id and progress. */
  detail?: string;
}

export interface Backend {
  readonly scope: Scope;
  /** The option keys this backend takes beyond the core's (options.ts), their parsers and stored schema. */
  readonly options: BackendOptions;
  /** Refuse options this backend cannot honour, with a clear error, before anything is created. */
  validate(name: string, options: VolumeOptions): void;
  /**
   * Idempotent: finds the volume by name or creates it with these options. A
   * Create that fails leaves nothing behind (no image, no metadata, no volume).
   */
  create(name: string, options: VolumeOptions, call?: CreateOptions): Promise<VolumeRecord>;
  /** Authoritative lookup; undefined only when the volume surely does not exist. */
  find(name: string): Promise<VolumeRecord | undefined>;
  /** Volumes that belong to this host. */
  list(): Promise<VolumeRecord[]>;
  /** Makes the volume's block device present on this host and returns it verified. */
  attach(record: VolumeRecord, call?: CallOptions): Promise<AttachedDevice>;
  /** The volume is no longer mounted here; the backend may detach now (loop) or after an idle period (ebs). */
  release(record: VolumeRecord): Promise<void>;
  /** Detaches at once. Detaching a volume that is not attached is success. */
  detach(record: VolumeRecord): Promise<void>;
  /** Honours options.onRemove: retain keeps the data (and untags it from this host), delete destroys it. */
  remove(record: VolumeRecord, call?: CallOptions): Promise<void>;
  /**
   * At start, before any call: undoes what an agent that died (SIGKILL) left
   * behind, e.g. tools still running on its devices and devices attached for
   * volumes that are not mounted. `mounted` holds the ids of volumes mounted now.
   */
  recover?(mounted: ReadonlySet<string>): Promise<void>;
  /**
   * Changes the volume in place to `options` (the record's own with a larger size and/or the backend's keys
   * changed), under the backend's rules, each refused with a clear error before anything changes. Absent:
   * this backend cannot resize.
   */
  resize?(record: VolumeRecord, options: VolumeOptions, call?: CallOptions): Promise<ResizeResult>;
  /**
   * Checks that the block device is still this volume's (the same check as attach's); throws UNSAFE_DEVICE
   * when it is not. The online grow (online-grow.ts) grows nothing this does not vouch for.
   */
  verifyDevice?(record: VolumeRecord, devicePath: string): Promise<void>;
  /** Retained volumes whose data this backend keeps on this host; absent when it keeps none here (ebs: they are EBS volumes). */
  retained?(): Promise<RetainedVolume[]>;
  /**
   * Deletes a retained volume's data for good. Refuses (CONFLICT, nothing
   * deleted) one whose data a device still uses, and (NOT_FOUND) a name that
   * is not retained, so a volume a Create adopted meanwhile is never deleted.
   */
  purgeRetained?(name: string): Promise<RetainedVolume>;
}
