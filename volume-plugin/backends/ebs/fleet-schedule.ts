import type { Logger } from 'pino';
import { Gauge, Histogram, type Registry } from 'prom-client';
import * as z from 'zod/mini';
import { BerthError, errorMessage } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { pause } from './pacer.js';
import type { ScheduleStore } from './schedule-store.js';

/**
 * The account's EC2 schedule (docs/design.md §6, "Sharing the account"; issue 23): one small
 * document per account and Region, in a ScheduleStore (schedule-store.ts), that every host's
 * agent reads and changes only by compare-and-swap. Per EC2 bucket it is a ticket queue (GCRA
 * with shared state): `next`, the last ticket handed out, and `served(t)`, how many tickets may
 * have been sent by time t. A host reserves tickets for its waiting calls (one CAS for all of
 * them), sleeps until its ticket's time, and sends. A refusal cuts the bucket's rate for the
 * whole fleet (halved, at least a tenth of EC2's refill), and the rate then doubles every 10 s
 * back to EC2's refill; the queue's order is kept across a cut.
 *
 * The pure state math (servedAt, timeOf, reserveIn, cutIn, …) is separate from the I/O
 * (FleetSchedule) so the unit tests drive it with an injected time.
 */

/**
 * EC2's documented account-level token buckets for the calls berth makes (AWS, "Request
 * throttling for the Amazon EC2 API", API request rate limits, read 2026-12-06): the bucket's
 * capacity (`burst`) and refill per second. The EC2 model in test/aws keeps its own copy (it is
 * AWS's truth there); test/unit/ebs/fleet-schedule.test.ts asserts the two agree.
 */
export const EC2_ACCOUNT_BUCKETS = {
  /** AttachVolume, DetachVolume, DeleteVolume. */
  mutating: { burst: 50, perSecond: 5, actions: ['AttachVolume', 'DetachVolume', 'DeleteVolume'] },
  /** CreateTags, DeleteTags. */
  tags: { burst: 100, perSecond: 10, actions: ['CreateTags', 'DeleteTags'] },
  /** DescribeVolumes with filters (berth's are always filtered). */
  describeVolumes: { burst: 100, perSecond: 20, actions: ['DescribeVolumes'] },
  describeInstances: { burst: 100, perSecond: 20, actions: ['DescribeInstances'] },
} as const;
export type Ec2Bucket = keyof typeof EC2_ACCOUNT_BUCKETS;
export const EC2_BUCKETS = Object.keys(EC2_ACCOUNT_BUCKETS) as Ec2Bucket[];

/** The schedule's constants, in one place (docs/design.md §6). */
export const SCHEDULE = {
  /** After a cut the rate doubles every growMs until EC2's refill. */
  growMs: 10_000,
  /** An idle bucket banks at most this fraction of EC2's burst (45 of 50, 90 of 100): room for jitter and for other tools. */
  bankFraction: 0.9,
  /** A cut halves the rate, never below this fraction of EC2's refill (0.5 mutations/s for the whole fleet in a brownout). */
  cutFactor: 0.5,
  floorFraction: 0.1,
  /**
   * A mutation refused while the rate was at its ceiling (≥ contendedFraction of it: someone else
   * takes part of the bucket, e.g. another tool in the account) also lowers the ceiling the rate
   * recovers to, to ceilingFactor × EC2's refill (4.5 mutations/s), until ceilingForMs after the
   * last cut; a cut far below the ceiling (a brownout refusing everything) keeps it. So the fleet
   * leaves another user room instead of taking every token the bucket refills. The fleet sees only
   * its own refusals, which come seldom once it runs under the refill, so the ceiling outlasts them
   * (10 min), and it does not compound (a lower one for each refusal kept the fleet at a third under
   * its share after a brownout). Reads and tags keep no ceiling: another tool's reads are not starved
   * by the fleet's (docs/operations.md), and a lower one held up the reads that lead to attaches.
   */
  contendedFraction: 0.95,
  ceilingFactor: 0.9,
  ceilingForMs: 600_000,
  /** Reads and tags take tickets only while their bucket was cut this recently (or this host was refused on it). */
  congestedForMs: 300_000,
  /** How old the document may be when a read or tag call asks whether its bucket is congested. */
  lookEveryMs: 30_000,
  /** After the store failed, the agent paces itself (pacer.ts) this long before trying it again. */
  fallbackForMs: 60_000,
  /** A store call taking longer than this counts as the store failing. */
  storeTimeoutMs: 2_000,
  /** Waiters waking within this long of a read share it. */
  shareReadMs: 200,
  /** A lost CAS race is tried again after 10–50 ms, doubling to 1 s. */
  raceFirstMs: 10,
  raceMaxMs: 1_000,
  /** Calls that arrive within this window share one reservation (one CAS). */
  batchMs: 20,
  /** A document is absurd when a bucket's `at` is this far in the future, or its queue this long. */
  futureMs: 3_600_000,
  absurdQueue: 1e6,
} as const;

