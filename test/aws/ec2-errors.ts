import { randomUUID } from 'node:crypto';
import { EC2ServiceException } from '@aws-sdk/client-ec2';

/**
 * An EC2 error in the shape the SDK gives callers: an EC2ServiceException whose
 * `name` is EC2's error code (what code should match on), with `Code` and
 * `$metadata` like the SDK's own deserializer fills in. Client errors are HTTP
 * 400; RequestLimitExceeded is HTTP 503 like EC2's; server faults 500/503.
 */
export function ec2Error(code: string, message: string, opts: { fault?: 'client' | 'server'; status?: number } = {}): EC2ServiceException {
  const fault = opts.fault ?? 'client';
  const status = opts.status ?? (fault === 'server' ? 500 : 400);
  const error = new EC2ServiceException({
    name: code,
    $fault: fault,
    message,
    $metadata: { httpStatusCode: status, requestId: randomUUID(), attempts: 1, totalRetryDelay: 0 },
  });
  return Object.assign(error, { Code: code });
}

export const throttled = (): EC2ServiceException => ec2Error('RequestLimitExceeded', 'Request limit exceeded.', { status: 503 });
export const internalError = (): EC2ServiceException =>
  ec2Error('InternalError', 'An internal error has occurred.', { fault: 'server', status: 500 });
export const unavailable = (): EC2ServiceException =>
  ec2Error('Unavailable', 'The server is overloaded and can\'t handle the request.', { fault: 'server', status: 503 });
export const invalidParameter = (message: string): EC2ServiceException => ec2Error('InvalidParameterValue', message);
export const parameterCombination = (message: string): EC2ServiceException => ec2Error('InvalidParameterCombination', message);
export const missingParameter = (message: string): EC2ServiceException => ec2Error('MissingParameter', message);
