import type { VolumeInfo } from './protocol.js';
import type { ViewListener } from './view-changes.js';

/** What the answers are made from: the volume service's local view in Docker's terms, read synchronously. */
export interface LocalView {
  /** Get's volume from the local view alone; undefined when the name is not in it. */
  view(name: string): VolumeInfo | undefined;
  /** Names in the local view, in List's order. */
  names(): string[];
}

/** Answer bodies of the read endpoints, ready to write; undefined: ask the driver. */
export interface PreparedAnswers {
  get(name: string): Buffer | undefined;
  path(name: string): Buffer | undefined;
  list(): Buffer;
}

/**
 * Get, Path and List answers serialized once per change of the local view
 * instead of once per request (dockerd asks Get and Path far more often than
 * volumes change; building and serializing List's 100 volumes took ~3 ms
 * under --lite-mode).
 *
 * Freshness comes from the service's change notifications (view-changes.ts),
 * which its per-name lock sends: every change of a volume's view happens in
 * work the service runs under that volume's lock (or in start/refresh, a
 * reset). A volume's answers are dropped when work on it starts and when it
 * ends, and none is kept while work on it runs, so every answer served from
 * here is what the service itself would answer now.
 */
export class AnswerCache implements PreparedAnswers, ViewListener {
  private readonly working = new Map<string, number>();
  /** Per name, the volume's JSON (Get's Volume, one element of List). */
  private readonly volumes = new Map<string, string>();
  private readonly gets = new Map<string, Buffer>();
  private readonly paths = new Map<string, Buffer>();
  private listBody: Buffer | undefined;

  constructor(private readonly source: LocalView) {}

  workStarted(name: string): void {
    this.working.set(name, (this.working.get(name) ?? 0) + 1);
    this.drop(name);
  }

  workEnded(name: string): void {
    const left = (this.working.get(name) ?? 1) - 1;
    if (left > 0) this.working.set(name, left);
    else this.working.delete(name);
    this.drop(name);
  }

  /** Forgets every answer (the view changed outside per-volume work). */
  reset(): void {
    this.volumes.clear();
    this.gets.clear();
    this.paths.clear();
    this.listBody = undefined;
  }

  get(name: string): Buffer | undefined {
    const hit = this.gets.get(name);
    if (hit) return hit;
    const volume = this.volumeJson(name);
    if (volume === undefined) return undefined;
    return this.keep(this.gets, name, Buffer.from(`{"Volume":${volume},"Err":""}`));
  }

  path(name: string): Buffer | undefined {
    const hit = this.paths.get(name);
    if (hit) return hit;
    const view = this.source.view(name);
    if (!view) return undefined;
    return this.keep(this.paths, name, Buffer.from(JSON.stringify({ Mountpoint: view.Mountpoint ?? '', Err: '' })));
  }

  list(): Buffer {
    if (this.listBody) return this.listBody;
    const parts: string[] = [];
    for (const name of this.source.names()) {
      const volume = this.volumeJson(name);
      if (volume !== undefined) parts.push(volume);
    }
    const body = Buffer.from(`{"Volumes":[${parts.join(',')}],"Err":""}`);
    if (this.working.size === 0) this.listBody = body;
    return body;
  }

  private volumeJson(name: string): string | undefined {
    const hit = this.volumes.get(name);
    if (hit !== undefined) return hit;
    const view = this.source.view(name);
    if (!view) return undefined;
    const json = JSON.stringify(view);
    if (!this.working.has(name)) this.volumes.set(name, json);
    return json;
  }

  private keep(map: Map<string, Buffer>, name: string, body: Buffer): Buffer {
    if (!this.working.has(name)) map.set(name, body);
    return body;
  }

  private drop(name: string): void {
    this.volumes.delete(name);
    this.gets.delete(name);
    this.paths.delete(name);
    this.listBody = undefined;
  }
}
