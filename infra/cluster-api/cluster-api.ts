import { DescribeInstancesCommand, DescribeVolumesCommand, type EC2Client } from '@aws-sdk/client-ec2';
import { nodeVolumeName, READY, tagKeys, VOLUME_STATE } from '../../lib/node-contract.js';
import { checkTransition, type ClusterSpec } from './invariants.js';

const keys = tagKeys();

/** What the API needs from Pulumi; the production one wraps an Automation API LocalWorkspace stack per cluster. */
export interface ClusterWorkspace {
  read(cluster: string): Promise<ClusterSpec | undefined>;
  apply(spec: ClusterSpec): Promise<void>;
  destroy(cluster: string): Promise<void>;
}

export interface ClusterApiDeps {
  readonly workspace: ClusterWorkspace;
  readonly ec2: (region: string) => Pick<EC2Client, 'send'>;
  readonly regions: readonly string[];
  readonly readyTimeoutMs?: number;
  readonly pollMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

export class ClusterApi {
  private readonly timeoutMs: number;
  private readonly pollMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(private readonly deps: ClusterApiDeps) {
    this.timeoutMs = deps.readyTimeoutMs ?? 15 * 60_000;
    this.pollMs = deps.pollMs ?? 10_000;
    this.sleep = deps.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.now = deps.now ?? Date.now;
  }

  async create(spec: ClusterSpec): Promise<void> {
    const current = await this.deps.workspace.read(spec.name);
    if (current) throw new Error(`cluster ${spec.name} already exists; use extend or shrink`);
    await this.change(undefined, spec);
  }

  /** Extend or shrink: the new spec replaces the old one once the invariants hold. */
  async update(spec: ClusterSpec): Promise<void> {
    const current = await this.deps.workspace.read(spec.name);
    if (!current) throw new Error(`cluster ${spec.name} does not exist`);
    await this.change(current, spec);
  }

  async delete(name: string): Promise<void> {
    const current = await this.deps.workspace.read(name);
    if (!current) return;
    // Nodes go first (with their volumes' final snapshot via DLM), hosts after: delete is a destroy of the whole stack.
    await this.deps.workspace.destroy(name);
  }

  private async change(current: ClusterSpec | undefined, next: ClusterSpec): Promise<void> {
    checkTransition(current, next, this.deps.regions);
    await this.deps.workspace.apply(next);
    await this.waitReady(next);
  }

  /** Waits for berth's readiness tags (docs/design.md §6): host berth:ready=true, node volume berth:state=mounted. */
  private async waitReady(spec: ClusterSpec): Promise<void> {
    const ec2 = this.deps.ec2(spec.region);
    const deadline = this.now() + this.timeoutMs;
    let pending: string[] = [];
    for (;;) {
      pending = await this.notReady(ec2, spec);
      if (pending.length === 0) return;
      const failed = pending.find((p) => p.includes(VOLUME_STATE.errorPrefix));
      if (failed) throw new Error(`cluster ${spec.name}: ${failed}`);
      if (this.now() >= deadline) break;
      await this.sleep(this.pollMs);
    }
    throw new Error(`cluster ${spec.name} not ready after ${Math.round(this.timeoutMs / 1000)}s: ${pending.join('; ')}`);
  }

  private async notReady(ec2: Pick<EC2Client, 'send'>, spec: ClusterSpec): Promise<string[]> {
    const pending: string[] = [];
    const inst = await ec2.send(new DescribeInstancesCommand({
      Filters: [{ Name: `tag:${keys.cluster}`, Values: [spec.name] }, { Name: 'instance-state-name', Values: ['running'] }],
    }));
    const instances = (inst.Reservations ?? []).flatMap((r) => r.Instances ?? []);
    for (const host of spec.hosts) {
      const i = instances.find((x) => x.Tags?.some((t) => t.Key === keys.host && t.Value === host));
      const ready = i?.Tags?.some((t) => t.Key === keys.ready && t.Value === READY) === true;
      if (!ready) pending.push(`host ${host} has no running instance tagged ${keys.ready}=${READY}`);
    }
    const vols = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: `tag:${keys.cluster}`, Values: [spec.name] }] }));
    for (const node of spec.nodes) {
      const v = (vols.Volumes ?? []).find((x) => x.Tags?.some((t) => t.Key === keys.volume && t.Value === nodeVolumeName(spec.name, node.name)));
      const state = v?.Tags?.find((t) => t.Key === keys.state)?.Value;
      if (state !== VOLUME_STATE.mounted) pending.push(`node ${node.name} volume state ${state ?? 'unknown'}`);
    }
    return pending;
  }
}