export interface BucketState {
  /** The last ticket handed out. */
  next: number;
  /** served(t) is frozen at `served` until `at`… */
  at: number;
  served: number;
  /** …and then grows at `rate` per second, doubling every growMs up to EC2's refill. */
  rate: number;
  /** When the rate was last cut: a refusal of a call sent before it answers the old rate. */
  cutAt: number;
  /**
   * The rate recovers to at most `ceiling` per second until `liftAt`, then to EC2's refill (both
   * absent: EC2's refill; documents written before the ceiling have neither).
   */
  ceiling?: number;
  liftAt?: number;
}

export interface Schedule {
  v: 1;
  buckets: Partial<Record<Ec2Bucket, BucketState>>;
}

const finite = () => z.number().check(z.refine(Number.isFinite, 'a finite number'));
const BucketSchema = z.object({
  next: finite(),
  at: finite(),
  served: finite(),
  rate: z.number().check(z.refine((n) => Number.isFinite(n) && n > 0, 'a positive number')),
  cutAt: finite(),
  ceiling: z.optional(z.number().check(z.refine((n) => Number.isFinite(n) && n > 0, 'a positive number'))),
  liftAt: z.optional(finite()),
});
const ScheduleSchema = z.object({
  v: z.literal(1),
  buckets: z.object(Object.fromEntries(EC2_BUCKETS.map((b) => [b, z.optional(BucketSchema)])) as Record<Ec2Bucket, z.ZodMiniOptional<typeof BucketSchema>>),
});

/** The document as JSON, or the reason it is not a schedule. */
export function parseSchedule(body: string): Schedule | string {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    return `not JSON (${errorMessage(err)})`;
  }
  const parsed = ScheduleSchema.safeParse(json);
  return parsed.success ? (parsed.data as Schedule) : `not a schedule (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`;
}

/** Why a valid document cannot be trusted (a clock far off, a queue no fleet makes), or undefined. */
export function absurdity(s: Schedule, now: number): string | undefined {
  for (const [name, b] of Object.entries(s.buckets) as [Ec2Bucket, BucketState][]) {
    if (b.at > now + SCHEDULE.futureMs || b.cutAt > now + SCHEDULE.futureMs) return `${name}: written ${((b.at - now) / 60_000).toFixed(0)} min in this host's future`;
    if (b.next - b.served > SCHEDULE.absurdQueue) return `${name}: ${b.next - b.served} tickets queued`;
    if (b.rate > EC2_ACCOUNT_BUCKETS[name].perSecond) return `${name}: rate ${b.rate}/s, above EC2's ${EC2_ACCOUNT_BUCKETS[name].perSecond}/s`;
    if ((b.ceiling ?? 0) > EC2_ACCOUNT_BUCKETS[name].perSecond) return `${name}: ceiling ${b.ceiling}/s, above EC2's ${EC2_ACCOUNT_BUCKETS[name].perSecond}/s`;
    if ((b.liftAt ?? 0) > now + SCHEDULE.futureMs + SCHEDULE.ceilingForMs) return `${name}: ceiling lifted ${(((b.liftAt ?? 0) - now) / 60_000).toFixed(0)} min in this host's future`;
  }
  return undefined;
}

