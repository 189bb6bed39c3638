import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { DEFAULT_EC2_SCHEDULE_PREFIX } from '../../lib/ec2-schedule-object.js';
import { tagKeys } from '../../lib/node-contract.js';

/** Denies any request not made over TLS 1.2 or later, whoever makes it. */
export function tlsOnlyPolicy(bucketArn: string) {
  const resources = [bucketArn, `${bucketArn}/*`];
  return {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'DenyInsecureTransport', Effect: 'Deny', Principal: '*', Action: 's3:*', Resource: resources, Condition: { Bool: { 'aws:SecureTransport': 'false' } } },
      { Sid: 'DenyOldTls', Effect: 'Deny', Principal: '*', Action: 's3:*', Resource: resources, Condition: { NumericLessThan: { 's3:TlsVersion': '1.2' } } },
    ],
  };
}

export interface BucketsArgs {
  /** Customer managed key for SSE-KMS; SSE-S3 (AES256) when omitted. */
  readonly kmsKeyArn?: pulumi.Input<string>;
  /** Days a replaced or deleted object version is kept (default 90). */
  readonly noncurrentVersionDays?: number;
  readonly tags?: Readonly<Record<string, string>>;
}

/**
 * The environment bucket (TLS certificates, shared settings) and the artifacts bucket
 * (berth release tarballs, build sources): versioned, encrypted, public access blocked,
 * owner-enforced, TLS-only, old versions expired.
 */
export class Buckets extends pulumi.ComponentResource {
  readonly environmentBucket: pulumi.Output<string>;
  readonly artifactsBucket: pulumi.Output<string>;
  readonly environmentBucketArn: pulumi.Output<string>;
  readonly artifactsBucketArn: pulumi.Output<string>;

  constructor(name: string, args: BucketsArgs = {}, opts?: pulumi.ComponentResourceOptions) {
    super('berth:storage:Buckets', name, {}, opts);
    const keepDays = args.noncurrentVersionDays ?? 90;
    if (!Number.isInteger(keepDays) || keepDays < 1) throw new Error(`Buckets: noncurrentVersionDays must be a whole number ≥ 1, not ${keepDays}`);
    const make = (purpose: 'environment' | 'artifacts') => {
      const id = `${name}-${purpose}`;
      const parent = { parent: this };
      const bucket = new aws.s3.Bucket(id, { bucketPrefix: `${id}-`, tags: { ...args.tags, [tagKeys().purpose]: purpose } }, { parent: this, protect: true });
      new aws.s3.BucketOwnershipControls(id, { bucket: bucket.id, rule: { objectOwnership: 'BucketOwnerEnforced' } }, parent);
      const block = new aws.s3.BucketPublicAccessBlock(id, {
        bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true,
      }, parent);
      new aws.s3.BucketVersioning(id, { bucket: bucket.id, versioningConfiguration: { status: 'Enabled' } }, parent);
      new aws.s3.BucketServerSideEncryptionConfiguration(id, {
        bucket: bucket.id,
        rules: [{
          applyServerSideEncryptionByDefault: args.kmsKeyArn
            ? { sseAlgorithm: 'aws:kms', kmsMasterKeyId: args.kmsKeyArn }
            : { sseAlgorithm: 'AES256' },
          bucketKeyEnabled: args.kmsKeyArn !== undefined,
        }],
      }, parent);
      new aws.s3.BucketLifecycleConfiguration(id, {
        bucket: bucket.id,
        rules: [
          {
            id: 'expire-old-versions', status: 'Enabled', filter: {},
            noncurrentVersionExpiration: { noncurrentDays: keepDays },
            abortIncompleteMultipartUpload: { daysAfterInitiation: 7 },
          },
          // Every berth host rewrites its Region's EC2 schedule (docs/design.md §6): thousands of versions
          // in an AZ replacement, none worth keeping. Where rules overlap, S3 applies the shorter expiry.
          ...(purpose === 'environment'
            ? [{ id: 'expire-old-ec2-schedules', status: 'Enabled', filter: { prefix: DEFAULT_EC2_SCHEDULE_PREFIX }, noncurrentVersionExpiration: { noncurrentDays: 1 } }]
            : []),
        ],
      }, parent);
      // After the public access block: S3 refuses a policy while the block is being applied.
      new aws.s3.BucketPolicy(id, { bucket: bucket.id, policy: bucket.arn.apply((arn) => JSON.stringify(tlsOnlyPolicy(arn))) }, { parent: this, dependsOn: [block] });
      return bucket;
    };
    const environment = make('environment');
    const artifacts = make('artifacts');
    this.environmentBucket = environment.bucket;
    this.artifactsBucket = artifacts.bucket;
    this.environmentBucketArn = environment.arn;
    this.artifactsBucketArn = artifacts.arn;
    this.registerOutputs({
      environmentBucket: this.environmentBucket, artifactsBucket: this.artifactsBucket,
      environmentBucketArn: this.environmentBucketArn, artifactsBucketArn: this.artifactsBucketArn,
    });
  }
}
