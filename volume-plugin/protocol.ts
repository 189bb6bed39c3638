/**
 * The Docker volume plugin protocol (docs/design.md §3) as one interface. Field
 * names are Docker's wire names. The server decodes a request, calls the
 * driver and encodes the answer; all logic lives behind this interface.
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

export type Scope = 'local' | 'global';

export interface VolumeDriver {
  create(name: string, opts: Record<string, string>): Promise<void>;
  remove(name: string): Promise<void>;
  /** Resolves only once the volume is verifiably mounted; returns the mountpoint. */
  mount(name: string, id: string): Promise<string>;
  /** An unknown id is success. */
  unmount(name: string, id: string): Promise<void>;
  /** The mountpoint, or '' when not mounted. Answers from local state. */
  path(name: string): Promise<string>;
  /** Answers from local state; fails only when the volume authoritatively does not exist. */
  get(name: string): Promise<VolumeInfo>;
  list(): Promise<VolumeInfo[]>;
  capabilities(): { Scope: Scope };
}
