import { sleep } from '../../../lib/sleep.js';

/** sleep() that rejects with the signal's reason (the caller's own error), as throwIfAborted() does. */
export const pause = (ms: number, signal?: AbortSignal) =>
  sleep(ms, signal).catch((err: unknown) => {
    signal?.throwIfAborted();
    throw err;
  });

/**
 * Paces this agent's AttachVolume/DetachVolume/DeleteVolume (docs/design.md §6, "Sharing the
 * account"). The bucket they draw on is the account's, shared with every other host and tool.
 *
 * On a quiet account it is a local copy of EC2's bucket: `burst` calls at once, then `perSecond`
 * (a lone host attaches 50 volumes in one go). Once EC2 throttles a call (RequestLimitExceeded, or
 * a server fault: EC2 browning out), the agent learns it has only a share: the gap between calls
 * grows ×`backoff` (no burst any more) up to `maxGapMs`, and every wait is jittered (±50 %) so
 * that hosts throttled together do not come back together; each call EC2 accepts shrinks the gap
 * ×`recovery` until it is back at 1/`perSecond`, where the burst refills. The gap settles where
 * most calls go through (many accepted per throttle), whatever the number of hosts sharing the
 * bucket, instead of each host assuming the whole bucket. The queue is FIFO: one call at a time
 * probes the account, the others wait behind it. A caller whose signal aborts while queued leaves
 * the queue with the signal's reason and takes no token.
 */
export interface PacerOptions {
  /** Calls at once on a quiet account. */
  burst: number;
  /** Calls per second on a quiet account. */
  perSecond: number;
  /** Gap × this on each throttled call. */
  backoff: number;
  /** Gap × this on each accepted call (< 1). */
  recovery: number;
  /** The longest gap between two calls: an agent never sleeps longer through a budget that came back. */
  maxGapMs: number;
  /**
   * Calls in flight at first (slow start): the window doubles with each accepted call up to
   * `burst`, so a host that boots into a busy account learns it from a couple of refusals, not
   * from a whole burst. Default `burst`.
   */
  initialWindow?: number;
  /** [0, 1) random source for the jitter (tests pin it). */
  random?: () => number;
}

export class Pacer {
  private tokens: number;
  private last = Date.now();
  private queue: Promise<void> = Promise.resolve();
  private readonly quietGapMs: number;
  /** Milliseconds between calls now: quietGapMs on a quiet account, more once throttled. */
  private gapMs: number;
  private readonly random: () => number;
  /** When the gap last grew: calls sent before then were answered for the old rate and count once. */
  private grewAt = -Infinity;
  /** Calls sent and not answered yet, and how many may be (slow start). */
  private inFlight = 0;
  private window: number;
  private readonly answered = new Set<() => void>();

  constructor(private readonly o: PacerOptions) {
    this.tokens = o.burst;
    this.quietGapMs = 1000 / o.perSecond;
    this.gapMs = this.quietGapMs;
    this.random = o.random ?? Math.random;
    this.window = o.initialWindow ?? o.burst;
  }

  /** Calls per second this agent allows itself now. */
  get rate(): number {
    return 1000 / this.gapMs;
  }

  /** Whether EC2 has throttled this agent lately (its gap is above the quiet one). */
  get contended(): boolean {
    return this.gapMs > this.quietGapMs;
  }

