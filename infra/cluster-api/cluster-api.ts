import type { EC2Client } from '@aws-sdk/client-ec2';
import type { ECSClient } from '@aws-sdk/client-ecs';
import { checkTransition, type ClusterSpec } from './invariants.js';
import { notReady, type NotReady } from './readiness.js';

/** What the API needs from Pulumi; the production one wraps an Automation API LocalWorkspace stack per cluster. */
export interface ClusterWorkspace {
  read(cluster: string): Promise<ClusterSpec | undefined>;
  apply(spec: ClusterSpec): Promise<void>;
  destroy(cluster: string): Promise<void>;
}

export interface ClusterApiDeps {
  readonly workspace: ClusterWorkspace;
  readonly ec2: (region: string) => Pick<EC2Client, 'send'>;
  /** ECS of a region: readiness needs each node service's running task. */
  readonly ecs: (region: string) => Pick<ECSClient, 'send'>;
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

  /** Waits until berth's readiness tags and each node's running ECS task say the cluster runs (readiness.ts). */
  private async waitReady(spec: ClusterSpec): Promise<void> {
    const clients = { ec2: this.deps.ec2(spec.region), ecs: this.deps.ecs(spec.region) };
    const deadline = this.now() + this.timeoutMs;
    let pending: NotReady[] = [];
    const say = (p: NotReady) => `${p.kind} ${p.name}: ${p.reason}`;
    for (;;) {
      pending = await notReady(clients, spec);
      if (pending.length === 0) return;
      const failed = pending.find((p) => p.failed);
      if (failed) throw new Error(`cluster ${spec.name}: ${say(failed)}`);
      if (this.now() >= deadline) break;
      await this.sleep(this.pollMs);
    }
    throw new Error(`cluster ${spec.name} not ready after ${Math.round(this.timeoutMs / 1000)}s: ${pending.map(say).join('; ')}`);
  }
}
