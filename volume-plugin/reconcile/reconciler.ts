import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { errorMessage, isBerthError, StillWaiting } from '../../lib/errors.js';
import { VOLUME_STATE } from '../../lib/node-contract.js';
import { Semaphore } from '../../lib/semaphore.js';
import type { VolumeRecord } from '../backends/backend.js';
import type { DuplicateName, HostSurvey, ReconcileService, SurveyingBackend, Tags, VolumeFacts } from './ports.js';

/**
 * Makes the host match its tags. At boot every volume tagged to this host is
 * attached and mounted, concurrently within a bound; after that, a periodic
 * pass repairs drift: a volume newly tagged here is mounted, one detached
 * behind berth's back is mounted again, one whose host tag now names another
 * host is released. Each pass ends by publishing readiness as tags.
 *
 * A volume whose containers stopped (Docker's last Unmount) is left alone:
 * it goes idle, and the backend detaches it after the idle period.
 *
 * Decisions rest on the backend's typed facts (VolumeFacts: host tag,
 * attachment instance and state), never on `VolumeRecord.status`, which is
 * only what `docker volume inspect` shows. Each pass reads the cloud once
 * (backend.survey(): for EBS one DescribeVolumes in the steady state) and
 * hands that list to the manager, the plan and the readiness tags. Every
 * action runs under the manager's per-name lock.
 *
 * It sits above the core, over two ports (ports.ts): the core's operations
 * (ReconcileService, which VolumeService satisfies) and a backend that can
 * survey its cloud (SurveyingBackend); it imports no backend (docs/design.md §6).
 */

export type Action = 'mount' | 'remount' | 'release' | 'detach';

export interface PlanItem {
  name: string;
  volumeId: string;
  action: Action;
  reason: string;
}

export interface ReconcilerDeps {
  /** The core (VolumeService satisfies it). */
  manager: ReconcileService;
  /** A backend that surveys its cloud (the EBS backend). */
  backend: SurveyingBackend;
  /** Volumes attached and mounted at once (BERTH_ATTACH_CONCURRENCY); the facade paces the attachments at EC2's 5/s. */
  concurrency: number;
  intervalMs: number;
  logger: Logger;
  registry?: Registry;
}

/** Why the last pass could not make a volume ready. */
interface Failure {
  message: string;
  /**
   * The device holds data berth will not touch (UNSAFE_DEVICE: another filesystem, a partition
   * table, an unverified device). Retrying cannot help until the volume changes, so the periodic
   * pass does not attach, refuse and detach it again every time; a Docker Mount still may.
   */
  refused: boolean;
  /** The volume as it was when it failed (id and options); a change clears a refusal. */
  fingerprint: string;
  /**
   * EC2 had no room for it in time (StillWaiting: the account's budget, a brownout): nothing was
   * done and a later try goes through. Published as `attaching`, not as an error.
   */
  waiting: boolean;
}

const fingerprintOf = (r: VolumeRecord) => `${r.id} ${JSON.stringify(r.options)}`;

/** Attached to this instance, or attaching to it (DescribeVolumes reports a completed attachment a little after the host sees it). */
const attachedTo = (f: VolumeFacts, instanceId: string) => f.attachment?.instanceId === instanceId && (f.attachment.state === 'attached' || f.attachment.state === 'attaching');

/** Tag values allow letters, digits, spaces and _ . : / = + - @, up to 256 characters. */
export function shortReason(message: string): string {
  return message.replace(/[^\p{L}\p{N} _.:/=+\-@]/gu, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);
}

/** How soon a pass comes again after one that left volumes not ready (nextPassMs). */
const RETRY_NOT_READY_MS = 10_000;
/**
 * While every volume not ready is waiting for EC2's budget (StillWaiting), the passes that retry
 * them read EC2 this seldom (at least the interval): they retry from the last survey, and the
 * budget the host waits for is not spent on asking again (docs/design.md §6, "The reconciler").
 */
export const WAITING_SURVEY_MS = 300_000;