/** Tickets an idle bucket banks (45 / 90). */
export const banked = (name: Ec2Bucket) => Math.floor(EC2_ACCOUNT_BUCKETS[name].burst * SCHEDULE.bankFraction);

/** A bucket nobody has used: its bank full, at EC2's refill. */
export const freshBucket = (name: Ec2Bucket, now: number): BucketState => ({ next: 0, at: now, served: banked(name), rate: EC2_ACCOUNT_BUCKETS[name].perSecond, cutAt: 0 });

export const emptySchedule = (): Schedule => ({ v: 1, buckets: {} });

const LN2 = Math.log(2);

/** The most the rate may be at time t: the ceiling a contended cut set, until it lifts; then EC2's refill. */
function capAt(name: Ec2Bucket, b: BucketState, t: number): number {
  const max = EC2_ACCOUNT_BUCKETS[name].perSecond;
  return b.ceiling !== undefined && b.liftAt !== undefined && t < b.liftAt ? Math.min(max, b.ceiling) : max;
}

/** The rate (per second) at time t. */
export function rateAt(name: Ec2Bucket, b: BucketState, t: number): number {
  const cap = capAt(name, b, t);
  if (t <= b.at) return Math.min(cap, b.rate);
  return Math.min(cap, b.rate * 2 ** ((t - b.at) / SCHEDULE.growMs));
}

/** The growth from `at` under a cap (per second): how long until the rate reaches it, and the tickets served until then. */
function growth(b: BucketState, capPerSecond: number): { ms: number; tickets: number; r0: number; max: number; k: number } {
  const max = capPerSecond / 1000;
  const r0 = Math.min(max, b.rate / 1000);
  const k = SCHEDULE.growMs / LN2;
  const ms = r0 >= max ? 0 : SCHEDULE.growMs * Math.log2(max / r0);
  return { ms, tickets: k * (max - r0), r0, max, k };
}

/** ∫ from `at` to t of min(cap, rate · 2^((τ − at)/growMs)), in tickets (closed form). */
function grown(b: BucketState, capPerSecond: number, t: number): number {
  if (t <= b.at) return 0;
  const x = t - b.at;
  const g = growth(b, capPerSecond);
  if (x <= g.ms) return g.r0 * g.k * (2 ** (x / SCHEDULE.growMs) - 1);
  return g.tickets + g.max * (x - g.ms);
}

/** The inverse of grown(): the time by which `need` tickets have grown under the cap. */
function grownInverse(b: BucketState, capPerSecond: number, need: number): number {
  if (need <= 0) return b.at;
  const g = growth(b, capPerSecond);
  if (need <= g.tickets) return b.at + SCHEDULE.growMs * Math.log2(1 + need / (g.r0 * g.k));
  return b.at + g.ms + (need - g.tickets) / g.max;
}

/** Whether a ceiling binds after `at` (it is set and lifts later). */
const ceilingAfterAt = (b: BucketState): b is BucketState & { ceiling: number; liftAt: number } =>
  b.ceiling !== undefined && b.liftAt !== undefined && b.liftAt > b.at;

/**
 * served(t): the tickets that may have been sent by time t, the rate's integral since `at` (closed
 * form): under the ceiling until it lifts, under EC2's refill after (the growth curve is the same
 * one, so the rate steps up to min(refill, the curve) when the ceiling lifts).
 */
export function servedAt(name: Ec2Bucket, b: BucketState, t: number): number {
  const max = EC2_ACCOUNT_BUCKETS[name].perSecond;
  if (t <= b.at) return b.served;
  if (!ceilingAfterAt(b)) return b.served + grown(b, max, t);
  const cap = Math.min(max, b.ceiling);
  if (t <= b.liftAt) return b.served + grown(b, cap, t);
  return b.served + grown(b, cap, b.liftAt) + grown(b, max, t) - grown(b, max, b.liftAt);
}

