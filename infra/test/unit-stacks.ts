import * as pulumi from '@pulumi/pulumi';
import type { StackFactory, UnitStack } from '../cluster-api/automation-workspace.js';
import { resolveAll } from './program-checks.js';
import { recordResources, settled, type Declared, type MockOptions } from './pulumi-mocks.js';

/**
 * The cluster API's unit stacks without the Pulumi CLI, for tests that drive the API into the real
 * unit program under setMocks: `up` runs the stack's inline program with its config, records the
 * outputs only when the run completes (as Pulumi does), and calls the test's hooks around it.
 */
export class InlineStacks implements StackFactory {
  private readonly config = new Map<string, pulumi.automation.ConfigMap>();
  private readonly outputs = new Map<string, pulumi.automation.OutputMap>();
  /** Runs before each `up`'s program (throw to fail the up before anything is declared). */
  beforeUp?: (stack: string) => void | Promise<void>;
  /** Runs after each `up`'s program settled, with what this run declared (throw to fail the up: the outputs stay the old ones). */
  afterUp?: (stack: string, declared: readonly Declared[]) => void | Promise<void>;
  ups = 0;

  constructor(private readonly declared: () => Declared[]) {}

  private stack(args: pulumi.automation.InlineProgramArgs): UnitStack {
    const name = args.stackName;
    return {
      name,
      setAllConfig: (c) => (this.config.set(name, { ...this.config.get(name), ...c }), Promise.resolve()),
      getAllConfig: () => Promise.resolve(this.config.get(name) ?? {}),
      outputs: () => Promise.resolve(this.outputs.get(name) ?? {}),
      up: async () => {
        this.ups++;
        await this.beforeUp?.(name);
        pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(this.config.get(name) ?? {}).map(([k, v]) => [k, v.value])));
        const from = this.declared().length;
        const out = await resolveAll((await args.program()) as Record<string, unknown>);
        await settled(this.declared());
        await this.afterUp?.(name, this.declared().slice(from));
        this.outputs.set(name, Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { value: v, secret: false }])));
        return {} as pulumi.automation.UpResult;
      },
      destroy: () => Promise.resolve({} as pulumi.automation.DestroyResult),
      workspace: { removeStack: () => Promise.resolve() },
    };
  }
  createOrSelectStack(args: pulumi.automation.InlineProgramArgs) {
    if (!this.config.has(args.stackName)) this.config.set(args.stackName, {});
    return Promise.resolve(this.stack(args));
  }
  selectStack(args: pulumi.automation.InlineProgramArgs) {
    if (!this.config.has(args.stackName)) return Promise.reject(Object.assign(new Error(`no stack named '${args.stackName}' found`), { name: 'StackNotFoundError' }));
    return Promise.resolve(this.stack(args));
  }
  listStacks() {
    return Promise.resolve([...this.config.keys()]);
  }
}

/** The regional stack's outputs the unit program reads, for region eu-west-1 (override any). */
export function regionalOutputs(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    privateSubnetIds: ['subnet-a', 'subnet-b', 'subnet-c'], privateSubnetAzs: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
    securityGroupId: 'sg-eu', artifactUri: 's3://berth-artifacts/berth/build-1.tar.gz', ebsKeyArn: 'arn:aws:kms:eu-west-1:1:key/ebs',
    bucketKeyArn: 'arn:aws:kms:eu-west-1:1:key/b', environment: 'prod', zoneId: 'Z1', traefikIp: '203.0.113.10',
    ...overrides,
  };
}

/** Mocks for the unit program of a cluster in eu-west-1: its regional stack and the provider functions it calls. */
export function unitProgramMocks(regional: Record<string, unknown> = regionalOutputs(), resource?: MockOptions['resource']): Declared[] {
  return recordResources({
    stacks: { 'acme/berth-regional/regional-eu-west-1': regional },
    calls: {
      'aws:index/getCallerIdentity:getCallerIdentity': () => ({ accountId: '111122223333', arn: 'arn', userId: 'u', id: '111122223333' }),
      'aws:ssm/getParameter:getParameter': (i) => ({ name: i['name'], value: 'ami-0ecs2023', type: 'String' }),
    },
    ...(resource ? { resource } : {}),
  });
}

/** A crash point inside a Pulumi apply, for the engine model below. */
export type ApplyCrash = 'before-import' | 'after-import';

/**
 * What the Pulumi engine and the AWS provider do with `aws:ebs/volume:Volume` resources, over the EC2
 * model, for tests that apply the unit program: per stack, a state of logical name → volume id.
 * A registration whose name is in the state is that volume; one with an `import` id is imported when
 * the volume exists and the declared inputs match it, else the up fails (pulumi/pulumi,
 * developer-docs/architecture/import.md: "If the provider reports any differences, the import ...
 * fails with an error (in the case of an update)"; the same name with another import id is a replace,
 * case 3, which this model refuses); one with neither is created (CreateVolume: a blank volume).
 * Resources in the state that the run no longer declares leave it; node volumes are retained on
 * delete (node.ts retainOnDelete, checked in node.test.ts), so no DeleteVolume.
 */
