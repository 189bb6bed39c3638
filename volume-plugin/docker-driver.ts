import { BerthError } from '../lib/errors.js';
import { AnswerCache } from './answers.js';
import type { CallOptions, Scope } from './call.js';
import { formatSize } from './options.js';
import type { VolumeDriver, VolumeInfo } from './protocol.js';
import type { VolumeService, VolumeView } from './service.js';

/** A volume as Docker's Get and List show it (`docker volume inspect`: Status). */
export function volumeInfoOf(v: VolumeView): VolumeInfo {
  const { options } = v;
  return {
    Name: v.name,
    Mountpoint: v.mounted ? v.mountpoint : '',
    CreatedAt: v.createdAt,
    Status: {
      ...v.status,
      size: formatSize(options.sizeBytes),
      fs: options.fs,
      onRemove: options.onRemove,
      ...(options.mountOptions ? { mountOptions: options.mountOptions } : {}),
      mounted: v.mounted,
      ...(v.device ? { device: v.device } : {}),
      containerMounts: v.consumers,
      ...(v.unmountPending ? { unmountPending: true } : {}),
      ...(v.lastError ? { lastError: v.lastError } : {}),
      // After an online grow (online-grow.ts): when, and the device size it grew to.
      ...(v.size?.grownAt ? { grownOnlineAt: v.size.grownAt, deviceSize: formatSize(v.size.deviceBytes) } : {}),
    },
  };
}

/**
 * The Docker volume protocol (protocol.ts) over the volume service it is
 * handed: Docker's mount ID is the consumer id, Mount and Unmount publish and
 * unpublish, and Get, Path and List are the service's local view in Docker's
 * wire types. It validates nothing itself: the service checks names and
 * consumer ids at the core's boundary.
 *
 * Its answer cache (answers.ts: Get, Path and List bodies kept serialized
 * between changes, the plugin's hot path) subscribes to the service's change
 * notifications, so Docker's answers stay fresh whoever changed the volume
 * (another front end, the reconciler, the unmount grace).
 */
export class DockerVolumeDriver implements VolumeDriver {
  readonly answers: AnswerCache;

  constructor(readonly service: VolumeService) {
    this.answers = new AnswerCache(this);
    service.subscribe(this.answers);
  }

  create(name: string, opts: Record<string, string>, call?: CallOptions): Promise<void> {
    return this.service.create(name, opts, call);
  }

  remove(name: string, call?: CallOptions): Promise<void> {
    return this.service.remove(name, call);
  }

  mount(name: string, id: string, call?: CallOptions): Promise<string> {
    return this.service.publish(name, id, call);
  }

  unmount(name: string, id: string, call?: CallOptions): Promise<void> {
    return this.service.unpublish(name, id, call);
  }

  async path(name: string): Promise<string> {
    const v = this.service.lookup(name);
    if (!v) throw new BerthError('NOT_FOUND', `no volume named ${name}`);
    return v.mounted ? v.mountpoint : '';
  }

  async get(name: string): Promise<VolumeInfo> {
    return volumeInfoOf(await this.service.find(name));
  }

  async list(): Promise<VolumeInfo[]> {
    return this.service.list().map(volumeInfoOf);
  }

  capabilities(): { Scope: Scope } {
    return { Scope: this.service.scope };
  }

  /** Get's volume from the local view alone (the answer cache's source). */
  view(name: string): VolumeInfo | undefined {
    const v = this.service.describe(name);
    return v && volumeInfoOf(v);
  }

  names(): string[] {
    return this.service.names();
  }
}
