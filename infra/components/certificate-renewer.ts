import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { roleNamePrefix } from './naming.js';
import { LAMBDA_RUNTIME } from './scheduled-job.js';

export interface CertificateRenewerArgs {
  /** Environment bucket the renewer uploads to and berth's refreshers read from. */
  readonly bucketName: pulumi.Input<string>;
  /** The bucket's region (the global stack's); the renewer's S3 client uses it. */
  readonly bucketRegion: pulumi.Input<string>;
  /** KMS key that encrypts the private key and the ACME account key at rest. */
  readonly kmsKeyArn: pulumi.Input<string>;
  /** Route 53 zone holding the `_acme-challenge` records. */
  readonly hostedZoneId: pulumi.Input<string>;
  /** Names the certificate covers, e.g. ["db.example.com", "*.db.example.com"]. */
  readonly domains: readonly string[];
  readonly email: string;
  /** Zip of the built renewer (dist/ with production node_modules); handler traefik/renewer/handler.handler. */
  readonly code: pulumi.asset.Archive;
  /** EventBridge schedule; daily by default (renewal happens at < 30 days left). */
  readonly schedule?: string;
  readonly directoryUrl?: string;
  /** Alarm when the stored certificate has fewer days left than this. */
  readonly alarmDays?: number;
  readonly alarmTopicArn?: pulumi.Input<string>;
}

const PREFIX = 'tls/';

/**
 * What the renewer may do: read and write its objects, and list only their prefix, which is
 * how it tells a missing key (S3's 403 without s3:ListBucket) from a denied read
 * (traefik/renewer/renewer.ts readIfExists); use the bucket key; change TXT records of one zone.
 */
export function renewerPolicy(bucketArn: string, kmsKeyArn: string, zoneId: string) {
  return {
    Version: '2012-10-17' as const,
    Statement: [
      { Sid: 'CertificateObjects', Effect: 'Allow' as const, Action: ['s3:GetObject', 's3:PutObject'], Resource: `${bucketArn}/${PREFIX}*` },
      { Sid: 'ListCertificateObjects', Effect: 'Allow' as const, Action: ['s3:ListBucket'], Resource: bucketArn, Condition: { StringLike: { 's3:prefix': [`${PREFIX}*`] } } },
      { Sid: 'EncryptAtRest', Effect: 'Allow' as const, Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: kmsKeyArn },
      { Sid: 'Challenges', Effect: 'Allow' as const, Action: ['route53:ChangeResourceRecordSets'], Resource: `arn:aws:route53:::hostedzone/${zoneId}` },
      { Sid: 'ChallengeSync', Effect: 'Allow' as const, Action: ['route53:GetChange'], Resource: 'arn:aws:route53:::change/*' },
    ],
  };
}

/** Validates args before any resource is declared. */
export function validateRenewerArgs(args: Pick<CertificateRenewerArgs, 'domains' | 'email' | 'alarmDays'>): void {
  if (args.domains.length === 0) throw new Error('CertificateRenewer: domains must name at least one DNS name');
  const bad = args.domains.filter((d) => !/^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,}$/.test(d));
  if (bad.length > 0) throw new Error(`CertificateRenewer: not DNS names: ${bad.join(', ')}`);
  if (!/^[^@\s]+@[^@\s]+$/.test(args.email)) throw new Error(`CertificateRenewer: invalid email ${args.email}`);
  if (args.alarmDays !== undefined && (args.alarmDays < 1 || args.alarmDays >= 30)) throw new Error('CertificateRenewer: alarmDays must be between 1 and 29 (renewal starts at 30)');
}

/**
 * The scheduled ACME renewer of traefik/renewer: a Lambda with least-privilege
 * IAM (tls/ objects of one bucket, one KMS key, one hosted zone), a daily
 * EventBridge rule, and an alarm when the certificate gets within alarmDays of
 * expiry or the renewer stops reporting.
 */
export class CertificateRenewer extends pulumi.ComponentResource {
  readonly functionArn: pulumi.Output<string>;
  readonly alarmArn: pulumi.Output<string>;

  constructor(name: string, args: CertificateRenewerArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:tls:CertificateRenewer', name, {}, opts);
    validateRenewerArgs(args);
    const schedule = args.schedule ?? 'rate(1 day)';
    const alarmDays = args.alarmDays ?? 14;
    const parent = { parent: this };

    const role = new aws.iam.Role(`${name}-role`, {
      namePrefix: roleNamePrefix(`${name}-role`),
      assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: 'lambda.amazonaws.com' }),
    }, parent);
    new aws.iam.RolePolicyAttachment(`${name}-logs`, { role: role.name, policyArn: aws.iam.ManagedPolicy.AWSLambdaBasicExecutionRole }, parent);
    const bucketArn = pulumi.interpolate`arn:aws:s3:::${args.bucketName}`;
    new aws.iam.RolePolicy(`${name}-policy`, {
      role: role.id,
      policy: pulumi.all([bucketArn, args.kmsKeyArn, args.hostedZoneId]).apply(([bucket, kms, zone]) =>
        JSON.stringify(renewerPolicy(bucket, kms, zone)),
      ),
    }, parent);

    const fn = new aws.lambda.Function(`${name}-fn`, {
      runtime: LAMBDA_RUNTIME,
      handler: 'traefik/renewer/handler.handler',
      code: args.code,
      role: role.arn,
      timeout: 600, // Route 53 changes take up to a minute or two to sync
      memorySize: 256,
      environment: {
        variables: {
          RENEWER_BUCKET: args.bucketName,
          RENEWER_BUCKET_REGION: args.bucketRegion,
          RENEWER_DOMAINS: args.domains.join(','),
          RENEWER_EMAIL: args.email,
          RENEWER_HOSTED_ZONE_ID: args.hostedZoneId,
          RENEWER_KMS_KEY_ID: args.kmsKeyArn,
          ...(args.directoryUrl ? { RENEWER_DIRECTORY_URL: args.directoryUrl } : {}),
        },
      },
    }, parent);

    const rule = new aws.cloudwatch.EventRule(`${name}-schedule`, { scheduleExpression: schedule, description: 'berth certificate renewal' }, parent);
    new aws.cloudwatch.EventTarget(`${name}-target`, { rule: rule.name, arn: fn.arn }, parent);
    new aws.lambda.Permission(`${name}-invoke`, { action: 'lambda:InvokeFunction', function: fn.name, principal: 'events.amazonaws.com', sourceArn: rule.arn }, parent);

    const alarm = new aws.cloudwatch.MetricAlarm(`${name}-expiry`, {
      namespace: 'Berth/Certificates',
      metricName: 'DaysToExpiry',
      dimensions: { Bucket: args.bucketName },
      statistic: 'Minimum',
      period: 86_400,
      evaluationPeriods: 1,
      comparisonOperator: 'LessThanThreshold',
      threshold: alarmDays,
      // No report for two days means the renewer is broken: alarm too.
      treatMissingData: 'breaching',
      alarmDescription: `TLS certificate within ${alarmDays} days of expiry, or the renewer stopped reporting`,
      ...(args.alarmTopicArn ? { alarmActions: [args.alarmTopicArn], okActions: [args.alarmTopicArn] } : {}),
    }, parent);

    this.functionArn = fn.arn;
    this.alarmArn = alarm.arn;
    this.registerOutputs({ functionArn: this.functionArn, alarmArn: this.alarmArn });
  }
}
