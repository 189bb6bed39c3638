/**
 * Errors carry a short machine code and a sentence a user can act on. The
 * plugin server returns the sentence in Docker's `Err` field; logs carry both.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT' // bad name, bad option, malformed request
  | 'NOT_FOUND' // authoritative: the volume does not exist
  | 'CONFLICT' // exists with other options, in use, attached elsewhere
  | 'UNSAFE_DEVICE' // identity not verified, holds data of another kind
  | 'TIMEOUT' // a bounded wait ran out
  | 'UNAVAILABLE' // a dependency (AWS, IMDS, dockerd) did not answer
  | 'LIMIT_EXCEEDED' // throttled after retries, no free device name
  | 'INTERNAL';

export class BerthError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BerthError';
    this.code = code;
  }
}

/**
 * Nothing was done because EC2 had no room for the call in time: it refused it for the account's
 * API budget, or while browning out (a server fault), until the caller's time ran out
 * (docs/design.md §6, "Sharing the account"). The same request later goes through and nothing
 * needs undoing. The code and sentence are those the error would have had anyway (a throttled
 * call is LIMIT_EXCEEDED, a pacer that ran out of time TIMEOUT); the class says it is a wait, not
 * a fault: the reconciler publishes such a volume as `attaching`, not as an error an operator
 * must act on, and the EBS backend keeps what it looked up for the next try.
 */
export class StillWaiting extends BerthError {}

export function isBerthError(err: unknown, code?: ErrorCode): err is BerthError {
  return err instanceof BerthError && (code === undefined || err.code === code);
}

/** The message of any thrown value, for logs and `Err` answers. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
