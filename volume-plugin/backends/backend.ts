import type { VolumeOptions } from '../options.js';
import type { Scope } from '../protocol.js';

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
  /** Backend facts shown by `docker volume inspect` (Status), e.g. volumeId, az, attachedTo. */
  status: Record<string, string>;
}

/** A block device whose identity was checked against the record. */
export interface AttachedDevice {
  /** Absolute path of the block device, e.g. /dev/loop3 or /dev/nvme2n1. */
  devicePath: string;
  /** The record as of the attach (may carry new status, e.g. the instance it is attached to). */
  record: VolumeRecord;
}

export interface Backend {
  readonly kind: 'loop' | 'ebs';
  readonly scope: Scope;
  /** Refuse options this backend cannot honour, with a clear error, before anything is created. */
  validate(name: string, options: VolumeOptions): void;
  /** Idempotent: finds the volume by name or creates it with these options. */
  create(name: string, options: VolumeOptions): Promise<VolumeRecord>;
  /** Authoritative lookup; undefined only when the volume surely does not exist. */
  find(name: string): Promise<VolumeRecord | undefined>;
  /** Volumes that belong to this host. */
  list(): Promise<VolumeRecord[]>;
  /** Makes the volume's block device present on this host and returns it verified. */
  attach(record: VolumeRecord): Promise<AttachedDevice>;
  /** The volume is no longer mounted here; the backend may detach now (loop) or after an idle period (ebs). */
  release(record: VolumeRecord): Promise<void>;
  /** Detaches at once. Detaching a volume that is not attached is success. */
  detach(record: VolumeRecord): Promise<void>;
  /** Honours options.onRemove: retain keeps the data (and untags it from this host), delete destroys it. */
  remove(record: VolumeRecord): Promise<void>;
}
