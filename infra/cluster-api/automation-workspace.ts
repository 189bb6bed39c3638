import * as pulumi from '@pulumi/pulumi';
import { unitProgram } from '../programs/unit/index.js';
import type { ClusterWorkspace } from './cluster-api.js';
import { assertName, type ClusterSpec } from './invariants.js';

type Automation = typeof pulumi.automation;
type ConfigMap = pulumi.automation.ConfigMap;
type InlineProgramArgs = pulumi.automation.InlineProgramArgs;
type LocalWorkspaceOptions = pulumi.automation.LocalWorkspaceOptions;

/** The part of an Automation API stack the adapter uses (the real `Stack` satisfies it). */
export type UnitStack = Pick<pulumi.automation.Stack, 'name' | 'setAllConfig' | 'getAllConfig' | 'up' | 'destroy'> & {
  readonly workspace: Pick<pulumi.automation.Workspace, 'removeStack'>;
};

/** How stacks are created and selected; `LocalWorkspace` in production, a recorder in tests. */
export interface StackFactory {
  createOrSelectStack(args: InlineProgramArgs, opts?: LocalWorkspaceOptions): Promise<UnitStack>;
  selectStack(args: InlineProgramArgs, opts?: LocalWorkspaceOptions): Promise<UnitStack>;
}

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
    'berth:cluster': { value: JSON.stringify(spec) },
    'berth:regions': { value: JSON.stringify(settings.regions) },
    'berth:regionalStack': { value: settings.regionalStack.replaceAll('{region}', spec.region) },
    'berth:zone': { value: settings.zone },
  };
  const optional: Array<[string, string | number | undefined]> = [
    ['nodeImage', settings.nodeImage], ['nodePort', settings.nodePort], ['nodeSizeGiB', settings.nodeSizeGiB],
    ['instanceType', settings.instanceType], ['swapMiB', settings.swapMiB],
  ];
  for (const [key, value] of optional) if (value !== undefined) config[`berth:${key}`] = { value: String(value) };
  // The cluster name is the stack name: a cluster exists once, whichever region it is in.
  return { stackName: spec.name, projectName: settings.projectName ?? 'berth-unit', config };
}

const isStackNotFound = (e: unknown) => e instanceof Error && e.name === 'StackNotFoundError';

/**
 * ClusterWorkspace over the Automation API: one stack per cluster, the unit program run
 * inline, its spec kept in the stack's `berth:cluster` config (what `read` returns).
 */
export class AutomationWorkspace implements ClusterWorkspace {
  private readonly factory: StackFactory;

  constructor(private readonly settings: UnitSettings, factory?: StackFactory, private readonly program: () => unknown = unitProgram) {
    this.factory = factory ?? (pulumi.automation.LocalWorkspace as Pick<Automation['LocalWorkspace'], keyof StackFactory>);
  }

  private inline(name: string): InlineProgramArgs {
    return { stackName: name, projectName: this.settings.projectName ?? 'berth-unit', program: async () => this.program() as Record<string, unknown> };
  }

  async read(cluster: string): Promise<ClusterSpec | undefined> {
    let stack: UnitStack;
    try {
      stack = await this.factory.selectStack(this.inline(cluster), this.settings.workspaceOptions);
    } catch (e) {
      if (isStackNotFound(e)) return undefined;
      throw e;
    }
    const spec = (await stack.getAllConfig())['berth:cluster'];
    if (!spec) throw new Error(`stack ${cluster} has no berth:cluster config; it was not made by the cluster API`);
    return JSON.parse(spec.value) as ClusterSpec;
  }

  async apply(spec: ClusterSpec): Promise<void> {
    const { stackName, config } = unitStackArgs(spec, this.settings);
    const stack = await this.factory.createOrSelectStack(this.inline(stackName), this.settings.workspaceOptions);
    await stack.setAllConfig(config);
    await stack.up({ message: `berth cluster ${spec.name}: ${spec.hosts.length} host(s), ${spec.nodes.length} node(s)` });
  }

  async destroy(cluster: string): Promise<void> {
    let stack: UnitStack;
    try {
      stack = await this.factory.selectStack(this.inline(cluster), this.settings.workspaceOptions);
    } catch (e) {
      if (isStackNotFound(e)) return;
      throw e;
    }
    // Node volumes are protected: a destroy stops there with Pulumi's error, leaving the stack (and the data) in place.
    await stack.destroy({ message: `berth cluster ${cluster}: delete` });
    await stack.workspace.removeStack(cluster);
  }
}
