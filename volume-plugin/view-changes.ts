/**
 * Change notifications of the volume service's local view, for whoever keeps
 * answers made from it between changes (a front end's answer cache,
 * answers.ts). The service runs every change of a volume in work under that
 * volume's lock, and the lock reports when such work starts and ends
 * (keyed-lock.ts, LockObserver); a change outside per-name work (start,
 * refresh) is a reset. So a listener is told of every change without any
 * caller remembering to notify, and the core knows nothing of its listeners.
 */
export interface ViewListener {
  /** Work that may change the view of `name` starts; until it ends, the view of `name` may change at any time. */
  workStarted(name: string): void;
  /** That work ended: the view of `name` stays as it is until work on it starts again. */
  workEnded(name: string): void;
  /** The whole view may have changed. */
  reset(): void;
}

/** The service's side: the per-name lock reports to it (it is the lock's observer), listeners subscribe to it. */
export class ViewChanges {
  private readonly listeners = new Set<ViewListener>();
  /** Names with work running now, and how many pieces of work. */
  private readonly working = new Map<string, number>();

  /**
   * Adds a listener; returns the function that removes it. Work already
   * running is reported to it at once, so a listener that subscribes late
   * never keeps an answer made while that work runs.
   */
  subscribe(listener: ViewListener): () => void {
    this.listeners.add(listener);
    for (const [name, count] of this.working) for (let i = 0; i < count; i++) listener.workStarted(name);
    return () => void this.listeners.delete(listener);
  }

  started(name: string): void {
    this.working.set(name, (this.working.get(name) ?? 0) + 1);
    for (const l of this.listeners) l.workStarted(name);
  }

  ended(name: string): void {
    const left = (this.working.get(name) ?? 1) - 1;
    if (left > 0) this.working.set(name, left);
    else this.working.delete(name);
    for (const l of this.listeners) l.workEnded(name);
  }

  reset(): void {
    for (const l of this.listeners) l.reset();
  }
}