/** served⁻¹(n): when ticket n may be sent. */
export function timeOf(name: Ec2Bucket, b: BucketState, n: number): number {
  const max = EC2_ACCOUNT_BUCKETS[name].perSecond;
  if (n <= b.served) return b.at;
  const need = n - b.served;
  if (!ceilingAfterAt(b)) return grownInverse(b, max, need);
  const cap = Math.min(max, b.ceiling);
  const beforeLift = grown(b, cap, b.liftAt);
  if (need <= beforeLift) return grownInverse(b, cap, need);
  return grownInverse(b, max, need - beforeLift + grown(b, max, b.liftAt));
}

/** Reserves k tickets: the first is `first`, the rest follow it. An idle bucket banks at most banked(name). */
export function reserveIn(name: Ec2Bucket, b: BucketState, k: number, now: number): { bucket: BucketState; first: number } {
  const next = Math.max(b.next, Math.floor(servedAt(name, b, now) - banked(name)));
  return { bucket: { ...b, next: next + k }, first: next + 1 };
}

/**
 * A call sent at `sentAt` was refused: the bucket's rate is halved from what it is now (at least
 * a tenth of EC2's refill), from now, and its bank is spent. Undefined when the call answers the
 * old rate, a round already counted: it was sent before the last cut, or by a host whose copy of
 * the document had not seen that cut yet (`seenCutAt`, the cut its sender knew of).
 */
export function cutIn(name: Ec2Bucket, b: BucketState, sentAt: number, now: number, seenCutAt = b.cutAt): BucketState | undefined {
  if (sentAt <= b.cutAt || seenCutAt < b.cutAt) return undefined;
  const max = EC2_ACCOUNT_BUCKETS[name].perSecond;
  const floor = max * SCHEDULE.floorFraction;
  const served = servedAt(name, b, now);
  const rate = rateAt(name, b, now);
  const cap = capAt(name, b, now);
  // Refused at (nearly) its ceiling: someone else takes part of the bucket; recover to a little less than
  // this rate for a while. Refused far below it (a brownout): the ceiling stays where it was.
  const ceiling = name === 'mutating' && rate >= SCHEDULE.contendedFraction * cap ? SCHEDULE.ceilingFactor * max : cap;
  // EC2's bucket is evidently empty: the bank goes too (the next ticket comes at the new rate, not at once).
  return {
    next: Math.max(b.next, Math.floor(served)), served, at: now, rate: Math.max(floor, rate * SCHEDULE.cutFactor), cutAt: now,
    ...(ceiling < max ? { ceiling, liftAt: now + SCHEDULE.ceilingForMs } : {}),
  };
}

/** The store failed (threw, timed out): the agent paces itself for a while. */
class StoreFailed extends Error {}

export interface FleetScheduleOptions {
  store: ScheduleStore;
  logger?: Logger;
  /** berth_ec2_schedule_shared, berth_ec2_schedule_wait_seconds. */
  registry?: Registry;
  /** [0, 1) for the jitter of lost races (tests pin it). */
  random?: () => number;
}

interface Reservation {
  resolve: (ticket: number) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  settled: boolean;
}

const WAIT_BUCKETS = [0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800];

/**
 * One agent's side of the account's EC2 schedule: reserves tickets (batched), waits for turns,
 * reports refusals, and falls back to the agent's own pacing while the store fails.
 */
export class FleetSchedule {
  private readonly store: ScheduleStore;
  private readonly log: Logger | undefined;
  private readonly random: () => number;
  /** The document as last read or written, and its version. */
  private doc: Schedule | undefined;
  private version: string | undefined;
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;
  /** Until when the agent paces itself (the store failed). */
  private fallbackUntil = -Infinity;
  private fellBack = false;
  /** Tickets this host reserved whose callers left before sending, lowest first. */
  private readonly pool = new Map<Ec2Bucket, number[]>();
  private readonly waiting = new Map<Ec2Bucket, Reservation[]>();
  private readonly reserving = new Set<Ec2Bucket>();
  /** Cuts this host reports, one at a time per bucket (the second sees the first's and is a no-op). */
  private readonly cutting = new Map<Ec2Bucket, Promise<void>>();
  /** When EC2 last refused this host a call of the bucket. */
  private readonly refusedAt = new Map<Ec2Bucket, number>();
  private readonly waits: Histogram | undefined;

