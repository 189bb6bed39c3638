import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { tagKeys } from '../../lib/node-contract.js';

export const KEY_PURPOSES = ['ebs', 'ssm', 'secrets', 'buckets'] as const;
export type KeyPurpose = (typeof KEY_PURPOSES)[number];

const DESCRIPTIONS: Readonly<Record<KeyPurpose, string>> = {
  ebs: 'berth node volumes (EBS)',
  ssm: 'berth SSM parameters and sessions',
  secrets: 'berth secrets (TLS private keys, ACME account key)',
  buckets: 'berth environment and artifacts buckets',
};

export interface KmsKeysArgs {
  /** Which keys to create; the regional set by default. */
  readonly purposes?: readonly KeyPurpose[];
  /** Days a deleted key can still be recovered (7-30, default 30). */
  readonly deletionWindowDays?: number;
  /** Aliases are `alias/<aliasPrefix>/<purpose>`: the environment, so two environments can share an account and region. */
  readonly aliasPrefix: pulumi.Input<string>;
  readonly tags?: Readonly<Record<string, string>>;
}

/** Customer managed keys, one per purpose, with yearly rotation and an alias `alias/<aliasPrefix>/<purpose>`. */
export class KmsKeys extends pulumi.ComponentResource {
  readonly keyArns: Readonly<Partial<Record<KeyPurpose, pulumi.Output<string>>>>;

  constructor(name: string, args: KmsKeysArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:security:KmsKeys', name, {}, opts);
    const purposes = args.purposes ?? ['ebs', 'ssm', 'secrets'];
    const window = args.deletionWindowDays ?? 30;
    if (!Number.isInteger(window) || window < 7 || window > 30) throw new Error(`KmsKeys: deletionWindowDays must be 7 to 30, not ${window}`);
    if (purposes.length === 0 || new Set(purposes).size !== purposes.length) throw new Error(`KmsKeys: purposes must be distinct and not empty (${purposes.join(', ')})`);
    const arns: Partial<Record<KeyPurpose, pulumi.Output<string>>> = {};
    for (const purpose of purposes) {
      const key = new aws.kms.Key(`${name}-${purpose}`, {
        description: DESCRIPTIONS[purpose], enableKeyRotation: true, deletionWindowInDays: window,
        tags: { ...args.tags, [tagKeys().key]: purpose },
      }, { parent: this, protect: true });
      new aws.kms.Alias(`${name}-${purpose}`, { name: pulumi.interpolate`alias/${args.aliasPrefix}/${purpose}`, targetKeyId: key.keyId }, { parent: this });
      arns[purpose] = key.arn;
    }
    this.keyArns = arns;
    this.registerOutputs({ keyArns: this.keyArns });
  }
}