export class PulumiEbsVolumes {
  readonly state = new Map<string, string>();
  /** Volumes Pulumi created (CreateVolume), in order. */
  readonly created: string[] = [];
  /** Volumes Pulumi imported, in order. */
  readonly imported: string[] = [];
  /** Volumes that left the state (retained, not deleted). */
  readonly forgotten: string[] = [];
  /** Fails the next apply at this point (one-shot), as a killed `pulumi up` leaves it. */
  crashNext: ApplyCrash | undefined;
  private pending: Array<{ name: string; id: string; inputs: Record<string, unknown> }> = [];

  constructor(private readonly model: {
    hasVolume(id: string): boolean;
    volume(id: string): { az: string; size: number; type: string; iops?: number; throughput?: number; encrypted: boolean; kmsKeyId?: string; snapshotId: string };
    addVolume(p: { az: string; size: number; type?: 'gp3'; tags?: Record<string, string>; encrypted?: boolean; kmsKeyId?: string; iops?: number; throughput?: number }): string;
  }) {}

  /** The mocks' `resource` answer for volumes. */
  readonly resource = (a: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult | undefined => {
    if (a.type !== 'aws:ebs/volume:Volume') return undefined;
    const inputs = a.inputs as Record<string, unknown>;
    const held = this.state.get(a.name);
    if (held && a.id && a.id !== held) throw new Error(`${a.name}: import id ${a.id} differs from ${held} in the state: Pulumi would delete ${held} and import in its place`);
    let id = held ?? a.id;
    if (!id) {
      id = this.model.addVolume({
        az: String(inputs['availabilityZone']), size: Number(inputs['size']), type: inputs['type'] as 'gp3', tags: inputs['tags'] as Record<string, string>,
        encrypted: inputs['encrypted'] === true, ...(inputs['kmsKeyId'] ? { kmsKeyId: String(inputs['kmsKeyId']) } : {}),
      });
      this.created.push(id);
      this.state.set(a.name, id);
    } else if (!held) {
      this.pending.push({ name: a.name, id, inputs });
    }
    return { id, state: { ...inputs, arn: `arn:aws:ec2:::volume/${id}` } };
  };

  /** The rest of the apply, once the program ran: imports, then the state loses what the run no longer declares. */
  commit(declared: readonly Declared[]): void {
    const crash = this.crashNext;
    this.crashNext = undefined;
    const pending = this.pending;
    this.pending = [];
    if (crash === 'before-import' && pending.length > 0) throw new Error('pulumi up killed before its import step');
    for (const p of pending) {
      if (!this.model.hasVolume(p.id)) throw new Error(`importing ${p.name}: volume ${p.id} does not exist`);
      const wrong = importMismatch(p.inputs, this.model.volume(p.id));
      if (wrong.length > 0) throw new Error(`importing ${p.name}: inputs to import do not match the existing resource (${wrong.join(', ')})`);
      this.state.set(p.name, p.id);
      this.imported.push(p.id);
    }
    if (crash === 'after-import' && pending.length > 0) throw new Error('pulumi up killed after its import step');
    const names = new Set(declared.filter((d) => d.type === 'aws:ebs/volume:Volume').map((d) => d.name));
    for (const [name, id] of [...this.state]) {
      if (names.has(name)) continue;
      this.state.delete(name);
      this.forgotten.push(id);
    }
  }
}

/** Where a volume's declared inputs differ from the volume (the properties the Node component does not ignore, and its zone and key). */
export function importMismatch(inputs: Record<string, unknown>, v: { az: string; size: number; type: string; iops?: number; throughput?: number; encrypted: boolean; kmsKeyId?: string; snapshotId: string }): string[] {
  const wrong: string[] = [];
  const same = (what: string, declared: unknown, actual: unknown) => declared !== actual && wrong.push(`${what}: declared ${String(declared)}, is ${String(actual)}`);
  same('availabilityZone', inputs['availabilityZone'], v.az);
  same('size', inputs['size'], v.size);
  same('type', inputs['type'], v.type);
  same('iops', inputs['iops'], v.iops);
  same('throughput', inputs['throughput'], v.throughput);
  same('encrypted', inputs['encrypted'], v.encrypted);
  same('kmsKeyId', inputs['kmsKeyId'], v.kmsKeyId);
  same('snapshotId', inputs['snapshotId'], v.snapshotId || undefined);
  return wrong;
}
