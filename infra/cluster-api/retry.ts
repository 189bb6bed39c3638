/**
 * Which failures of a Pulumi step are worth another attempt. Another update holding the
 * stack's lock (`ConcurrentUpdateError`) ends; AWS throttling and 5xx answers pass. Everything
 * else (invariants, a refused resource, bad credentials) fails the same way each time.
 */

/** AWS error codes and transport failures that a later attempt can get past. */
const TRANSIENT = [
  /\bRequestLimitExceeded\b/,
  /\bThrottl(?:ing|ed)(?:Exception)?\b/,
  /\bTooManyRequestsException\b/,
  /\bRate exceeded\b/,
  /\bServiceUnavailable(?:Exception)?\b/,
  /\bInternalError\b/,
  /\bInternalFailure\b/,
  /\bstatus code: 5\d\d\b/i,
  /\bStatusCode: 5\d\d\b/,
  /\bECONNRESET\b/,
  /\bETIMEDOUT\b/,
  /\bconnection reset by peer\b/i,
];

export type FailureKind = 'concurrent-update' | 'transient' | 'permanent';

export function classifyFailure(err: unknown): FailureKind {
  if (err instanceof Error && err.name === 'ConcurrentUpdateError') return 'concurrent-update';
  // CommandError keeps the CLI's stderr in its message.
  const text = err instanceof Error ? err.message : String(err);
  if (/\[409\] Conflict: Another update is currently in progress/.test(text)) return 'concurrent-update';
  return TRANSIENT.some((re) => re.test(text)) ? 'transient' : 'permanent';
}

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  readonly attempts: number;
  /** Wait before the second attempt; each later wait doubles, up to maxDelayMs. */
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
}

/** A stack update takes minutes; a few attempts a minute or so apart ride out throttling and a colleague's update. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, firstDelayMs: 15_000, maxDelayMs: 120_000 };

export function delayBefore(attempt: number, policy: RetryPolicy): number {
  return Math.min(policy.firstDelayMs * 2 ** (attempt - 2), policy.maxDelayMs);
}

/** The failure the caller sees once attempts are spent or a failure is permanent. */
export class ClusterOperationError extends Error {
  constructor(
    readonly cluster: string,
    readonly operation: string,
    readonly attempts: number,
    readonly kind: FailureKind | 'not-ready' | 'invariant',
    override readonly cause: unknown,
    message: string,
  ) {
    super(message);
    this.name = 'ClusterOperationError';
  }
}
