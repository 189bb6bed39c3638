import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { roleNamePrefix } from './naming.js';
import { IMAGES, type ImageName } from './registries.js';

/** The Dockerfile each image is built from, at the repository root. */
export const DOCKERFILES: Readonly<Record<ImageName, string>> = { agent: 'Dockerfile.agent', traefik: 'Dockerfile.traefik' };
/** Key in the artifacts bucket a source zip of the repository is uploaded to; each new version builds both images. */
export const SOURCE_KEY = 'source/berth.zip';
/** Prefix in the artifacts bucket the agent build writes release tarballs to (what hosts install). */
export const RELEASE_PREFIX = 'berth/';

/**
 * The tag of a build: `src-` and 16 hex digits of a hash over every file of the source (names and
 * contents, in a fixed order). Both projects unpack the same source zip, so the agent release and
 * the Traefik image of one upload carry the same tag, and uploading the same source again gives
 * the same tag (the push of an existing immutable tag fails, nothing is overwritten). The
 * projects' build numbers are not used: they are two counters and drift apart.
 */
export const SOURCE_TAG_COMMAND =
  "printf 'src-%s' \"$(find . -type f ! -path './.git/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)\"";

/**
 * The Traefik release berth's image is built on (the newest v3 when this was written: v3.6.21,
 * June 2026; Dockerfile.traefik's default names the same). The build pins it by digest: either
 * the digest given (`berth:traefikBaseImage` in the global stack, `traefik:v3.x.y@sha256:…`) or
 * the one the registry answers for this tag at build time, printed in the build log.
 */
export const TRAEFIK_BASE_TAG = 'traefik:v3.6.21';

/** A Traefik base image reference pinned by digest: `traefik:v3.<minor>.<patch>@sha256:<64 hex>`. */
export function validateTraefikBaseImage(ref: string): string {
  if (!/^(docker\.io\/(library\/)?)?traefik:v3\.\d+\.\d+@sha256:[0-9a-f]{64}$/.test(ref)) {
    throw new Error(`berth:traefikBaseImage must be a Traefik v3 release pinned by digest, e.g. ${TRAEFIK_BASE_TAG}@sha256:<64 hex digits> (docker buildx imagetools inspect ${TRAEFIK_BASE_TAG} prints it), not "${ref}"`);
  }
  return ref;
}

/** Shell that turns $TRAEFIK_BASE into a digest reference when it is a bare tag (the build can reach the registry). */
export const PIN_TRAEFIK_BASE_COMMAND =
  'case "$TRAEFIK_BASE" in *@sha256:*) ;; *) docker pull --quiet "$TRAEFIK_BASE" >/dev/null && TRAEFIK_BASE="$(docker inspect --format \'{{index .RepoDigests 0}}\' "$TRAEFIK_BASE")" ;; esac && export TRAEFIK_BASE && echo "Traefik base image $TRAEFIK_BASE"';

/**
 * Buildspec for one image: log in to ECR, build from the Dockerfile, push the immutable source
 * tag (SOURCE_TAG_COMMAND). The agent build also packs the release tarball hosts install from S3.
 */
export function buildspec(image: ImageName): string {
  const release = image === 'agent'
    ? [
        'npm ci',
        // What bootstrap.sh installs (scripts/release.mjs): the bundle, the systemd unit, Traefik's TLS
        // options and its own Node.js, for the x86_64 instances hosts run on.
        'npm run release -- --arch x64',
        `aws s3 cp --only-show-errors dist/release/berth-*-linux-x64.tar.gz "s3://$ARTIFACTS_BUCKET/${RELEASE_PREFIX}$SOURCE_TAG.tar.gz"`,
      ]
    : [];
  const lines = [
    'version: 0.2',
    'phases:',
    '  pre_build:',
    '    commands:',
    // Before anything writes into the source tree.
    `      - export SOURCE_TAG="$(${SOURCE_TAG_COMMAND})" && echo "source tag $SOURCE_TAG"`,
    ...(image === 'traefik' ? [`      - ${PIN_TRAEFIK_BASE_COMMAND}`] : []),
    '      - aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "${REPOSITORY_URI%%/*}"',
    '  build:',
    '    commands:',
    `      - docker build --pull ${image === 'traefik' ? '--build-arg TRAEFIK_IMAGE="$TRAEFIK_BASE" ' : ''}-f ${DOCKERFILES[image]} -t "$REPOSITORY_URI:$SOURCE_TAG" .`,
    '      - docker push "$REPOSITORY_URI:$SOURCE_TAG"',
    ...release.map((c) => `      - ${c}`),
    '',
  ];
  return lines.join('\n');
}