  constructor(o: FleetScheduleOptions) {
    this.store = o.store;
    this.log = o.logger;
    this.random = o.random ?? Math.random;
    if (o.registry) {
      // Not the `shared` getter: a scrape must not end the fallback's log state.
      const shared = () => Date.now() >= this.fallbackUntil;
      new Gauge({
        name: 'berth_ec2_schedule_shared',
        help: "1 while this agent takes its EC2 turns from the account's shared schedule, 0 while it paces itself (the store failed)",
        registers: [o.registry],
        collect() {
          this.set(shared() ? 1 : 0);
        },
      });
      this.waits = new Histogram({ name: 'berth_ec2_schedule_wait_seconds', help: "Time an EC2 call waited for its turn in the account's schedule", buckets: WAIT_BUCKETS, registers: [o.registry] });
    }
  }

  /** Whether the schedule is in use (not falling back to the agent's own pacing). */
  get shared(): boolean {
    if (Date.now() < this.fallbackUntil) return false;
    if (this.fellBack) {
      this.fellBack = false;
      this.log?.warn({ store: this.store.where }, "trying the account's shared EC2 schedule again");
    }
    return true;
  }

  /** The bucket as this host last read it. */
  bucket(name: Ec2Bucket): BucketState | undefined {
    return this.doc?.buckets[name];
  }

  /**
   * Waits for this host's turn on the bucket and returns its ticket: the caller sends its call
   * now. Undefined when the store failed (the caller paces itself). Throws the signal's reason,
   * or TIMEOUT when `deadline` came first; either way the ticket goes back to this host's pool.
   */
  async turn(name: Ec2Bucket, signal: AbortSignal | undefined, deadline: number, what: string): Promise<number | undefined> {
    if (!this.shared) return undefined;
    const started = Date.now();
    let ticket = this.pooled(name);
    try {
      ticket ??= await this.reserve(name, signal);
      for (;;) {
        signal?.throwIfAborted();
        const b = this.doc?.buckets[name] ?? freshBucket(name, Date.now());
        const now = Date.now();
        if (servedAt(name, b, now) >= ticket) {
          this.waits?.observe((now - started) / 1000);
          return ticket;
        }
        const due = timeOf(name, b, ticket);
        if (now >= deadline) {
          const more = Math.max(10, Math.round((due - now) / 10_000) * 10);
          throw new BerthError('TIMEOUT', `${what}: its turn in the account's EC2 queue had not come when its time ran out (about ${more} s more at the fleet's pace); the host keeps its place`);
        }
        await pause(Math.max(1, Math.min(due, deadline) - now), signal);
        await this.refresh(SCHEDULE.shareReadMs);
      }
    } catch (err) {
      if (ticket !== undefined) this.giveBack(name, ticket);
      if (err instanceof StoreFailed) return undefined;
      throw err;
    }
  }

  /**
   * EC2 refused a call of the bucket sent at `sentAt`, by a view of the document whose last cut
   * was `seenCutAt` (seenCut() when the call was sent): the fleet's rate for it is cut, once per
   * round. The store failing here is a fallback, not an error of the call.
   */
  async refused(name: Ec2Bucket, sentAt: number, seenCutAt: number): Promise<void> {
    this.refusedAt.set(name, Date.now());
    if (!this.shared) return;
    const before = this.cutting.get(name) ?? Promise.resolve();
    const mine = before.then(() => this.cut(name, sentAt, seenCutAt));
    this.cutting.set(
      name,
      mine.catch(() => undefined),
    );
    await mine.catch((err: unknown) => {
      if (!(err instanceof StoreFailed)) throw err;
    });
  }

