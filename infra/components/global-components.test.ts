import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ofType, recordResources, settled, type Declared } from '../test/pulumi-mocks.js';

let declared: Declared[] = [];
beforeAll(() => {
  declared = recordResources();
});

interface Statement { Sid: string; Effect: string; Action: string | string[]; Resource: string | string[]; Condition?: unknown }
const statements = (d: Declared) => (JSON.parse(d.inputs['policy'] as string) as { Statement: Statement[] }).Statement;

describe('Buckets under setMocks', () => {
  it('declares two versioned, encrypted, public-blocked, TLS-only buckets', async () => {
    const { Buckets } = await import('./buckets.js');
    const b = new Buckets('env', { kmsKeyArn: 'arn:aws:kms:eu-west-1:111:key/k' });
    await new Promise<void>((r) => pulumi.all([b.environmentBucket, b.artifactsBucket]).apply(() => r()));
    await settled(declared);
    expect(ofType(declared, 'aws:s3/bucket:Bucket').map((x) => x.name).sort()).toEqual(['env-artifacts', 'env-environment']);
    const per = (type: string) => ofType(declared, type).filter((x) => x.name.startsWith('env-'));
    expect(per('aws:s3/bucketVersioning:BucketVersioning').map((v) => v.inputs['versioningConfiguration'])).toEqual([{ status: 'Enabled' }, { status: 'Enabled' }]);
    for (const block of per('aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock')) {
      expect(block.inputs).toMatchObject({ blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
    }
    expect(per('aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock')).toHaveLength(2);
    for (const sse of per('aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration')) {
      expect(sse.inputs['rules']).toEqual([{ applyServerSideEncryptionByDefault: { sseAlgorithm: 'aws:kms', kmsMasterKeyId: 'arn:aws:kms:eu-west-1:111:key/k' }, bucketKeyEnabled: true }]);
    }
    const rules = per('aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration').map((l) => (l.inputs['rules'] as Array<{ id: string; filter: { prefix?: string }; noncurrentVersionExpiration: { noncurrentDays: number } }>).map((r) => [r.id, r.filter.prefix ?? '', r.noncurrentVersionExpiration.noncurrentDays]));
    // The hosts' EC2 schedule is rewritten thousands of times in a zone replacement: its old versions go after a day.
    expect(rules).toContainEqual([['expire-old-versions', '', 90], ['expire-old-ec2-schedules', 'ec2-schedule/', 1]]);
    expect(rules).toContainEqual([['expire-old-versions', '', 90]]);
    const policies = per('aws:s3/bucketPolicy:BucketPolicy');
    expect(policies).toHaveLength(2);
    for (const p of policies) {
      const st = statements(p);
      expect(st.every((s) => s.Effect === 'Deny')).toBe(true);
      expect(st.find((s) => s.Sid === 'DenyInsecureTransport')!.Condition).toEqual({ Bool: { 'aws:SecureTransport': 'false' } });
      expect(st[0]!.Resource).toEqual([`arn:aws:mock:::${p.name}`, `arn:aws:mock:::${p.name}/*`]);
    }
  });
  it('refuses a nonsensical retention', async () => {
    const { Buckets } = await import('./buckets.js');
    expect(() => new Buckets('bad', { noncurrentVersionDays: 0 })).toThrow(/noncurrentVersionDays/);
  });
});

describe('Registries under setMocks', () => {
  it('declares agent and traefik repositories scanned on push with immutable tags and a lifecycle', async () => {
    const { Registries } = await import('./registries.js');
    const r = new Registries('img', { namespace: 'staging', keep: 20 });
    await new Promise<void>((res) => pulumi.all([r.repositoryArns.agent, r.repositoryArns.traefik]).apply(() => res()));
    await settled(declared);
    const repos = ofType(declared, 'aws:ecr/repository:Repository');
    expect(repos.map((x) => x.inputs['name']).sort()).toEqual(['staging/agent', 'staging/traefik']); // a second environment gets its own repositories
    for (const repo of repos) expect(repo.inputs).toMatchObject({ imageTagMutability: 'IMMUTABLE', imageScanningConfiguration: { scanOnPush: true } });
    const lifecycles = ofType(declared, 'aws:ecr/lifecyclePolicy:LifecyclePolicy');
    expect(lifecycles).toHaveLength(2);
    const rules = (JSON.parse(lifecycles[0]!.inputs['policy'] as string) as { rules: Array<{ selection: { tagStatus: string; countNumber: number } }> }).rules;
    expect(rules.map((x) => [x.selection.tagStatus, x.selection.countNumber])).toEqual([['untagged', 7], ['any', 20]]);
  });
  it('refuses keeping no images', async () => {
    const { imageLifecyclePolicy } = await import('./registries.js');
    expect(() => imageLifecyclePolicy(0, 7)).toThrow(/keep must be/);
  });
});

describe('build tags', () => {
  it('tag the agent release and the Traefik image of one source alike, whatever either project\'s build counter says', async () => {
    const { buildspec } = await import('./build-pipeline.js');
    const tagCommand = (image: 'agent' | 'traefik') => {
      const spec = parse(buildspec(image)) as { phases: { pre_build: { commands: string[] } } };
      return spec.phases.pre_build.commands.find((c) => c.includes('SOURCE_TAG='))!;
    };
    const dir = mkdtempSync(join(tmpdir(), 'berth-tag-'));
    try {
      const a = join(dir, 'a');
      mkdirSync(join(a, 'sub'), { recursive: true });
      writeFileSync(join(a, 'package.json'), '{}');
      writeFileSync(join(a, 'sub', 'x.ts'), 'export {};');
      const b = join(dir, 'b');
      cpSync(a, b, { recursive: true });
      // Each project runs its own pre_build with its own build number.
      const tag = (cwd: string, image: 'agent' | 'traefik', n: string) =>
        execFileSync('bash', ['-c', `${tagCommand(image)} >/dev/null && printf %s "$SOURCE_TAG"`], { cwd, encoding: 'utf8', env: { ...process.env, CODEBUILD_BUILD_NUMBER: n } });
      const agent = tag(a, 'agent', '17');
      expect(agent).toMatch(/^src-[0-9a-f]{16}$/);
      expect(tag(b, 'traefik', '4')).toBe(agent);
      writeFileSync(join(b, 'sub', 'x.ts'), 'export const changed = 1;');
      expect(tag(b, 'traefik', '4')).not.toBe(agent);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Traefik base image', () => {
  it('is pinned by digest in the build: a configured digest as given, a bare tag resolved to its digest before docker build', async () => {
    const { buildspec, TRAEFIK_BASE_TAG, validateTraefikBaseImage } = await import('./build-pipeline.js');
    const spec = parse(buildspec('traefik')) as { phases: { pre_build: { commands: string[] }; build: { commands: string[] } } };
    expect(spec.phases.build.commands[0]).toContain('--build-arg TRAEFIK_IMAGE="$TRAEFIK_BASE"');
    const pin = spec.phases.pre_build.commands.find((c) => c.includes('TRAEFIK_BASE'))!;
    const dir = mkdtempSync(join(tmpdir(), 'berth-pin-'));
    try {
      // No registry here: a docker stand-in answers inspect with the digest the registry would give.
      const digest = `sha256:${'ab'.repeat(32)}`;
      writeFileSync(join(dir, 'docker'), `#!/bin/bash\nif [[ "$1" == inspect ]]; then echo "traefik@${digest}"; fi\n`, { mode: 0o755 });
      const run = (base: string) => execFileSync('bash', ['-c', `${pin} >/dev/null && printf %s "$TRAEFIK_BASE"`], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}`, TRAEFIK_BASE: base } });
      expect(run(TRAEFIK_BASE_TAG)).toBe(`traefik@${digest}`);
      const pinned = `${TRAEFIK_BASE_TAG}@sha256:${'cd'.repeat(32)}`;
      expect(run(pinned)).toBe(pinned);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(TRAEFIK_BASE_TAG).toMatch(/^traefik:v3\.\d+\.\d+$/);
    expect(() => validateTraefikBaseImage(TRAEFIK_BASE_TAG)).toThrow(/pinned by digest/);
    expect(() => validateTraefikBaseImage(`traefik:v2.11.0@sha256:${'a'.repeat(64)}`)).toThrow(/v3/);
    // Dockerfile.traefik's own default names the same release.
    expect(readFileSync(join(import.meta.dirname, '../../Dockerfile.traefik'), 'utf8')).toContain(`ARG TRAEFIK_IMAGE=${TRAEFIK_BASE_TAG}\n`);
  });
});

describe('BuildPipeline under setMocks', () => {
  it('builds both Dockerfiles in private subnets, triggered by a new source zip, with least-privilege roles', async () => {
    const { BuildPipeline } = await import('./build-pipeline.js');
    const p = new BuildPipeline('build', {
      environment: 'staging', region: 'eu-west-1', accountId: '111122223333', vpcId: 'vpc-g', privateSubnetIds: ['subnet-p0', 'subnet-p1'], artifactsBucket: 'berth-artifacts',
      repositoryUrls: { agent: '111.dkr.ecr/berth/agent', traefik: '111.dkr.ecr/berth/traefik' },
      repositoryArns: { agent: 'arn:aws:ecr:eu-west-1:111:repository/berth/agent', traefik: 'arn:aws:ecr:eu-west-1:111:repository/berth/traefik' },
    });
    await new Promise<void>((r) => pulumi.all([p.projectNames.agent, p.projectNames.traefik]).apply(() => r()));
    await settled(declared);
    const projects = ofType(declared, 'aws:codebuild/project:Project');
    expect(projects).toHaveLength(2);
    for (const proj of projects) {
      expect(proj.inputs['vpcConfig']).toMatchObject({ vpcId: 'vpc-g', subnets: ['subnet-p0', 'subnet-p1'] });
      const spec = parse((proj.inputs['source'] as { buildspec: string }).buildspec) as { phases: { build: { commands: string[] } } };
      const image = proj.name.replace('build-', '');
      expect(spec.phases.build.commands[0]).toContain(`-f Dockerfile.${image} `);
      expect(spec.phases.build.commands[1]).toBe('docker push "$REPOSITORY_URI:$SOURCE_TAG"');
      expect(JSON.stringify(spec)).not.toContain('CODEBUILD_BUILD_NUMBER');
      // The agent build also makes and uploads the release bootstrap.sh installs (scripts/release.mjs: it brings its own Node.js).
      const release = spec.phases.build.commands.filter((c) => c.includes('release'));
      if (image === 'agent') {
        expect(release).toEqual(['npm run release -- --arch x64', 'aws s3 cp --only-show-errors dist/release/berth-*-linux-x64.tar.gz "s3://$ARTIFACTS_BUCKET/berth/$SOURCE_TAG.tar.gz"']);
      } else expect(release).toEqual([]);
    }
    const rule = ofType(declared, 'aws:cloudwatch/eventRule:EventRule').find((r) => r.name === 'build-source')!;
    expect(JSON.parse(rule.inputs['eventPattern'] as string)).toMatchObject({ detail: { bucket: { name: ['berth-artifacts'] }, object: { key: ['source/berth.zip'] } } });
    expect(ofType(declared, 'aws:cloudwatch/eventTarget:EventTarget').filter((t) => t.name.startsWith('build-'))).toHaveLength(2);
    expect(ofType(declared, 'aws:ec2/securityGroup:SecurityGroup').find((s) => s.name === 'build-builds')!.inputs['ingress']).toBeUndefined();

    const agent = statements(ofType(declared, 'aws:iam/rolePolicy:RolePolicy').find((r) => r.name === 'build-agent')!);
    const traefik = statements(ofType(declared, 'aws:iam/rolePolicy:RolePolicy').find((r) => r.name === 'build-traefik')!);
    const describeOnly = /^(ec2:Describe|ec2:(Create|Delete)NetworkInterface$|ecr:GetAuthorizationToken$)/;
    for (const st of [...agent, ...traefik]) {
      const actions = [st.Action].flat();
      expect(actions.every((a) => !a.includes('*')), st.Sid).toBe(true);
      if ([st.Resource].flat().includes('*')) expect(actions.every((a) => describeOnly.test(a)), st.Sid).toBe(true);
    }
    expect(agent.find((s) => s.Sid === 'PushOwnImage')!.Resource).toBe('arn:aws:ecr:eu-west-1:111:repository/berth/agent');
    expect(traefik.find((s) => s.Sid === 'PushOwnImage')!.Resource).toBe('arn:aws:ecr:eu-west-1:111:repository/berth/traefik');
    expect(traefik.some((s) => s.Sid === 'WriteRelease')).toBe(false);
    expect(agent.find((s) => s.Sid === 'WriteRelease')!.Resource).toBe('arn:aws:s3:::berth-artifacts/berth/*');
    const events = statements(ofType(declared, 'aws:iam/rolePolicy:RolePolicy').find((r) => r.name === 'build-events')!);
    expect(events).toEqual([{ Sid: 'StartImageBuilds', Effect: 'Allow', Action: ['codebuild:StartBuild'], Resource: ['arn:aws:mock:::build-agent', 'arn:aws:mock:::build-traefik'] }]);
  });
});
