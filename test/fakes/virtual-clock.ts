import { createRequire, syncBuiltinESMExports } from 'node:module';
import FakeTimers, { type InstalledClock } from '@sinonjs/fake-timers';

/**
 * A virtual clock for fleet simulations (test/fakes/fleet.ts): @sinonjs/fake-timers drives the
 * real code's own timers (setTimeout, setInterval, Date, performance.now, and — patched here —
 * node:timers/promises' setTimeout, which lib/sleep.ts uses, and AbortSignal.timeout, which the
 * volume service's Mount deadline uses). Time moves only from one timer to the next, after every
 * promise that can settle has settled and the file operations the caller counts (ioInFlight) have
 * finished.
 *
 * What it ignores: CPU time. Code between two timers takes no virtual time, so a simulated
 * agent is never slowed by the 2-core machine running 1 000 of them; the real-time mode of the
 * fleet bench (no virtual clock) is the check that this does not flatter berth.
 */
export class VirtualClock {
  private readonly clock: InstalledClock;
  private readonly undo: (() => void)[] = [];
  private readonly realSetImmediate = setImmediate;

  private constructor(startMs: number) {
    this.clock = FakeTimers.install({
      now: startMs,
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance', 'hrtime'],
      loopLimit: 10_000_000,
    });
    this.undo.push(() => this.clock.uninstall());
    // Node runs a delay under 1 ms (or not a number) after 1 ms; fake-timers after 0, so a loop
    // waiting 0.67 ms for a token to refill (the SDK's adaptive rate limiter) would never see time pass.
    const nodeDelay = (ms: unknown) => (typeof ms === 'number' && ms >= 1 ? ms : 1);
    type Schedule = (fn: () => void, ms: number, ...args: unknown[]) => NodeJS.Timeout;
    const fakeSetTimeout = globalThis.setTimeout as unknown as Schedule;
    const fakeSetInterval = globalThis.setInterval as unknown as Schedule;
    globalThis.setTimeout = ((fn: () => void, ms?: number, ...args: unknown[]) => fakeSetTimeout(fn, nodeDelay(ms), ...args)) as typeof setTimeout;
    globalThis.setInterval = ((fn: () => void, ms?: number, ...args: unknown[]) => fakeSetInterval(fn, nodeDelay(ms), ...args)) as typeof setInterval;
    const require = createRequire(import.meta.url);
    const timersPromises = require('node:timers/promises') as { setTimeout: typeof virtualDelay };
    const delay = timersPromises.setTimeout;
    timersPromises.setTimeout = virtualDelay;
    syncBuiltinESMExports();
    this.undo.push(() => {
      timersPromises.setTimeout = delay;
      syncBuiltinESMExports();
    });
    const timeout = AbortSignal.timeout.bind(AbortSignal);
    AbortSignal.timeout = (ms: number) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms);
      return controller.signal;
    };
    this.undo.push(() => {
      AbortSignal.timeout = timeout;
    });
  }

  /**
   * Installs the clock for this process; call uninstall() when done. It starts at a fixed
   * instant (not the real time) so that a run's arithmetic on timestamps repeats exactly.
   */
  static install(startMs = Date.UTC(2026, 11, 1)): VirtualClock {
    return new VirtualClock(startMs);
  }

  now(): number {
    return this.clock.now;
  }

  /**
   * Runs timers in order until `done()` or `limitMs` of virtual time has passed. Returns whether
   * `done()` held. Before each step every file operation in flight finishes (the state file on
   * tmpfs), so no I/O ever appears to take virtual time.
   */
  async runUntil(done: () => boolean, limitMs: number): Promise<boolean> {
    const end = this.clock.now + limitMs;
    let reached = false;
    const sentinel = setTimeout(() => (reached = true), limitMs);
    try {
      for (;;) {
        await this.settleIo();
        if (done()) return true;
        if (reached || this.clock.now >= end) return false;
        if (this.clock.countTimers() === 0) return done();
        await this.clock.nextAsync();
      }
    } finally {
      clearTimeout(sentinel);
    }
  }

  /** Advances by ms (running every timer due), then lets I/O finish. */
  async advance(ms: number): Promise<void> {
    await this.runUntil(() => false, ms);
  }

  /**
   * Real I/O the simulation has in flight (fleet.ts counts the state file's loads and saves):
   * the clock stands still until it is 0.
   */
  ioInFlight: () => number = () => 0;

  private async settleIo(): Promise<void> {
    for (let i = 0; ; i++) {
      await new Promise<void>((resolve) => this.realSetImmediate(resolve));
      if (this.ioInFlight() === 0) return;
      if (i > 10_000_000) throw new Error('VirtualClock: I/O never finished');
    }
  }

  uninstall(): void {
    for (const u of this.undo.reverse()) u();
  }
}

/** node:timers/promises' setTimeout on the (faked) global timers, with its abort behaviour. */
function virtualDelay<T = void>(ms?: number, value?: T, options?: { signal?: AbortSignal }): Promise<T> {
  const signal = options?.signal;
  return new Promise<T>((resolve, reject) => {
    const aborted = () => Object.assign(new Error('The operation was aborted'), { name: 'AbortError', code: 'ABORT_ERR', cause: signal?.reason as unknown });
    if (signal?.aborted) return reject(aborted());
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(value as T);
    }, ms ?? 1);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