  /**
   * Whether reads and tags of the bucket take tickets now: EC2 refused this host one within
   * congestedForMs, or the document (read at most lookEveryMs ago) shows a cut that recent.
   */
  async congested(name: Ec2Bucket): Promise<boolean> {
    const now = Date.now();
    if (now - (this.refusedAt.get(name) ?? -Infinity) < SCHEDULE.congestedForMs) return true;
    if (!this.shared) return false;
    try {
      await this.refresh(SCHEDULE.lookEveryMs);
    } catch (err) {
      if (err instanceof StoreFailed) return false;
      throw err;
    }
    const b = this.doc?.buckets[name];
    return b !== undefined && b.cutAt > 0 && Date.now() - b.cutAt < SCHEDULE.congestedForMs;
  }

  /**
   * The lowest ticket in this host's pool, keeping the host's place in the queue; a ticket whose
   * time came before the bucket's last cut is dropped (sent now, it would exceed the cut rate:
   * its slot was in the old regime), and the call reserves a new one.
   */
  private pooled(name: Ec2Bucket): number | undefined {
    const pool = this.pool.get(name);
    const b = this.doc?.buckets[name];
    while (pool?.length) {
      const ticket = pool.shift()!;
      if (!b || b.cutAt === 0 || ticket > b.served) return ticket;
    }
    return undefined;
  }

  /** The last cut of the bucket as this host's copy of the document shows it (for refused()). */
  seenCut(name: Ec2Bucket): number {
    return this.doc?.buckets[name]?.cutAt ?? 0;
  }

  private giveBack(name: Ec2Bucket, ticket: number): void {
    const pool = this.pool.get(name) ?? [];
    pool.push(ticket);
    pool.sort((a, b) => a - b);
    this.pool.set(name, pool);
  }

  /** Reads the document unless it was read within maxAgeMs (or a read is under way: it is shared). */
  private refresh(maxAgeMs: number): Promise<void> {
    if (this.reading) return this.reading;
    if (Date.now() - this.readAt <= maxAgeMs) return Promise.resolve();
    this.reading = this.read().finally(() => (this.reading = undefined));
    return this.reading;
  }

  /** Reads the document; an invalid or absurd one is replaced by a fresh one (CAS). Throws StoreFailed. */
  private async read(): Promise<void> {
    const got = await this.io((signal) => this.store.read(signal));
    this.readAt = Date.now();
    if (got === undefined) {
      this.doc = emptySchedule();
      this.version = undefined;
      return;
    }
    const parsed = parseSchedule(got.body);
    if (typeof parsed !== 'string') {
      const odd = absurdity(parsed, Date.now());
      if (odd === undefined) {
        this.doc = parsed;
        this.version = got.version;
        return;
      }
      // Someone's clock, or a bug, wrote it: this agent paces itself a while, and replaces it so the fleet recovers.
      this.log?.warn({ store: this.store.where, why: odd }, "the account's EC2 schedule cannot be trusted; replacing it with a fresh one, and pacing this agent on its own meanwhile");
      await this.replace(got.version);
      this.fallBack(new StoreFailed(odd));
      throw new StoreFailed(odd);
    }
    this.log?.warn({ store: this.store.where, why: parsed }, "the account's EC2 schedule is not valid; replacing it with a fresh one");
    await this.replace(got.version);
  }

  private async replace(version: string): Promise<void> {
    const fresh = emptySchedule();
    const written = await this.io((signal) => this.store.write(JSON.stringify(fresh), version, signal));
    if (written === undefined) {
      this.readAt = -Infinity;
      return;
    }
    this.doc = fresh;
    this.version = written;
  }

