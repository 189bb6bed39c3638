/**
 * The core's own call types, which every layer (front ends, the service,
 * backends) shares and no protocol owns.
 */

/** What every call that may wait takes: the caller's deadline (docs/design.md §3: dockerd gives up after it). */
export interface CallOptions {
  signal?: AbortSignal;
}

/**
 * Where a volume is visible: `local` to this host, or `global` (the same name
 * means the same volume on every host, as an EBS volume that follows its node).
 * Docker's Capabilities answer carries it as it is.
 */
export type Scope = 'local' | 'global';
