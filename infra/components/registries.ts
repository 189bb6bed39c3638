import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { tagKeys } from '../../lib/node-contract.js';

/** ECR lifecycle: untagged layers go after `untaggedDays`, and only the newest `keep` tagged images stay. */
export function imageLifecyclePolicy(keep: number, untaggedDays: number) {
  if (!Number.isInteger(keep) || keep < 1) throw new Error(`Registries: keep must be a whole number ≥ 1, not ${keep}`);
  if (!Number.isInteger(untaggedDays) || untaggedDays < 1) throw new Error(`Registries: untaggedDays must be a whole number ≥ 1, not ${untaggedDays}`);
  return {
    rules: [
      { rulePriority: 1, description: `expire untagged images after ${untaggedDays} days`, selection: { tagStatus: 'untagged', countType: 'sinceImagePushed', countUnit: 'days', countNumber: untaggedDays }, action: { type: 'expire' } },
      { rulePriority: 2, description: `keep the newest ${keep} images`, selection: { tagStatus: 'any', countType: 'imageCountMoreThan', countNumber: keep }, action: { type: 'expire' } },
    ],
  };
}

/** The images the build pipeline produces: berth's agent and Traefik. */
export const IMAGES = ['agent', 'traefik'] as const;
export type ImageName = (typeof IMAGES)[number];

export interface RegistriesArgs {
  /** First part of each repository name, `<namespace>/agent`: the environment, so two environments can share an account and region. */
  readonly namespace: string;
  /** Tagged images kept per repository (default 30); hosts pin a tag, so keep more than you roll back over. */
  readonly keep?: number;
  readonly untaggedDays?: number;
  readonly kmsKeyArn?: pulumi.Input<string>;
  readonly tags?: Readonly<Record<string, string>>;
}

/** ECR repositories `<namespace>/agent` and `<namespace>/traefik`: scanned on push, immutable tags, lifecycle-bounded. */
export class Registries extends pulumi.ComponentResource {
  readonly repositoryUrls: Readonly<Record<ImageName, pulumi.Output<string>>>;
  readonly repositoryArns: Readonly<Record<ImageName, pulumi.Output<string>>>;

  constructor(name: string, args: RegistriesArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:build:Registries', name, {}, opts);
    const policy = JSON.stringify(imageLifecyclePolicy(args.keep ?? 30, args.untaggedDays ?? 7));
    const urls = {} as Record<ImageName, pulumi.Output<string>>;
    const arns = {} as Record<ImageName, pulumi.Output<string>>;
    for (const image of IMAGES) {
      const repo = new aws.ecr.Repository(`${name}-${image}`, {
        name: `${args.namespace}/${image}`,
        imageTagMutability: 'IMMUTABLE',
        imageScanningConfiguration: { scanOnPush: true },
        encryptionConfigurations: [args.kmsKeyArn ? { encryptionType: 'KMS', kmsKey: args.kmsKeyArn } : { encryptionType: 'AES256' }],
        tags: { ...args.tags, [tagKeys().image]: image },
      }, { parent: this });
      new aws.ecr.LifecyclePolicy(`${name}-${image}`, { repository: repo.name, policy }, { parent: this });
      urls[image] = repo.repositoryUrl;
      arns[image] = repo.arn;
    }
    this.repositoryUrls = urls;
    this.repositoryArns = arns;
    this.registerOutputs({ repositoryUrls: this.repositoryUrls, repositoryArns: this.repositoryArns });
  }
}
