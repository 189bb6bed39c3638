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

export function isBerthError(err: unknown, code?: ErrorCode): err is BerthError {
  return err instanceof BerthError && (code === undefined || err.code === code);
}

/** The message of any thrown value, for logs and `Err` answers. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