export interface BuildPipelineArgs {
  /** The environment: log groups are `/<environment>/build/<image>`. */
  readonly environment: string;
  readonly region: pulumi.Input<string>;
  readonly accountId: pulumi.Input<string>;
  readonly vpcId: pulumi.Input<string>;
  /** Private subnets of the global VPC (outbound through its NAT gateway). */
  readonly privateSubnetIds: readonly pulumi.Input<string>[];
  readonly artifactsBucket: pulumi.Input<string>;
  readonly repositoryUrls: Readonly<Record<ImageName, pulumi.Input<string>>>;
  readonly repositoryArns: Readonly<Record<ImageName, pulumi.Input<string>>>;
  /** Key the artifacts bucket encrypts with: builds decrypt the source and encrypt the release. */
  readonly bucketKmsKeyArn?: pulumi.Input<string>;
  /** Traefik base image pinned by digest (validateTraefikBaseImage); the digest of TRAEFIK_BASE_TAG at build time when omitted. */
  readonly traefikBaseImage?: string;
  readonly computeType?: string;
  readonly buildImage?: string;
  readonly logRetentionDays?: number;
}

/**
 * CodeBuild projects building Dockerfile.agent and Dockerfile.traefik inside the private
 * subnets of the global VPC, started by EventBridge when a new source zip lands in the
 * artifacts bucket. Each project has its own role limited to its repository, its log
 * group and its S3 keys.
 */
export class BuildPipeline extends pulumi.ComponentResource {
  readonly projectNames: Readonly<Record<ImageName, pulumi.Output<string>>>;

  constructor(name: string, args: BuildPipelineArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:build:BuildPipeline', name, {}, opts);
    if (args.privateSubnetIds.length === 0) throw new Error('BuildPipeline: privateSubnetIds must name at least one subnet');
    const computeType = args.computeType ?? 'BUILD_GENERAL1_MEDIUM';
    const buildImage = args.buildImage ?? 'aws/codebuild/amazonlinux-x86_64-standard:5.0';
    const parent = { parent: this };
    const traefikBase = args.traefikBaseImage === undefined ? TRAEFIK_BASE_TAG : validateTraefikBaseImage(args.traefikBaseImage);

    new aws.s3.BucketNotification(`${name}-source`, { bucket: args.artifactsBucket, eventbridge: true }, parent);
    const sg = new aws.ec2.SecurityGroup(`${name}-builds`, {
      vpcId: args.vpcId, description: 'berth image builds: egress only',
      egress: [{ description: 'registries, S3, package mirrors', protocol: '-1', fromPort: 0, toPort: 0, cidrBlocks: ['0.0.0.0/0'] }],
    }, parent);
    const projects = {} as Record<ImageName, aws.codebuild.Project>;
    for (const image of IMAGES) {
      const id = `${name}-${image}`;
      const logGroup = new aws.cloudwatch.LogGroup(id, { name: `/${args.environment}/build/${image}`, retentionInDays: args.logRetentionDays ?? 90 }, parent);
      const role = new aws.iam.Role(id, { namePrefix: roleNamePrefix(id), assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: 'codebuild.amazonaws.com' }) }, parent);
      new aws.iam.RolePolicy(id, {
        role: role.id,
        policy: pulumi.all([args.region, args.accountId, args.artifactsBucket, args.repositoryArns[image], logGroup.arn, pulumi.all([...args.privateSubnetIds]), args.bucketKmsKeyArn])
          .apply(([region, account, bucket, repoArn, logArn, subnets, bucketKey]) => JSON.stringify(
            buildRolePolicy({ image, region, accountId: account, bucket, repositoryArn: repoArn, logGroupArn: logArn, subnetIds: subnets, bucketKmsKeyArn: bucketKey }),
          )),
      }, parent);
      projects[image] = new aws.codebuild.Project(id, {
        description: `berth ${image} image from ${DOCKERFILES[image]}`,
        serviceRole: role.arn,
        source: { type: 'S3', location: pulumi.interpolate`${args.artifactsBucket}/${SOURCE_KEY}`, buildspec: buildspec(image) },
        artifacts: { type: 'NO_ARTIFACTS' },
        environment: {
          type: 'LINUX_CONTAINER', computeType, image: buildImage, privilegedMode: true, // docker build needs the daemon
          environmentVariables: [
            { name: 'REPOSITORY_URI', value: args.repositoryUrls[image] },
            { name: 'ARTIFACTS_BUCKET', value: args.artifactsBucket },
            ...(image === 'traefik' ? [{ name: 'TRAEFIK_BASE', value: traefikBase }] : []),
          ],
        },
        vpcConfig: { vpcId: args.vpcId, subnets: [...args.privateSubnetIds], securityGroupIds: [sg.id] },
        logsConfig: { cloudwatchLogs: { groupName: logGroup.name } },
        buildTimeout: 60,
      }, parent);
    }

    const trigger = new aws.cloudwatch.EventRule(`${name}-source`, {
      description: 'build berth images when a new source zip is uploaded',
      eventPattern: pulumi.output(args.artifactsBucket).apply((bucket) => JSON.stringify({
        source: ['aws.s3'], 'detail-type': ['Object Created'], detail: { bucket: { name: [bucket] }, object: { key: [SOURCE_KEY] } },
      })),
    }, parent);
    const eventsRole = new aws.iam.Role(`${name}-events`, { namePrefix: roleNamePrefix(`${name}-events`), assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: 'events.amazonaws.com' }) }, parent);
    new aws.iam.RolePolicy(`${name}-events`, {
      role: eventsRole.id,
      policy: pulumi.all(IMAGES.map((i) => projects[i].arn)).apply((arns) => JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Sid: 'StartImageBuilds', Effect: 'Allow', Action: ['codebuild:StartBuild'], Resource: arns }],
      })),
    }, parent);
    for (const image of IMAGES) {
      new aws.cloudwatch.EventTarget(`${name}-${image}`, { rule: trigger.name, arn: projects[image].arn, roleArn: eventsRole.arn }, parent);
    }

    this.projectNames = { agent: projects.agent.name, traefik: projects.traefik.name };
    this.registerOutputs({ projectNames: this.projectNames });
  }
}

