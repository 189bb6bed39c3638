/**
 * One async mutex per key: work on one volume name runs one at a time, in
 * arrival order; different names proceed in parallel. Waiters wait (dockerd
 * does not retry an error reply, so a busy answer would be a failed Mount).
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(work, work);
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys with work queued or running. */
  get busy(): number {
    return this.tails.size;
  }
}