export class Reconciler {
  private readonly seen = new Set<string>();
  private readonly failed = new Map<string, Failure>();
  private duplicates: DuplicateName[] = [];
  /** Each tagged volume as the last plan saw it, for Failure.fingerprint. */
  private readonly fingerprints = new Map<string, string>();
  private duplicatesKey = '[]';
  /** The last pass's verdict: what /readyz answers and what the instance's ready tag says. */
  private verdict: true | string = true;
  private readonly published = new Map<string, string>();
  /** The last survey, and when it was read: a pass that only retries volumes waiting for the budget starts from it. */
  private surveyed: { at: number; survey: HostSurvey } | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The periodic pass's timer callback (start()), and the unsubscribe from the core's work notifications. */
  private tick: (() => void) | undefined;
  private unsubscribe: (() => void) | undefined;
  private running: Promise<PlanItem[]> | undefined;
  private booted = false;
  private lastError: string | undefined;
  private readonly log: Logger;
  private readonly passes?: Counter;
  /** Volumes tagged to this host by the state the last pass published (mounted, idle, error). */
  private byState: Record<'mounted' | 'idle' | 'attaching' | 'error', number> = { mounted: 0, idle: 0, attaching: 0, error: 0 };

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
      const byState = () => this.byState;
      new Gauge({
        name: 'berth_volumes_by_state',
        help: 'Volumes tagged to this host by the state the last reconcile published in their state tag (mounted, idle, attaching, error)',
        labelNames: ['state'],
        registers: [deps.registry],
        collect() {
          for (const [state, count] of Object.entries(byState())) this.set({ state }, count);
        },
      });
      const ready = () => this.readiness() === true;
      new Gauge({
        name: 'berth_volumes_ready',
        help: '1 when boot reconcile finished and every volume tagged to this host is mounted or idle (the verdict of /readyz and the instance ready tag), else 0',
        registers: [deps.registry],
        collect() {
          this.set(ready() ? 1 : 0);
        },
      });
      const duplicates = () => this.duplicates.length;
      new Gauge({
        name: 'berth_ebs_duplicate_volume_names',
        help: 'Names carried by more than one EBS volume tagged to this host (berth uses none of the extra ones)',
        registers: [deps.registry],
        collect() {
          this.set(duplicates());
        },
      });
    }
  }

  /**
   * /readyz: true once boot reconcile finished and every volume tagged here is mounted or idle.
   * The same verdict as the instance's ready tag, from the last pass (see publish()).
   */
  readiness(): true | string {
    if (!this.booted) return this.lastError ? `boot reconcile failed: ${this.lastError}` : 'boot reconcile running';
    return this.verdict;
  }

  /** What a pass would do now, and why; changes nothing. */
  async plan(): Promise<PlanItem[]> {
    const mountedBefore = this.mountedNow();
    return this.planOf(await this.deps.backend.survey(), mountedBefore);
  }

  private mountedNow(): ReadonlySet<string> {
    return new Set(this.deps.manager.list().filter((v) => v.mounted).map((v) => v.name));
  }

  /**
   * `mountedBefore`: the names mounted here when the survey was asked for. Only those can have lost
   * their attachment behind berth's back: a volume a Mount attached since may not show attached in
   * that survey yet (EC2's answer lags the host's view), and is not remounted for it.
   */
  private planOf(survey: HostSurvey, mountedBefore: ReadonlySet<string>): PlanItem[] {
    const { manager, backend } = this.deps;
    const me = backend.identity.instanceId;
    this.noteDuplicates(survey.duplicates);
    const local = new Map(manager.list().map((v) => [v.name, v]));
    const out: PlanItem[] = [];
    for (const f of survey.tagged) {
      this.fingerprints.set(f.name, fingerprintOf(f.record));
      const failure = this.failed.get(f.name);
      const l = local.get(f.name);
      if (failure?.refused && failure.fingerprint === fingerprintOf(f.record) && !l?.mounted) continue;
      if (l?.mounted && mountedBefore.has(f.name) && !attachedTo(f, me)) {
        const where = f.attachment ? `${f.attachment.state} to ${f.attachment.instanceId}` : 'not attached';
        out.push({ name: f.name, volumeId: f.volumeId, action: 'remount', reason: `mounted here but EC2 says ${where} (detached behind berth's back)` });
      } else if (!l?.mounted && !this.seen.has(f.name)) {
        out.push({ name: f.name, volumeId: f.volumeId, action: 'mount', reason: `tagged ${backend.tagKeys.host}=${backend.identity.hostId}${this.booted ? ' since the last pass' : ''}` });
      } else if (!l?.mounted && failure) {
        out.push({ name: f.name, volumeId: f.volumeId, action: 'mount', reason: `${failure.refused ? 'the volume changed since berth refused it' : 'retry after'}: ${failure.message}` });
      }
    }
    for (const f of survey.strays) {
      const owner = f.hostTag || 'no host';
      if (local.get(f.name)?.mounted) out.push({ name: f.name, volumeId: f.volumeId, action: 'release', reason: `its host tag names ${owner}, not this host` });
      else out.push({ name: f.name, volumeId: f.volumeId, action: 'detach', reason: `attached here but tagged to ${owner}` });
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
          if (this.timer) this.timer = setTimeout(tick, this.nextPassMs()).unref();
        });
    };
    this.tick = tick;
    this.timer = setTimeout(tick, this.nextPassMs()).unref();
    // A Mount that made the last of the volumes the last pass left not ready: the verdict (and the tags) follow at
    // once, not at the next retry; that pass retries from the last survey when they were waiting for EC2's budget.
    this.unsubscribe = this.deps.manager.subscribe?.({
      workStarted: () => undefined,
      workEnded: (name) => {
        if (this.failed.get(name)?.refused === false) this.passNowIfAllMounted();
      },
      reset: () => undefined,
    });
  }

  private passNowIfAllMounted(): void {
    if (!this.timer || !this.tick || this.running) return;
    const mounted = new Set(this.deps.manager.list().filter((v) => v.mounted).map((v) => v.name));
    if ([...this.failed].some(([name, f]) => !f.refused && !mounted.has(name))) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(this.tick, 0).unref();
  }

  /**
   * The next pass comes after the interval; sooner while the last pass left volumes not ready for
   * reasons a retry can mend (a Mount cut by its deadline while the account's EC2 budget was
   * slow): the host is back ready soon after the budget allows, not up to a whole interval later.
   * The facade's pacer keeps the retries from adding to the account's load (docs/design.md §6).
   */
  private nextPassMs(): number {
    const retryable = [...this.failed.values()].some((f) => !f.refused);
    return retryable ? Math.min(this.deps.intervalMs, RETRY_NOT_READY_MS) : this.deps.intervalMs;
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.running?.catch(() => undefined);
  }

  /**
   * The last survey, when this pass only retries volumes waiting for EC2's budget: every volume the
   * last pass could not make ready is waiting (none failed otherwise), and the survey is younger
   * than WAITING_SURVEY_MS (or the interval, if longer). Else undefined: the pass reads EC2.
   */
  private retryFrom(): HostSurvey | undefined {
    const last = this.surveyed;
    if (!last || !this.booted) return undefined;
    const failures = [...this.failed.values()].filter((f) => !f.refused);
    if (failures.length === 0 || failures.some((f) => !f.waiting)) return undefined;
    return Date.now() - last.at < Math.max(this.deps.intervalMs, WAITING_SURVEY_MS) ? last.survey : undefined;
  }

  /** A retry from the last survey: mount again what waits for EC2's budget, nothing else (no decision on facts that old). */
  private retryPlan(survey: HostSurvey): PlanItem[] {
    const local = new Map(this.deps.manager.list().map((v) => [v.name, v]));
    const out: PlanItem[] = [];
    for (const f of survey.tagged) {
      const failure = this.failed.get(f.name);
      if (!failure || failure.refused || local.get(f.name)?.mounted) continue;
      out.push({ name: f.name, volumeId: f.volumeId, action: 'mount', reason: `retry after: ${failure.message}` });
    }
    return out;
  }

  private async execute(): Promise<PlanItem[]> {
    const { manager, backend } = this.deps;
    let plan: PlanItem[];
    let survey: HostSurvey;
    try {
      const last = this.retryFrom();
      if (last) {
        survey = last;
        plan = this.retryPlan(survey);
      } else {
        const at = Date.now();
        const mountedBefore = this.mountedNow();
        survey = await backend.survey();
        this.surveyed = { at, survey };
        await manager.refresh(survey.tagged.map((f) => f.record));
        plan = this.planOf(survey, mountedBefore);
      }
    } catch (err) {
      this.lastError = errorMessage(err);
      this.passes?.inc({ outcome: 'error' });
      this.log.error({ err: this.lastError }, 'reconcile could not read the volumes tagged to this host; trying again next pass');
      throw err;
    }
    const strays = new Map(survey.strays.map((f) => [f.volumeId, f.record]));
    // Bounded: 200 volumes at once made 200 chattr/blkid spawns at once, and the tools' own time limits failed some.
    const limit = new Semaphore(this.deps.concurrency);
    await Promise.all(plan.map((item) => limit.run(() => this.apply(item, strays.get(item.volumeId)))));
    this.lastError = undefined;
    this.booted = true;
    await this.publish(survey, new Set(plan.map((p) => p.name))).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not publish readiness tags; next pass tries again'));
    this.passes?.inc({ outcome: this.failed.size ? 'partial' : 'ok' });
    return plan;
  }

  /** `stray`: the record of a volume to detach (not in the local view). */
  private async apply(item: PlanItem, stray?: VolumeRecord): Promise<void> {
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
          // Under the name's lock: a Mount of this name that got the volume meanwhile keeps it.
          if (!(await manager.detachIfUnused(stray!, item.reason))) throw new Error('tagged to another host but mounted here meanwhile; the next pass releases it when unused');
          break;
      }
      this.failed.delete(item.name);
      log.info({ reason: item.reason }, 'reconciled');
    } catch (err) {
      // Removed (docker volume rm) after this pass read EC2: nothing is left to make ready (bench/soak.ts saw /readyz 503 until the next pass).
      if (item.action === 'mount' && isBerthError(err, 'NOT_FOUND')) {
        log.info({ reason: item.reason }, 'removed since this pass read EC2; nothing to mount');
        return;
      }
      const refused = item.action !== 'release' && item.action !== 'detach' && isBerthError(err, 'UNSAFE_DEVICE');
      // A mount waiting for EC2's budget; a release or detach is retried on fresh facts as before (another host may be waiting for it).
      const waiting = (item.action === 'mount' || item.action === 'remount') && err instanceof StillWaiting;
      this.failed.set(item.name, { message: errorMessage(err), refused, waiting, fingerprint: this.fingerprints.get(item.name) ?? item.volumeId });
      if (refused) log.error({ reason: item.reason, err: errorMessage(err) }, 'berth refused this volume\'s device and detached it; not retried until the volume changes (a Docker Mount still tries)');
      else if (waiting) log.warn({ reason: item.reason, err: errorMessage(err) }, 'still waiting for EC2 (the account\'s API budget); retried soon');
      else log.error({ reason: item.reason, err: errorMessage(err) }, 'reconcile action failed');
    }
  }

  /** Duplicates are logged when they change, counted in a metric, and named in readiness. */
  private noteDuplicates(duplicates: DuplicateName[]): void {
    this.duplicates = duplicates;
    const key = JSON.stringify(duplicates);
    if (key === this.duplicatesKey) return;
    this.duplicatesKey = key;
    for (const d of duplicates) {
      this.log.error(
        { name: d.name, volumeIds: d.volumeIds, kept: d.kept },
        d.kept
          ? `a second EBS volume is tagged with this name; berth keeps using ${d.kept} (attached here) and touches none of the others: untag or delete the wrong one`
          : 'several EBS volumes are tagged with this name and none is attached here; berth uses none of them: untag or delete the wrong one',
      );
    }
  }

  /**
   * Readiness tags (docs/design.md §6), written only when they change, and the verdict /readyz
   * answers: both from the same facts, this pass's survey and what the pass did, so they agree.
   * A failure is kept only while its volume is still tagged here and not mounted (or was acted on
   * in this pass): a volume removed, deleted or mounted since stops counting. A volume tagged here
   * after the survey counts from the next pass.
   */
  private async publish(survey: HostSurvey, actedOn: ReadonlySet<string>): Promise<void> {
    const { backend, manager } = this.deps;
    const k = backend.tagKeys;
    const me = backend.identity.instanceId;
    const { tagged, duplicates } = survey;
    const local = new Map(manager.list().map((v) => [v.name, v]));
    const taggedNames = new Set(tagged.map((f) => f.name));
    for (const name of [...this.failed.keys()]) {
      const stillTagged = taggedNames.has(name) && !local.get(name)?.mounted;
      if (!stillTagged && !actedOn.has(name)) this.failed.delete(name);
    }
    const all: { id: string; tags: Tags }[] = [];
    const reasons: string[] = [];
    let mounted = 0;
    const byState = { mounted: 0, idle: 0, attaching: 0, error: 0 };
    for (const f of tagged) {
      const l = local.get(f.name);
      const failure = this.failed.get(f.name);
      // A volume waiting for EC2's budget is `attaching` (waiting helps), whatever its message's counts say: the tag is
      // written when that state changes, not on every pass (the message, with its detail, is in /readyz and the log).
      const kind = failure ? (failure.waiting ? 'attaching' : 'error') : l?.mounted ? 'mounted' : 'idle';
      const state = kind === 'error' ? `${VOLUME_STATE.errorPrefix}${shortReason(failure!.message)}` : VOLUME_STATE[kind];
      if (kind === 'mounted') mounted++;
      byState[kind]++;
      if (!failure && !l?.mounted && !this.seen.has(f.name)) reasons.push(`${f.name} (not mounted yet)`);
      // Mounted means attached here; otherwise as surveyed, unless this pass acted on it (a failed mount detaches).
      const here = l?.mounted === true || (f.attachment?.instanceId === me && !actedOn.has(f.name));
      all.push({ id: f.volumeId, tags: { [k.attachedTo]: here ? me : '', [k.state]: state } });
    }
    for (const [name, f] of [...this.failed].sort(([a], [b]) => a.localeCompare(b))) reasons.push(`${name} (${f.refused ? 'refused, not retried until it changes: ' : ''}${f.message})`);
    for (const d of duplicates) {
      reasons.push(`${d.name} (${d.volumeIds.length} EBS volumes carry this name: ${d.volumeIds.join(', ')}; ${d.kept ? `berth keeps using ${d.kept}` : 'berth uses none of them'}; untag or delete the wrong one)`);
      for (const id of d.volumeIds.filter((x) => x !== d.kept)) {
        all.push({ id, tags: { [k.state]: `${VOLUME_STATE.errorPrefix}${shortReason(`duplicate ${k.volume}=${d.name}`)}` } });
      }
    }
    this.byState = byState;
    this.verdict = reasons.length === 0 ? true : `volumes not ready: ${reasons.join('; ')}`;
    const volumes = all.filter((v) => this.published.get(v.id) !== JSON.stringify(v.tags));
    const instance = { [k.ready]: String(this.verdict === true), [k.readyCount]: String(mounted) };
    const instanceKey = JSON.stringify(instance);
    if (volumes.length === 0 && this.published.get(me) === instanceKey) return;
    await backend.publishReadiness(this.published.get(me) === instanceKey ? {} : instance, volumes);
    for (const v of volumes) this.published.set(v.id, JSON.stringify(v.tags));
    this.published.set(me, instanceKey);
  }
}
