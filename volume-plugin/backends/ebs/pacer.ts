import { sleep } from '../../../lib/sleep.js';

/** sleep() that rejects with the signal's reason (the caller's own error), as throwIfAborted() does. */
export const pause = (ms: number, signal?: AbortSignal) =>
  sleep(ms, signal).catch((err: unknown) => {
    signal?.throwIfAborted();
    throw err;
  });

/**
 * Lets `burst` calls through at once, then `perSecond`, in arrival order: a local copy of EC2's
 * token bucket for AttachVolume/DetachVolume/DeleteVolume (docs/design.md §6). A caller whose
 * signal aborts while queued leaves the queue with the signal's reason and takes no token.
 */
export class Pacer {
  private tokens: number;
  private last = Date.now();
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {
    this.tokens = burst;
  }

  take(signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(async () => {
      for (;;) {
        signal?.throwIfAborted();
        const now = Date.now();
        this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
        this.last = now;
        if (this.tokens >= 1) {
          this.tokens -= 1;
          return;
        }
        await pause(((1 - this.tokens) / this.perSecond) * 1000, signal);
      }
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }
}
