import * as pulumi from '@pulumi/pulumi';
import { unitProgram } from '../programs/unit/index.js';
import { configKey } from '../programs/shared.js';
import type { ClusterWorkspace, StackState, StepOptions } from './cluster-api.js';
import { assertName, type ClusterSpec } from './invariants.js';

type ConfigMap = pulumi.automation.ConfigMap;
type InlineProgramArgs = pulumi.automation.InlineProgramArgs;
type LocalWorkspaceOptions = pulumi.automation.LocalWorkspaceOptions;

/** The part of an Automation API stack the adapter uses (the real `Stack` satisfies it). */
export type UnitStack = Pick<pulumi.automation.Stack, 'name' | 'setAllConfig' | 'getAllConfig' | 'outputs' | 'up' | 'destroy'> & {
  readonly workspace: Pick<pulumi.automation.Workspace, 'removeStack'>;
};

/** How stacks are created and selected; `LocalWorkspace` in production, a recorder in tests. */
export interface StackFactory {
  createOrSelectStack(args: InlineProgramArgs, opts?: LocalWorkspaceOptions): Promise<UnitStack>;
  selectStack(args: InlineProgramArgs, opts?: LocalWorkspaceOptions): Promise<UnitStack>;
  /** Names of the project's stacks. */
  listStacks(projectName: string, opts?: LocalWorkspaceOptions): Promise<string[]>;
}

/** The production factory: LocalWorkspace, with the project's stacks listed by a workspace of that project. */
const localFactory: StackFactory = {
  createOrSelectStack: (args, opts) => pulumi.automation.LocalWorkspace.createOrSelectStack(args, opts),
  selectStack: (args, opts) => pulumi.automation.LocalWorkspace.selectStack(args, opts),
  async listStacks(projectName, opts) {
    const ws = await pulumi.automation.LocalWorkspace.create({ ...opts, projectSettings: { name: projectName, runtime: 'nodejs' } });
    return (await ws.listStacks()).map((s) => s.name);
  },
};

/** Deployment-wide settings of every unit stack; a cluster's own spec goes in `berth:cluster`. */
export interface UnitSettings {
  /** Designated regions (the same list as the regional stacks'). */
  readonly regions: readonly string[];
  /** Regional stack of a region, e.g. `acme/berth-regional/regional-{region}`; `{region}` is replaced. */
  readonly regionalStack: string;
  /** Route 53 zone name the nodes answer under. */
  readonly zone: string;
  readonly projectName?: string;
  readonly nodeImage?: string;
  readonly nodePort?: number;
  readonly nodeSizeGiB?: number;
  readonly instanceType?: string;
  readonly swapMiB?: number;
  /** Backend, secrets provider, environment of the LocalWorkspace (e.g. `PULUMI_BACKEND_URL` in `envVars`). */
  readonly workspaceOptions?: LocalWorkspaceOptions;
}

/** The stack a cluster lives in and the config it is applied with: what `apply` hands to the Automation API. */
export function unitStackArgs(spec: ClusterSpec, settings: UnitSettings): { stackName: string; projectName: string; config: ConfigMap } {
  assertName('cluster', spec.name);
  if (!settings.regionalStack.includes('{region}')) throw new Error(`regionalStack "${settings.regionalStack}" must contain {region}`);
  const config: ConfigMap = {
    'aws:region': { value: spec.region },
    [configKey('cluster')]: { value: JSON.stringify(spec) },
    [configKey('regions')]: { value: JSON.stringify(settings.regions) },
    [configKey('regionalStack')]: { value: settings.regionalStack.replaceAll('{region}', spec.region) },
    [configKey('zone')]: { value: settings.zone },
  };
  const optional: Array<[string, string | number | undefined]> = [
    ['nodeImage', settings.nodeImage], ['nodePort', settings.nodePort], ['nodeSizeGiB', settings.nodeSizeGiB],
    ['instanceType', settings.instanceType], ['swapMiB', settings.swapMiB],
  ];
  for (const [key, value] of optional) if (value !== undefined) config[configKey(key)] = { value: String(value) };
  // The cluster name is the stack name: a cluster exists once, whichever region it is in.
  return { stackName: spec.name, projectName: settings.projectName ?? 'berth-unit', config };
}

const isStackNotFound = (e: unknown) => e instanceof Error && e.name === 'StackNotFoundError';

/**
 * ClusterWorkspace over the Automation API: one stack per cluster, the unit program run inline.
 * The spec handed to a stack is its `berth:cluster` config; what is deployed is the `spec` output
 * the program exports, which Pulumi records only when a deployment completes, so after a failed
 * update `read` still says what really runs.
 */
export class AutomationWorkspace implements ClusterWorkspace {
  private readonly factory: StackFactory;

  constructor(private readonly settings: UnitSettings, factory?: StackFactory, private readonly program: () => unknown = unitProgram) {
    this.factory = factory ?? localFactory;
  }

  private get projectName(): string {
    return this.settings.projectName ?? 'berth-unit';
  }

  private inline(name: string): InlineProgramArgs {
    return { stackName: name, projectName: this.projectName, program: async () => this.program() as Record<string, unknown> };
  }

  private async select(cluster: string): Promise<UnitStack | undefined> {
    try {
      return await this.factory.selectStack(this.inline(cluster), this.settings.workspaceOptions);
    } catch (e) {
      if (isStackNotFound(e)) return undefined;
      throw e;
    }
  }

  async read(cluster: string): Promise<StackState | undefined> {
    const stack = await this.select(cluster);
    if (!stack) return undefined;
    const config = (await stack.getAllConfig())[configKey('cluster')];
    const outputs = await stack.outputs();
    const output = outputs['spec'];
    if (!config && !output) throw new Error(`stack ${cluster} has no ${configKey('cluster')} config; it was not made by the cluster API`);
    const parse = (v: unknown) => (typeof v === 'string' ? (JSON.parse(v) as ClusterSpec) : undefined);
    const zones = outputs['zones']?.value as unknown;
    return { deployed: parse(output?.value), desired: parse(config?.value), ...(Array.isArray(zones) ? { zones: zones as string[] } : {}) };
  }

  list(): Promise<string[]> {
    return this.factory.listStacks(this.projectName, this.settings.workspaceOptions);
  }

  async apply(spec: ClusterSpec, options: StepOptions = {}): Promise<void> {
    const { stackName, config } = unitStackArgs(spec, this.settings);
    const stack = await this.factory.createOrSelectStack(this.inline(stackName), this.settings.workspaceOptions);
    await stack.setAllConfig(config);
    await stack.up({
      message: `berth cluster ${spec.name}: ${spec.hosts.length} host(s), ${spec.nodes.length} node(s)`,
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    });
  }

  async destroy(cluster: string, options: StepOptions = {}): Promise<void> {
    const stack = await this.select(cluster);
    if (!stack) return;
    await stack.destroy({ message: `berth cluster ${cluster}: delete`, ...(options.onEvent ? { onEvent: options.onEvent } : {}) });
    await stack.workspace.removeStack(cluster);
  }
}
