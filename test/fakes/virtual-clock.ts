import { createRequire, syncBuiltinESMExports } from 'node:module';
import FakeTimers, { type InstalledClock } from '@sinonjs/fake-timers';

/**
 * A virtual clock for fleet simulations (test/fakes/fleet.ts): the real code's own timers
 * (setTimeout, setInterval, and — patched here — node:timers/promises' setTimeout, which
 * lib/sleep.ts uses, and AbortSignal.timeout, which the volume service's Mount deadline uses)
 * run on a queue of virtual time; @sinonjs/fake-timers makes Date, performance.now and
 * process.hrtime read that time. Time moves only from one timer to the next, after every
 * promise that can settle has settled and the file operations the caller counts (ioInFlight)
 * have finished.
 *
 * The timers fire in @sinonjs/fake-timers' order (the time they are due, then the time they
 * were set, then the order they were set in; a delay is truncated to whole milliseconds as it
 * does, and Node's minimum of 1 ms applies), one at a time, so a run gives the figures it gave
 * on fake-timers' own queue; the queue is a binary heap instead of fake-timers' scan of every
 * pending timer per step (a 1 000-host fleet has tens of thousands pending).
 *
 * What it ignores: CPU time. Code between two timers takes no virtual time, so a simulated
 * agent is never slowed by the 2-core machine running 1 000 of them; the real-time mode of the
 * fleet bench (no virtual clock) is the check that this does not flatter berth.
 */
export class VirtualClock {
  private readonly clock: InstalledClock;
  private readonly undo: (() => void)[] = [];
  private readonly realSetImmediate = setImmediate;
  private readonly queue = new TimerQueue();

  private constructor(startMs: number) {
    this.clock = FakeTimers.install({ now: startMs, toFake: ['Date', 'performance', 'hrtime'] });
    this.undo.push(() => this.clock.uninstall());
    const queue = this.queue;
    const clock = this.clock;
    const realClear = clearTimeout;
    const schedule = (repeat: boolean) => (fn: (...args: unknown[]) => void, ms?: unknown, ...args: unknown[]) => {
      if (typeof fn !== 'function') throw new TypeError(`The "callback" argument must be of type function. Received ${typeof fn}`);
      return queue.add(clock.now, fn, args, nodeDelay(ms), repeat);
    };
    const clear = (handle: unknown) => {
      if (handle instanceof VirtualTimeout) queue.remove(handle);
      else if (handle !== undefined && handle !== null) realClear(handle as NodeJS.Timeout);
    };
    const fakes = { setTimeout: schedule(false), setInterval: schedule(true), clearTimeout: clear, clearInterval: clear };
    // The globals, and node:timers' functions (as @sinonjs/fake-timers replaces both).
    const timersModule = createRequire(import.meta.url)('node:timers') as Record<string, unknown>;
    for (const target of [globalThis as unknown as Record<string, unknown>, timersModule]) {
      for (const [name, fake] of Object.entries(fakes)) {
        const original = target[name];
        target[name] = fake;
        this.undo.push(() => {
          target[name] = original;
        });
      }
    }
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

  /** Timers pending. */
  pending(): number {
    return this.queue.size;
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
        const timer = this.queue.next();
        if (!timer) return done();
        this.clock.now = timer.callAt;
        this.queue.fired(timer);
        timer.fn(...timer.args);
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

  /** Lets every promise settle (a real setImmediate runs after the microtasks), then waits for counted I/O. */
  private async settleIo(): Promise<void> {
    for (let i = 0; ; i++) {
      await new Promise<void>((resolve) => this.realSetImmediate(resolve));
      if (this.ioInFlight() === 0) return;
      if (i > 10_000_000) throw new Error('VirtualClock: I/O never finished');
    }
  }

  uninstall(): void {
    for (const u of this.undo.reverse()) u();
    this.undo.length = 0;
  }
}

/** Node runs a delay under 1 ms (or not a number) after 1 ms; fake-timers after 0, which would let a loop spin at one instant. */
const nodeDelay = (ms: unknown) => (typeof ms === 'number' && ms >= 1 ? ms : 1);
/** Node's (and fake-timers') largest delay; a longer one runs after 1 ms. */
const MAX_DELAY = 2 ** 31 - 1;

/** A pending timer: what setTimeout/setInterval return (ref/unref/hasRef/refresh, and its id as a primitive). */
class VirtualTimeout {
  /** Bumped whenever the timer's place in the queue changes, which makes its older heap entries stale. */
  version = 0;
  active = true;
  private refed = true;

  constructor(
    private readonly queue: TimerQueue,
    readonly id: number,
    readonly createdAt: number,
    public callAt: number,
    readonly delay: number,
    readonly interval: number | undefined,
    readonly fn: (...args: unknown[]) => void,
    readonly args: unknown[],
  ) {}

  ref(): this {
    this.refed = true;
    return this;
  }

  unref(): this {
    this.refed = false;
    return this;
  }

  hasRef(): boolean {
    return this.refed;
  }

  refresh(): this {
    this.queue.refresh(this);
    return this;
  }

  [Symbol.toPrimitive](): number {
    return this.id;
  }
}

type Entry = { callAt: number; createdAt: number; id: number; version: number; timer: VirtualTimeout };

const before = (a: Entry, b: Entry) => a.callAt < b.callAt || (a.callAt === b.callAt && (a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.id < b.id)));

/** The pending timers in firing order: a binary min-heap whose stale entries (cleared, refreshed) are skipped when they surface. */
class TimerQueue {
  private readonly heap: Entry[] = [];
  private readonly live = new Set<VirtualTimeout>();
  private nextId = 1;
  private now = 0;

