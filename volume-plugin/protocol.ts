import type { CallOptions, Scope } from './call.js';

export type { Scope };

/**
 * The Docker volume plugin protocol (docs/design.md §3) as one interface. Field
 * names are Docker's wire names. The server decodes a request, calls the
 * driver and encodes the answer; all logic lives behind this interface
 * (docker-driver.ts maps it onto the volume service).
 */

export const ACCEPT_HEADER = 'application/vnd.docker.plugins.v1.2+json';

export const Endpoints = {
  activate: '/Plugin.Activate',
  create: '/VolumeDriver.Create',
  remove: '/VolumeDriver.Remove',
  mount: '/VolumeDriver.Mount',
  unmount: '/VolumeDriver.Unmount',
  path: '/VolumeDriver.Path',
  get: '/VolumeDriver.Get',
  list: '/VolumeDriver.List',
  capabilities: '/VolumeDriver.Capabilities',
} as const;

export interface VolumeInfo {
  Name: string;
  /** Empty or absent while the volume is not mounted on this host. */
  Mountpoint?: string;
  /** RFC 3339. */
  CreatedAt?: string;
  Status?: Record<string, unknown>;
}

/**
 * `call.signal` aborts when the caller is gone (dockerd closed the connection
 * or its deadline passed): the driver stops, undoes the work and counts nothing.
 */
export interface VolumeDriver {
  create(name: string, opts: Record<string, string>, call?: CallOptions): Promise<void>;
  remove(name: string, call?: CallOptions): Promise<void>;
  /** Resolves only once the volume is verifiably mounted; returns the mountpoint. */
  mount(name: string, id: string, call?: CallOptions): Promise<string>;
  /** An unknown id is success. */
  unmount(name: string, id: string, call?: CallOptions): Promise<void>;
  /** The mountpoint, or '' when not mounted. Answers from local state. */
  path(name: string): Promise<string>;
  /** Answers from local state; fails only when the volume authoritatively does not exist. */
  get(name: string): Promise<VolumeInfo>;
  list(): Promise<VolumeInfo[]>;
  capabilities(): { Scope: Scope };
}
