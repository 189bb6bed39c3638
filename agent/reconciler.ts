import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { errorMessage } from '../lib/errors.js';
import { VOLUME_STATE } from '../lib/node-contract.js';
import { Semaphore } from '../lib/semaphore.js';
import type { VolumeRecord } from '../volume-plugin/backends/backend.js';
import type { EbsBackend } from '../volume-plugin/backends/ebs/ebs-backend.js';
import type { Tags } from '../volume-plugin/backends/ebs/ec2-facade.js';
import type { VolumeManager } from '../volume-plugin/manager.js';

/**
 * Makes the host match its tags. At boot every volume tagged to this host is
 * attached and mounted, concurrently within a bound; after that, a periodic
 * pass repairs drift: a volume newly tagged here is mounted, one detached
 * behind berth's back is mounted again, one whose host tag now names another
 * host is released. Each pass ends by publishing readiness as tags.
 *
 * A volume whose containers stopped (Docker's last Unmount) is left alone:
 * it goes idle, and the backend detaches it after the idle period.
 */

export type Action = 'mount' | 'remount' | 'release' | 'detach';

export interface PlanItem {
  name: string;
  volumeId: string;
  action: Action;
  reason: string;
}

export interface ReconcilerDeps {
  manager: VolumeManager;
  backend: EbsBackend;
  /** Volumes attached and mounted at once; EC2's attach bucket holds 50 and refills 5/s. */
  concurrency: number;
  intervalMs: number;
  logger: Logger;
  registry?: Registry;
}

/** Tag values allow letters, digits, spaces and _ . : / = + - @, up to 256 characters. */
export function shortReason(message: string): string {
  return message.replace(/[^\p{L}\p{N} _.:/=+\-@]/gu, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);
}

export class Reconciler {
  private readonly seen = new Set<string>();
  private readonly failed = new Map<string, string>();
  private readonly published = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<PlanItem[]> | undefined;
  private booted = false;
  private lastError: string | undefined;
  private readonly log: Logger;
  private readonly passes?: Counter;

  constructor(private readonly deps: ReconcilerDeps) {
    this.log = deps.logger;
    if (deps.registry) {
      this.passes = new Counter({ name: 'berth_reconcile_passes_total', help: 'Reconcile passes by outcome', labelNames: ['outcome'], registers: [deps.registry] });
      const failed = this.failed;
      new Gauge({
        name: 'berth_reconcile_volume_errors',
        help: 'Volumes tagged to this host that the last reconcile could not make ready',
        registers: [deps.registry],
        collect() {
          this.set(failed.size);
        },
      });
    }
  }

  /** /readyz: true once boot reconcile finished and every volume tagged here is mounted or idle. */
  readiness(): true | string {
    if (!this.booted) return this.lastError ? `boot reconcile failed: ${this.lastError}` : 'boot reconcile running';
    if (this.failed.size > 0) return `volumes not ready: ${[...this.failed].map(([n, e]) => `${n} (${e})`).join('; ')}`;
    return true;
  }

  /** What a pass would do now, and why; changes nothing. */
  async plan(): Promise<PlanItem[]> {
    const { manager, backend } = this.deps;
    const me = backend.identity.instanceId;
    const tagged = await backend.list();
    const local = new Map(manager.snapshot().map((v) => [v.name, v]));
    const out: PlanItem[] = [];
    for (const r of tagged) {
      const l = local.get(r.name);
      const attachedHere = r.status.attachedTo === me && r.status.attachment === 'attached';
      if (l?.mounted && !attachedHere) {
        out.push({ name: r.name, volumeId: r.id, action: 'remount', reason: `mounted here but EC2 says ${r.status.attachedTo ? `attached to ${r.status.attachedTo}` : 'not attached'} (detached behind berth's back)` });
      } else if (!l?.mounted && !this.seen.has(r.name)) {
        out.push({ name: r.name, volumeId: r.id, action: 'mount', reason: `tagged ${backend.tagKeys.host}=${backend.identity.hostId}${this.booted ? ' since the last pass' : ''}` });
      } else if (!l?.mounted && this.failed.has(r.name)) {
        out.push({ name: r.name, volumeId: r.id, action: 'mount', reason: `retry after: ${this.failed.get(r.name)}` });
      }
    }
    for (const r of await backend.attachedElsewhereTagged()) {
      const owner = r.status.host || 'no host';
      const l = local.get(r.name);
      if (l?.mounted) out.push({ name: r.name, volumeId: r.id, action: 'release', reason: `its host tag names ${owner}, not this host` });
      else out.push({ name: r.name, volumeId: r.id, action: 'detach', reason: `attached here but tagged to ${owner}` });
    }
    return out;
  }

