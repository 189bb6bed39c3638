/** Told when work under a key starts running and when it has ended (a waiter whose work never starts is never reported). */
export interface LockObserver {
  started(key: string): void;
  ended(key: string): void;
}

/**
 * One async mutex per key: work on one volume name runs one at a time, in
 * arrival order; different names proceed in parallel. Waiters wait (dockerd
 * does not retry an error reply, so a busy answer would be a failed Mount).
 * A waiter whose signal aborts while queued stops waiting at once with the
 * signal's reason, and its work never starts; work that has started is
 * awaited (it honours the signal itself and undoes what it did).
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** `observer` hears when each piece of work starts and when it ends (view-changes.ts). */
  constructor(private readonly observer?: LockObserver) {}

  async run<T>(key: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let started = false;
    const { observer } = this;
    const guarded = async () => {
      signal?.throwIfAborted();
      started = true;
      if (!observer) return work();
      observer.started(key);
      try {
        return await work();
      } finally {
        observer.ended(key);
      }
    };
    let settled = false;
    const result = previous.then(guarded, guarded).finally(() => {
      settled = true;
    });
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      if (!signal) return await result;
      let onAbort: (() => void) | undefined;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => {
          if (!started) reject(signal.reason as Error);
        };
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      });
      try {
        return await Promise.race([result, aborted]);
      } finally {
        signal.removeEventListener('abort', onAbort!);
      }
    } finally {
      const release = () => {
        if (this.tails.get(key) === tail) this.tails.delete(key);
      };
      if (settled) release();
      else void tail.then(release);
    }
  }

  /** Keys with work queued or running. */
  get busy(): number {
    return this.tails.size;
  }
}
