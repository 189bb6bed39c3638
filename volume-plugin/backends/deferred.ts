import { BerthError } from '../../lib/errors.js';
import type { Scope } from '../call.js';
import type { Backend } from './backend.js';

/**
 * A backend that becomes usable later (EBS needs the host's identity and
 * credentials first), so the plugin socket can be up from the start. Until
 * then list() fails at once (the manager answers Get/List from its state
 * file), and every other call waits for the backend, up to a bound, then
 * fails with the reason it is not there yet.
 */
export interface DeferredBackend<B extends Backend> extends Backend {
  /** The backend once it is ready. */
  readonly current: B | undefined;
  /** Resolves with the backend when it is ready. */
  readonly ready: Promise<B>;
  /** Why it is not ready yet (the last start-up error), for logs and /readyz. */
  readonly pending: string | undefined;
  resolve(backend: B): void;
  /** Records a failed start-up attempt; calls keep waiting for a later attempt. */
  failedAttempt(reason: string): void;
}

export function deferredBackend<B extends Backend>(
  /** The backend's name, as messages show it. */
  name: string,
  scope: Scope,
  validate: Backend['validate'],
  waitMs: number,
  options: Backend['options'],
): DeferredBackend<B> {
  let current: B | undefined;
  let pending: string | undefined = 'starting';
  let ready!: (b: B) => void;
  const readyPromise = new Promise<B>((r) => (ready = r));

  /** The backend once ready; waits up to waitMs, or until the caller's deadline. */
  async function backend(signal?: AbortSignal): Promise<B> {
    if (current) return current;
    signal?.throwIfAborted();
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new BerthError('UNAVAILABLE', `the ${name} backend is not ready after ${Math.round(waitMs / 1000)} s: ${pending ?? 'starting'}`)),
        waitMs,
      );
      onAbort = () => reject(signal!.reason as Error);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([readyPromise, timeout]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  return {
    scope,
    options,
    validate,
    get current() {
      return current;
    },
    ready: readyPromise,
    get pending() {
      return current ? undefined : pending;
    },
    resolve(b) {
      current = b;
      pending = undefined;
      ready(b);
    },
    failedAttempt(reason) {
      pending = reason;
    },
    async create(name, options, call) {
      return (await backend(call?.signal)).create(name, options, call);
    },
    async find(name) {
      return (await backend()).find(name);
    },
    async list() {
      if (!current) throw new BerthError('UNAVAILABLE', `the ${name} backend is not ready: ${pending ?? 'starting'}`);
      return current.list();
    },
    async attach(record, call) {
      return (await backend(call?.signal)).attach(record, call);
    },
    async release(record) {
      return (await backend()).release(record);
    },
    async detach(record) {
      return (await backend()).detach(record);
    },
    async remove(record, call) {
      return (await backend(call?.signal)).remove(record, call);
    },
    async resize(record, options, call) {
      const b = await backend(call?.signal);
      if (!b.resize) throw new BerthError('INVALID_ARGUMENT', `the ${name} backend cannot resize a volume`);
      return b.resize(record, options, call);
    },
    async verifyDevice(record, devicePath) {
      if (!current?.verifyDevice) throw new BerthError('UNAVAILABLE', `the ${name} backend cannot verify ${devicePath} now: ${pending ?? 'starting'}`);
      return current.verifyDevice(record, devicePath);
    },
  };
}