  /** Boot: mount everything tagged here, then publish readiness. */
  async boot(): Promise<PlanItem[]> {
    const started = Date.now();
    const plan = await this.pass();
    this.log.info({ volumes: plan.filter((p) => p.action === 'mount').length, failed: this.failed.size, ms: Date.now() - started }, 'boot reconcile done');
    return plan;
  }

  /** One pass; concurrent callers share the pass in flight. */
  pass(): Promise<PlanItem[]> {
    this.running ??= this.execute().finally(() => (this.running = undefined));
    return this.running;
  }

  start(): void {
    const tick = () => {
      this.pass()
        .catch(() => undefined)
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, this.deps.intervalMs).unref();
        });
    };
    this.timer = setTimeout(tick, this.deps.intervalMs).unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private async execute(): Promise<PlanItem[]> {
    const { manager } = this.deps;
    let plan: PlanItem[];
    try {
      await manager.refresh();
      plan = await this.plan();
    } catch (err) {
      this.lastError = errorMessage(err);
      this.passes?.inc({ outcome: 'error' });
      this.log.error({ err: this.lastError }, 'reconcile could not read the volumes tagged to this host; trying again next pass');
      throw err;
    }
    const limit = new Semaphore(this.deps.concurrency);
    await Promise.all(plan.map((item) => limit.run(() => this.apply(item))));
    this.lastError = undefined;
    this.booted = true;
    await this.publish().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not publish readiness tags; next pass tries again'));
    this.passes?.inc({ outcome: this.failed.size ? 'partial' : 'ok' });
    return plan;
  }

  private async apply(item: PlanItem): Promise<void> {
    const { manager } = this.deps;
    const log = this.log.child({ name: item.name, volumeId: item.volumeId, action: item.action });
    try {
      switch (item.action) {
        case 'mount':
          this.seen.add(item.name);
          await manager.ensureMounted(item.name);
          break;
        case 'remount':
          log.error({ reason: item.reason }, 'volume lost its attachment while mounted');
          if (!(await manager.releaseIfUnused(item.name, item.reason))) throw new Error('detached behind berth while containers use it; restart them');
          await manager.ensureMounted(item.name);
          break;
        case 'release':
          if (!(await manager.releaseIfUnused(item.name, item.reason))) throw new Error('tagged to another host but containers here still use it');
          break;
        case 'detach':
          // Not in the local view: the backend needs only the id to detach.
          await this.deps.backend.detach({ name: item.name, id: item.volumeId } as VolumeRecord);
          break;
      }
      this.failed.delete(item.name);
      log.info({ reason: item.reason }, 'reconciled');
    } catch (err) {
      this.failed.set(item.name, errorMessage(err));
      log.error({ reason: item.reason, err: errorMessage(err) }, 'reconcile action failed');
    }
  }

  /** Readiness tags (DESIGN.md §6), written only when they change. */
  private async publish(): Promise<void> {
    const { backend, manager } = this.deps;
    const k = backend.tagKeys;
    const me = backend.identity.instanceId;
    const tagged = await backend.list();
    const local = new Map(manager.snapshot().map((v) => [v.name, v]));
    const volumes: { id: string; tags: Tags }[] = [];
    let mounted = 0;
    for (const r of tagged) {
      const l = local.get(r.name);
      const error = this.failed.get(r.name) ?? (l?.mounted ? undefined : l?.lastError);
      const state = error ? `${VOLUME_STATE.errorPrefix}${shortReason(error)}` : l?.mounted ? VOLUME_STATE.mounted : VOLUME_STATE.idle;
      if (state === VOLUME_STATE.mounted) mounted++;
      const tags = { [k.attachedTo]: r.status.attachedTo === me ? me : '', [k.state]: state };
      const key = JSON.stringify(tags);
      if (this.published.get(r.id) !== key) volumes.push({ id: r.id, tags });
    }
    const ready = tagged.every((r) => !this.failed.has(r.name) && (local.get(r.name)?.mounted || this.seen.has(r.name)));
    const instance = { [k.ready]: String(ready), [k.readyCount]: String(mounted) };
    const instanceKey = JSON.stringify(instance);
    if (volumes.length === 0 && this.published.get(me) === instanceKey) return;
    await backend.publishReadiness(this.published.get(me) === instanceKey ? {} : instance, volumes);
    for (const v of volumes) this.published.set(v.id, JSON.stringify(v.tags));
    this.published.set(me, instanceKey);
  }
}
