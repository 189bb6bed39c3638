import { BerthError, errorMessage, StillWaiting } from '../../../lib/errors.js';

/**
 * EC2's errors as berth reads them. The port (ec2-port.ts) fails as the SDK does: `name` is
 * EC2's error code, `$fault` 'client' or 'server'; these read that, and wrap it in a BerthError
 * that says what berth was doing.
 */

export const codeOf = (err: unknown): string => (err as { name?: string }).name ?? '';
export const isNotFound = (err: unknown) => /\.NotFound$|^InvalidVolumeID\.Malformed$/.test(codeOf(err));
export const isThrottled = (err: unknown) => /^(RequestLimitExceeded|Throttling|ThrottlingException)$/.test(codeOf(err));
export const isDeviceInUse = (err: unknown) => codeOf(err) === 'InvalidParameterValue' && /already in use/i.test(errorMessage(err));
export const isServerFault = (err: unknown) => (err as { $fault?: string }).$fault === 'server';

/** Wraps an EC2 error in a BerthError that says what berth was doing. */
export function ec2Error(err: unknown, doing: string): BerthError {
  if (err instanceof BerthError) return err;
  const code = codeOf(err);
  const why = `${doing}: EC2 said ${code ? `${code}: ` : ''}${errorMessage(err)}`;
  // Refused for the account's budget, or by a browning-out EC2, until the caller's time ran out: a wait, not a fault (StillWaiting).
  if (isThrottled(err)) return new StillWaiting('LIMIT_EXCEEDED', `${why} (EC2 still refused it when its time ran out; berth tries again on the next call or reconcile)`, { cause: err });
  if (isNotFound(err)) return new BerthError('NOT_FOUND', why, { cause: err });
  if (code === 'InvalidVolume.ZoneMismatch' || code === 'VolumeInUse' || code === 'IncorrectState' || code === 'IncorrectInstanceState') return new BerthError('CONFLICT', why, { cause: err });
  if (isServerFault(err)) return new StillWaiting('UNAVAILABLE', why, { cause: err });
  if (code === '' || code === 'TimeoutError') return new BerthError('UNAVAILABLE', why, { cause: err });
  return new BerthError('INVALID_ARGUMENT', why, { cause: err });
}

/**
 * EC2 will not make a new volume for this ClientToken: it was used with other parameters
 * (IdempotentParameterMismatch), or its volume is gone (deleted, or failed and deleted).
 * The caller rotates the token, as aws-ebs-csi-driver does (pkg/cloud/cloud.go).
 */
export class ClientTokenSpent extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFLICT', message, options);
  }
}

/** EC2 failed a new volume after answering (state "error"), and berth deleted it: its token is spent too. */
export class FailedVolumeDeleted extends BerthError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/**
 * An attach that never got an AttachVolume through to EC2 (refused for the account's budget, or
 * during a brownout, until its time ran out; or its caller gone while it still waited for a turn):
 * nothing is attached, so the caller has nothing to undo and nothing to describe to find out. The
 * code and sentence are those of the error it stands for (Ec2Facade.attach).
 */
export class AttachNotSent extends StillWaiting {}