  /** A store call, bounded by storeTimeoutMs; its failure starts the fallback. */
  private async io<T>(call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const timeout = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        call(timeout.signal),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            timeout.abort();
            reject(new Error(`no answer within ${SCHEDULE.storeTimeoutMs} ms`));
          }, SCHEDULE.storeTimeoutMs);
        }),
      ]);
    } catch (err) {
      const failed = err instanceof StoreFailed ? err : new StoreFailed(errorMessage(err));
      this.fallBack(failed);
      throw failed;
    } finally {
      clearTimeout(timer);
    }
  }

  private fallBack(err: StoreFailed): void {
    if (!this.fellBack) this.log?.warn({ store: this.store.where, err: err.message, forSeconds: SCHEDULE.fallbackForMs / 1000 }, "the account's shared EC2 schedule failed; this agent paces its EC2 calls on its own for a while");
    this.fellBack = true;
    this.fallbackUntil = Date.now() + SCHEDULE.fallbackForMs;
    this.readAt = -Infinity;
  }

  /** Changes the document by CAS: `change` from the current state (re-read after a lost race) until it wins or says there is nothing to change. */
  private async swap(change: (s: Schedule) => Schedule | undefined, live: () => boolean): Promise<Schedule | undefined> {
    let delay: number = SCHEDULE.raceFirstMs;
    // A document older than a shared read would most likely lose the race: a GET is cheaper than a lost PUT.
    if (!this.doc || Date.now() - this.readAt > SCHEDULE.shareReadMs) await this.read();
    for (;;) {
      if (!live()) return undefined;
      const changed = change(this.doc ?? emptySchedule());
      if (!changed) return undefined;
      const version = await this.io((signal) => this.store.write(JSON.stringify(changed), this.version, signal));
      if (version !== undefined) {
        this.doc = changed;
        this.version = version;
        this.readAt = Date.now();
        return changed;
      }
      await sleep(delay * (1 + 4 * this.random()));
      delay = Math.min(SCHEDULE.raceMaxMs, delay * 2);
      await this.read();
    }
  }

  /** A ticket for this call: it joins the next reservation of the bucket (one CAS for every call waiting then). */
  private reserve(name: Ec2Bucket, signal: AbortSignal | undefined): Promise<number> {
    signal?.throwIfAborted();
    return new Promise<number>((resolve, reject) => {
      const r: Reservation = { resolve, reject, signal, settled: false };
      const onAbort = () => {
        if (r.settled) return;
        r.settled = true;
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      r.resolve = (t) => {
        signal?.removeEventListener('abort', onAbort);
        if (r.settled) return this.giveBack(name, t);
        r.settled = true;
        resolve(t);
      };
      r.reject = (err) => {
        signal?.removeEventListener('abort', onAbort);
        if (r.settled) return;
        r.settled = true;
        reject(err);
      };
      const queue = this.waiting.get(name) ?? [];
      queue.push(r);
      this.waiting.set(name, queue);
      if (!this.reserving.has(name)) {
        this.reserving.add(name);
        void sleep(SCHEDULE.batchMs).then(() => this.reserveWaiting(name));
      }
    });
  }

  private async reserveWaiting(name: Ec2Bucket): Promise<void> {
    try {
      for (;;) {
        const batch = (this.waiting.get(name) ?? []).filter((r) => !r.settled);
        this.waiting.set(name, []);
        if (batch.length === 0) return;
        let first = 0;
        let k = 0;
        try {
          await this.swap(
            (s) => {
              k = batch.filter((r) => !r.settled).length;
              const got = reserveIn(name, s.buckets[name] ?? freshBucket(name, Date.now()), k, Date.now());
              first = got.first;
              return { ...s, buckets: { ...s.buckets, [name]: got.bucket } };
            },
            () => batch.some((r) => !r.settled),
          );
        } catch (err) {
          for (const r of [...batch, ...(this.waiting.get(name) ?? [])]) r.reject(err);
          this.waiting.set(name, []);
          return;
        }
        // In arrival order; the tickets of callers that left meanwhile go to the pool.
        let i = 0;
        for (const r of batch) {
          if (i < k && !r.settled) r.resolve(first + i++);
        }
        for (; i < k; i++) this.giveBack(name, first + i);
      }
    } finally {
      this.reserving.delete(name);
    }
  }

  private async cut(name: Ec2Bucket, sentAt: number, seenCutAt: number): Promise<void> {
    const now = () => Date.now();
    await this.swap(
      (s) => {
        const b = cutIn(name, s.buckets[name] ?? freshBucket(name, now()), sentAt, now(), seenCutAt);
        return b ? { ...s, buckets: { ...s.buckets, [name]: b } } : undefined;
      },
      () => true,
    );
  }
}
