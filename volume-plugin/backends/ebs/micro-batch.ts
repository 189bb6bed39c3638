import { sleep } from '../../../lib/sleep.js';

/**
 * Settles with `work`, or rejects as soon as the signal aborts (work goes on for others): with the
 * signal's reason, or with what `abortError` makes of it.
 */
export function untilAborted<T>(work: Promise<T>, signal?: AbortSignal, abortError: (signal: AbortSignal) => Error = (s) => s.reason as Error): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

/**
 * Keys asked for within one window are fetched together; each caller gets its key's values. The
 * shared fetch is not any one caller's: a caller whose signal aborts stops waiting at once, and
 * the fetch goes on for the others.
 */
export class MicroBatch<T> {
  private pending: { keys: Set<string>; done: Promise<Map<string, T[]>> } | undefined;

  constructor(
    private readonly windowMs: number,
    private readonly fetch: (keys: string[]) => Promise<Map<string, T[]>>,
  ) {}

  async get(key: string, signal?: AbortSignal): Promise<T[]> {
    signal?.throwIfAborted();
    if (!this.pending) {
      const keys = new Set<string>();
      const done = sleep(this.windowMs).then(() => {
        this.pending = undefined;
        return this.fetch([...keys]);
      });
      // A batch every caller left still settles: its rejection is theirs, not unhandled.
      done.catch(() => undefined);
      this.pending = { keys, done };
    }
    this.pending.keys.add(key);
    return (await untilAborted(this.pending.done, signal)).get(key) ?? [];
  }
}
