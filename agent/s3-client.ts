import type { S3Client } from '@aws-sdk/client-s3';
import type { Config } from './config.js';

/** How hard one user of S3 tries: the certificate refresher polls, the EC2 schedule must answer fast or not at all. */
export interface S3ClientTuning {
  readonly maxAttempts: number;
  readonly connectionTimeoutMs: number;
  readonly requestTimeoutMs: number;
}

/**
 * The one place the agent builds S3 clients (the certificate refresher, the EC2 schedule store):
 * `BERTH_S3_ENDPOINT` (path-style, for S3-compatible stores and tests) and `BERTH_AWS_REGION` (the
 * buckets' region, which need not be the host's). Loaded only when used: the S3 SDK costs ~15 MB
 * that a host without either need not pay.
 */
export async function createS3Client(config: Pick<Config, 'BERTH_S3_ENDPOINT' | 'BERTH_AWS_REGION'>, tuning: S3ClientTuning): Promise<S3Client> {
  const { S3Client } = await import('@aws-sdk/client-s3');
  const endpoint = config.BERTH_S3_ENDPOINT;
  return new S3Client({
    ...(config.BERTH_AWS_REGION ? { region: config.BERTH_AWS_REGION } : {}),
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    retryMode: 'adaptive',
    maxAttempts: tuning.maxAttempts,
    requestHandler: { connectionTimeout: tuning.connectionTimeoutMs, requestTimeout: tuning.requestTimeoutMs },
  });
}
