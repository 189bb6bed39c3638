import { BerthError } from '../lib/errors.js';
import { quote } from '../lib/quote.js';
import { AnswerCache } from './answers.js';
import type { CallOptions } from './backends/backend.js';
import { assertVolumeName, formatSize } from './options.js';
import type { Scope, VolumeDriver, VolumeInfo } from './protocol.js';
import { VolumeService, type ServiceDeps, type VolumeView } from './service.js';

/** Docker's mount IDs as dockerd sends them (64 hex digits; anything of this shape is accepted). */
const MOUNT_ID = /^[A-Za-z0-9_.-]{1,128}$/;

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
    },
  };
}

/**
 * The Docker volume protocol (protocol.ts) over the volume service: Docker's
 * mount ID is the consumer id, Mount and Unmount publish and unpublish, and
 * Get, Path and List are the service's local view in Docker's wire types.
 *
 * It makes the service because of the answer cache: Get, Path and List
 * bodies are kept serialized between changes (the plugin's hot path), and
 * the cache learns of every change from the service's per-name lock, which
 * it therefore provides. Another front end (docs/design.md §4, CSI) takes
 * `service` from here; its calls take the same lock, so Docker's answers
 * stay fresh whoever changed the volume.
 */
export class DockerVolumeDriver implements VolumeDriver {
  readonly answers: AnswerCache;
  readonly service: VolumeService;

  constructor(deps: Omit<ServiceDeps, 'lock' | 'onViewReset'>) {
    this.answers = new AnswerCache(this);
    this.service = new VolumeService({ ...deps, lock: this.answers.lock, onViewReset: () => this.answers.invalidate() });
  }

  create(name: string, opts: Record<string, string>, call?: CallOptions): Promise<void> {
    return this.service.create(name, opts, call);
  }

  remove(name: string, call?: CallOptions): Promise<void> {
    return this.service.remove(name, call);
  }

  async mount(name: string, id: string, call?: CallOptions): Promise<string> {
    assertVolumeName(name);
    if (!MOUNT_ID.test(id)) throw new BerthError('INVALID_ARGUMENT', `invalid mount ID ${quote(id)}`);
    return this.service.publish(name, id, call);
  }

  unmount(name: string, id: string, call?: CallOptions): Promise<void> {
    return this.service.unpublish(name, id, call);
  }

  async path(name: string): Promise<string> {
    assertVolumeName(name);
    const v = this.service.describe(name);
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
