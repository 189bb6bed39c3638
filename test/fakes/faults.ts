/**
 * Per-operation failure injection for the in-memory fakes: a test makes the
 * next call (or the next n calls) of one operation fail, or runs a hook before
 * each call (a gate to hold the call, a sleep that honours the signal).
 */
export type Hook = (signal?: AbortSignal) => void | Promise<void>;

export class Faults<Op extends string> {
  private readonly failures = new Map<Op, Error[]>();
  private readonly hooks = new Map<Op, Hook>();
  private readonly counts = new Map<Op, number>();

  /** The next `times` calls of op throw err (after counting as a call). */
  fail(op: Op, err: Error, times = 1): this {
    this.failures.set(op, [...(this.failures.get(op) ?? []), ...Array.from({ length: times }, () => err)]);
    return this;
  }

  /** Runs before every call of op until cleared with `undefined`. */
  before(op: Op, hook: Hook | undefined): this {
    if (hook) this.hooks.set(op, hook);
    else this.hooks.delete(op);
    return this;
  }

  calls(op: Op): number {
    return this.counts.get(op) ?? 0;
  }

  /** Called by a fake at the start of each operation. */
  async enter(op: Op, signal?: AbortSignal): Promise<void> {
    this.counts.set(op, this.calls(op) + 1);
    await this.hooks.get(op)?.(signal);
    const queued = this.failures.get(op);
    const err = queued?.shift();
    if (err) throw err;
  }
}

/** A hook that waits ms, or rejects with the signal's reason as soon as it aborts (as a real tool killed by its signal does). */
export function delay(ms: number): Hook {
  return (signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const t = setTimeout(resolve, ms);
      signal?.addEventListener(
        'abort',
        () => {
          clearTimeout(t);
          reject(signal.reason as Error);
        },
        { once: true },
      );
    });
}

/** A hook that holds each call until `open()`; `entered` resolves when the first call is held. */
export function gate(): { hook: Hook; open(): void; entered: Promise<void> } {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const enteredP = new Promise<void>((r) => (entered = r));
  return {
    hook: async () => {
      entered();
      await opened;
    },
    open,
    entered: enteredP,
  };
}