interface BuildRoleArgs {
  readonly image: ImageName;
  readonly region: string;
  readonly accountId: string;
  readonly bucket: string;
  readonly repositoryArn: string;
  readonly logGroupArn: string;
  readonly subnetIds: readonly string[];
  readonly bucketKmsKeyArn?: string | undefined;
}

/** What one image build may do: read the source, push to its own repository, log, run in the VPC. */
export function buildRolePolicy(a: BuildRoleArgs) {
  const statements: Array<Record<string, unknown>> = [
    { Sid: 'Logs', Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: [a.logGroupArn, `${a.logGroupArn}:*`] },
    { Sid: 'ReadSource', Effect: 'Allow', Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: `arn:aws:s3:::${a.bucket}/${SOURCE_KEY}` },
    { Sid: 'SourceBucket', Effect: 'Allow', Action: ['s3:GetBucketAcl', 's3:GetBucketLocation'], Resource: `arn:aws:s3:::${a.bucket}` },
    // GetAuthorizationToken has no resource-level permissions.
    { Sid: 'RegistryLogin', Effect: 'Allow', Action: ['ecr:GetAuthorizationToken'], Resource: '*' },
    {
      Sid: 'PushOwnImage', Effect: 'Allow',
      Action: ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:InitiateLayerUpload', 'ecr:UploadLayerPart', 'ecr:CompleteLayerUpload', 'ecr:PutImage'],
      Resource: a.repositoryArn,
    },
    // CodeBuild in a VPC creates its own ENIs; the Describe calls have no resource-level permissions.
    {
      Sid: 'VpcDescribe', Effect: 'Allow',
      Action: ['ec2:CreateNetworkInterface', 'ec2:DescribeDhcpOptions', 'ec2:DescribeNetworkInterfaces', 'ec2:DeleteNetworkInterface', 'ec2:DescribeSubnets', 'ec2:DescribeSecurityGroups', 'ec2:DescribeVpcs'],
      Resource: '*',
    },
    {
      Sid: 'VpcEniPermission', Effect: 'Allow', Action: ['ec2:CreateNetworkInterfacePermission'],
      Resource: `arn:aws:ec2:${a.region}:${a.accountId}:network-interface/*`,
      Condition: {
        StringEquals: { 'ec2:AuthorizedService': 'codebuild.amazonaws.com' },
        ArnEquals: { 'ec2:Subnet': a.subnetIds.map((s) => `arn:aws:ec2:${a.region}:${a.accountId}:subnet/${s}`) },
      },
    },
  ];
  if (a.image === 'agent') {
    statements.push({ Sid: 'WriteRelease', Effect: 'Allow', Action: ['s3:PutObject'], Resource: `arn:aws:s3:::${a.bucket}/${RELEASE_PREFIX}*` });
  }
  if (a.bucketKmsKeyArn) {
    const actions = a.image === 'agent' ? ['kms:Decrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'];
    statements.push({
      Sid: 'BucketKeyThroughS3', Effect: 'Allow', Action: actions, Resource: a.bucketKmsKeyArn,
      Condition: { StringEquals: { 'kms:ViaService': `s3.${a.region}.amazonaws.com` } },
    });
  }
  return { Version: '2012-10-17', Statement: statements };
}
