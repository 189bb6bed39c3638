import { sleep } from '../../lib/sleep.js';
import type { ScheduleDocument, ScheduleStore } from '../../volume-plugin/backends/ebs/schedule-store.js';
import { lognormal } from '../helpers/rng.js';

/**
 * S3 in the same Region, as the fleet simulation draws it: GET ~15 ms and PUT ~40 ms median,
 * lognormal. An estimate (S3's documentation gives no latency figures; first-byte latencies of
 * small objects in-Region are commonly reported at 10–20 ms for GET and a few tens of ms for PUT),
 * not a measurement.
 */
export const S3_LATENCY = {
  get: { medianMs: 15, sigma: 0.5, minMs: 4, maxMs: 400 },
  put: { medianMs: 40, sigma: 0.5, minMs: 10, maxMs: 800 },
};

export interface MemoryScheduleStoreOptions {
  /** [0, 1) draws for the latencies (the run's seeded generator). */
  random?: () => number;
  /** Latencies × this (1 = S3's estimate above; 0 = none). */
  latencyScale?: number;
}

/**
 * The fleet's shared schedule store in memory (issue 23; production's is an S3 object with
 * conditional writes): one document, versions as counters, the compare-and-swap applied when the
 * write reaches the store (half its latency), as S3 decides a conditional PUT on arrival. Faults:
 * `unavailable` makes every call fail (as an S3 outage or a missing permission would).
 */
export class MemoryScheduleStore implements ScheduleStore {
  readonly where = 'memory://fleet-schedule';
  private body: string | undefined;
  private version = 0;
  /** Reads and writes answered, writes that lost the race (nothing written). */
  readonly counts = { reads: 0, writes: 0, lostRaces: 0, failed: 0 };
  /** While true, every call fails. */
  unavailable = false;
  private readonly get: () => number;
  private readonly put: () => number;

  constructor(o: MemoryScheduleStoreOptions = {}) {
    const random = o.random ?? Math.random;
    const scale = o.latencyScale ?? 1;
    this.get = scale > 0 ? lognormal(random, S3_LATENCY.get, scale) : () => 0;
    this.put = scale > 0 ? lognormal(random, S3_LATENCY.put, scale) : () => 0;
  }

  /** The document as stored (tests). */
  get current(): ScheduleDocument | undefined {
    return this.body === undefined ? undefined : { body: this.body, version: String(this.version) };
  }

  async read(signal?: AbortSignal): Promise<ScheduleDocument | undefined> {
    await this.delay(this.get(), signal);
    this.check();
    this.counts.reads += 1;
    return this.current;
  }

  async write(body: string, version: string | undefined, signal?: AbortSignal): Promise<string | undefined> {
    const total = this.put();
    await this.delay(total / 2, signal);
    this.check();
    this.counts.writes += 1;
    const current = this.body === undefined ? undefined : String(this.version);
    let out: string | undefined;
    if (current !== version) this.counts.lostRaces += 1;
    else {
      this.body = body;
      this.version += 1;
      out = String(this.version);
    }
    await this.delay(total / 2, signal);
    return out;
  }

  private async delay(ms: number, signal?: AbortSignal): Promise<void> {
    if (ms > 0) await sleep(ms, signal);
    else await Promise.resolve();
  }

  private check(): void {
    if (this.unavailable) {
      this.counts.failed += 1;
      throw new Error(`${this.where}: unavailable (simulated outage)`);
    }
  }
}
