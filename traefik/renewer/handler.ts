import { Route53Client } from '@aws-sdk/client-route-53';
import { S3Client } from '@aws-sdk/client-s3';
import * as acme from 'acme-client';
import { z } from 'zod';
import { createLogger } from '../../lib/logger.js';
import { Route53Dns01 } from './dns-providers.js';
import { renewIfDue, type RenewResult } from './renewer.js';

/**
 * Scheduled entry point (a Lambda on an EventBridge schedule, declared in
 * infra/): renew when due, then report the days left as a CloudWatch metric in
 * embedded metric format, which the expiry alarm (< 14 days) watches.
 *
 * IAM it needs (infra/components/certificate-renewer.ts declares it): s3:GetObject/PutObject on
 * <bucket>/tls/*, s3:ListBucket on the bucket for prefix tls/ (to tell a missing key from a denied
 * read, see readIfExists), kms:GenerateDataKey and kms:Decrypt on the bucket key, route53:ChangeResourceRecordSets on the
 * zone, route53:GetChange.
 */
const Env = z.object({
  RENEWER_BUCKET: z.string().min(1),
  /** The bucket's region (the global stack's), which is not the Lambda's. */
  RENEWER_BUCKET_REGION: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/),
  RENEWER_DOMAINS: z.string().transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean)).pipe(z.array(z.string()).min(1)),
  RENEWER_EMAIL: z.email(),
  RENEWER_HOSTED_ZONE_ID: z.string().min(1),
  RENEWER_KMS_KEY_ID: z.string().optional(),
  RENEWER_DIRECTORY_URL: z.url().default(acme.directory.letsencrypt.production),
  RENEWER_CERT_OBJECT: z.string().default('tls/cert.pem'),
  RENEWER_KEY_OBJECT: z.string().default('tls/key.pem'),
  RENEWER_ACCOUNT_KEY_OBJECT: z.string().default('tls/acme-account-key.pem'),
  RENEWER_RENEW_BEFORE_DAYS: z.coerce.number().int().positive().default(30),
});

/** The renewer's clients: S3 in the bucket's region (a Lambda elsewhere would be redirected, and fail), Route 53 (global). */
export function renewerClients(env: Pick<z.infer<typeof Env>, 'RENEWER_BUCKET_REGION'>) {
  return { s3: new S3Client({ region: env.RENEWER_BUCKET_REGION }), route53: new Route53Client({}) };
}

export async function handler(): Promise<RenewResult> {
  const env = Env.parse(process.env);
  const logger = createLogger('info').child({ component: 'renewer' });
  const clients = renewerClients(env);
  const result = await renewIfDue({
    s3: clients.s3,
    bucket: env.RENEWER_BUCKET,
    certObject: env.RENEWER_CERT_OBJECT,
    keyObject: env.RENEWER_KEY_OBJECT,
    accountKeyObject: env.RENEWER_ACCOUNT_KEY_OBJECT,
    kmsKeyId: env.RENEWER_KMS_KEY_ID,
    domains: env.RENEWER_DOMAINS,
    email: env.RENEWER_EMAIL,
    directoryUrl: env.RENEWER_DIRECTORY_URL,
    dns: new Route53Dns01(clients.route53, env.RENEWER_HOSTED_ZONE_ID),
    renewBeforeDays: env.RENEWER_RENEW_BEFORE_DAYS,
    logger,
  });
  // CloudWatch embedded metric format: one JSON line becomes the metric Berth/Certificates DaysToExpiry.
  process.stdout.write(
    `${JSON.stringify({
      _aws: { Timestamp: Date.now(), CloudWatchMetrics: [{ Namespace: 'Berth/Certificates', Dimensions: [['Bucket']], Metrics: [{ Name: 'DaysToExpiry', Unit: 'Count' }] }] },
      Bucket: env.RENEWER_BUCKET,
      DaysToExpiry: result.daysLeft,
    })}\n`,
  );
  return result;
}