  get size(): number {
    return this.live.size;
  }

  add(now: number, fn: (...args: unknown[]) => void, args: unknown[], ms: number, repeat: boolean): VirtualTimeout {
    this.now = now;
    const delay = Math.trunc(ms > MAX_DELAY ? 1 : ms);
    const timer = new VirtualTimeout(this, this.nextId++, now, now + delay, delay, repeat ? (ms > MAX_DELAY ? 1 : ms) : undefined, fn, args);
    this.live.add(timer);
    this.push(timer);
    return timer;
  }

  remove(timer: VirtualTimeout): void {
    if (!timer.active) return;
    timer.active = false;
    timer.version += 1;
    this.live.delete(timer);
  }

  refresh(timer: VirtualTimeout): void {
    timer.callAt = this.now + timer.delay;
    timer.version += 1;
    if (!timer.active) {
      timer.active = true;
      this.live.add(timer);
    }
    this.push(timer);
  }

  /** The next timer to fire (left in the queue; fired() takes it out or reschedules it). */
  next(): VirtualTimeout | undefined {
    for (;;) {
      const top = this.heap[0];
      if (!top) return undefined;
      if (top.timer.active && top.version === top.timer.version) return top.timer;
      this.pop();
    }
  }

  /** The timer next() returned fires now: an interval comes again `interval` later, a timeout is done. */
  fired(timer: VirtualTimeout): void {
    this.now = timer.callAt;
    this.pop();
    if (timer.interval === undefined) {
      timer.active = false;
      this.live.delete(timer);
      return;
    }
    timer.callAt += timer.interval;
    timer.version += 1;
    this.push(timer);
  }

  private push(timer: VirtualTimeout): void {
    const heap = this.heap;
    const entry: Entry = { callAt: timer.callAt, createdAt: timer.createdAt, id: timer.id, version: timer.version, timer };
    let i = heap.length;
    heap.push(entry);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(entry, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = entry;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
      if (!before(heap[child]!, last)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
}

/** node:timers/promises' setTimeout on the (virtual) global timers, with its abort behaviour. */
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