  /** Waits for a turn; the caller sends its call and then says how it went: succeeded() or throttled(), or done(). */
  take(signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(async () => {
      for (;;) {
        signal?.throwIfAborted();
        if (this.inFlight >= this.window) {
          await new Promise<void>((resolve) => {
            const wake = () => {
              this.answered.delete(wake);
              signal?.removeEventListener('abort', wake);
              resolve();
            };
            this.answered.add(wake);
            signal?.addEventListener('abort', wake, { once: true });
          });
          continue;
        }
        const now = Date.now();
        const capacity = this.contended ? 1 : this.o.burst;
        this.tokens = Math.min(capacity, this.tokens + (now - this.last) / this.gapMs);
        this.last = now;
        if (this.tokens >= 1) {
          this.tokens -= 1;
          this.inFlight += 1;
          return;
        }
        const wait = (1 - this.tokens) * this.gapMs;
        await pause(this.contended ? wait * (0.5 + this.random()) : wait, signal);
      }
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /**
   * EC2 refused a call sent at `sentAt` for the account's budget (or was browning out): take a
   * smaller share. Refusals of calls sent before the last decrease were answers to the old rate,
   * and do not shrink it again (a burst of 8 refused at once is one signal, not 8).
   */
  throttled(sentAt: number): void {
    this.done();
    this.window = 1;
    this.tokens = Math.min(this.tokens, 0);
    if (sentAt <= this.grewAt) return;
    this.gapMs = Math.min(this.o.maxGapMs, this.gapMs * this.o.backoff);
    this.grewAt = Date.now();
  }

  /** EC2 accepted a call: take a little more. */
  succeeded(): void {
    this.done();
    this.window = Math.min(this.o.burst, this.window * 2);
    this.gapMs = Math.max(this.quietGapMs, this.gapMs * this.o.recovery);
  }

  /** The call taken was answered otherwise (an error that says nothing of the budget), or not sent. */
  done(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    for (const wake of [...this.answered]) wake();
  }
}

/** Whether EC2 refused a call for the account's budget (RequestLimitExceeded) or was browning out (a server fault): the calls to retry later. */
export type Refusal = (err: unknown) => boolean;

export interface RetryGateOptions {
  /** The pause after the first refusal; it doubles with each refusal after it. */
  firstMs: number;
  /** The longest pause: an agent never sleeps longer through a budget that came back. */
  maxMs: number;
  refused: Refusal;
  /** [0, 1) random source for the jitter (tests pin it). */
  random?: () => number;
}

/**
 * The account-aware retry of an agent's reads and tags (docs/design.md §6, "Sharing the account"):
 * one per agent, shared by every caller. While EC2 accepts them, calls go straight through. Once EC2
 * refuses one (RequestLimitExceeded, or a server fault: browning out), the agent's calls line up:
 * one at a time tries the account, after a pause jittered ±50 % that doubles with each refusal
 * (firstMs, at most maxMs), and the first call accepted opens the line again. In a brownout an
 * agent then sends one call per pause, whatever the number of its callers, instead of each caller's
 * call and the SDK's 8 attempts under it. A caller waits in the line until its signal aborts (it
 * leaves with the signal's reason, having sent nothing) or until `until`, when it fails with the
 * last refusal.
 */
export class RetryGate {
  /** 0 while EC2 accepts calls; the next pause while it refuses them. */
  private pauseMs = 0;
  private line: Promise<void> = Promise.resolve();
  private lastRefusal: unknown;
  private grewAt = -Infinity;
  private readonly random: () => number;

  constructor(private readonly o: RetryGateOptions) {
    this.random = o.random ?? Math.random;
  }

  /** Whether EC2 refused the last call tried (the line is closed). */
  get closed(): boolean {
    return this.pauseMs > 0;
  }

  async run<T>(call: () => Promise<T>, signal: AbortSignal | undefined, until: number): Promise<T> {
    for (;;) {
      signal?.throwIfAborted();
      if (!this.closed) {
        const sentAt = Date.now();
        try {
          return await call();
        } catch (err) {
          if (!this.o.refused(err)) throw err;
          this.refusedNow(err, sentAt);
          if (signal?.aborted || Date.now() >= until) throw err;
          continue;
        }
      }
      // Closed: wait for a turn; the turn's holder is the one call trying the account.
      const before = this.line;
      let release!: () => void;
      this.line = new Promise<void>((resolve) => (release = resolve));
      try {
        await untilAbortedOrDone(before, signal);
      } catch (err) {
        void before.then(release);
        throw err;
      }
      try {
        if (!this.closed) continue;
        const wait = this.pauseMs * (0.5 + this.random());
        if (Date.now() + wait >= until) throw this.lastRefusal;
        await pause(wait, signal);
        const sentAt = Date.now();
        try {
          const out = await call();
          this.pauseMs = 0;
          return out;
        } catch (err) {
          if (!this.o.refused(err)) throw err;
          this.refusedNow(err, sentAt);
          if (signal?.aborted || Date.now() >= until) throw err;
        }
      } finally {
        release();
      }
    }
  }

  /** A refusal of a call sent at `sentAt`; calls sent before the pause last grew were answers to the old pause and count once. */
  private refusedNow(err: unknown, sentAt: number): void {
    this.lastRefusal = err;
    if (this.pauseMs > 0 && sentAt < this.grewAt) return;
    this.pauseMs = this.pauseMs === 0 ? this.o.firstMs : Math.min(this.o.maxMs, this.pauseMs * 2);
    this.grewAt = Date.now();
  }
}

/** Resolves when `p` settles, or rejects with the signal's reason when it aborts first. */
function untilAbortedOrDone(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    void p.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
