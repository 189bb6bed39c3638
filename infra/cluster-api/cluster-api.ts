import type { EC2Client } from '@aws-sdk/client-ec2';
import type { ECSClient } from '@aws-sdk/client-ecs';
import type { automation } from '@pulumi/pulumi';
import { checkAttachmentCapacity } from './attachment-capacity.js';
import { mayPublishLabel } from '../../lib/node-contract.js';
import { checkPublishedLabels, checkTransition, ClusterInvariantError, publishedLabels, withNodes, withoutNodes, type ClusterSpec, type NodeSpec } from './invariants.js';
import { notReady, type NotReady } from './readiness.js';
import { fromEngineEvent, type Operation, type ProgressEvent, type ProgressSink } from './progress.js';
import { classifyFailure, ClusterOperationError, DEFAULT_RETRY, delayBefore, type RetryPolicy } from './retry.js';

export interface StepOptions {
  /** Pulumi's engine events of the step, as they happen. */
  readonly onEvent?: (event: automation.EngineEvent) => void;
}

/** A cluster's stack as the workspace knows it. */
export interface StackState {
  /** The spec of the last completed deployment (the stack's outputs); undefined before the first one completed. */
  readonly deployed: ClusterSpec | undefined;
  /** The spec last handed to the stack (its config); differs from `deployed` after a failed update. */
  readonly desired: ClusterSpec | undefined;
}

/** What the API needs from Pulumi; the production one wraps an Automation API LocalWorkspace stack per cluster. */
export interface ClusterWorkspace {
  /** Undefined when the cluster has no stack. */
  read(cluster: string): Promise<StackState | undefined>;
  /** Names of the clusters that have a stack. */
  list(): Promise<string[]>;
  apply(spec: ClusterSpec, options?: StepOptions): Promise<void>;
  destroy(cluster: string, options?: StepOptions): Promise<void>;
}

export interface ClusterApiDeps {
  readonly workspace: ClusterWorkspace;
  readonly ec2: (region: string) => Pick<EC2Client, 'send'>;
  /** ECS of a region: readiness needs each node service's running task. */
  readonly ecs: (region: string) => Pick<ECSClient, 'send'>;
  /** The deployment's environment (`berth:environment`, the regional stacks' `environment` output). */
  readonly environment: string;
  readonly regions: readonly string[];
  readonly readyTimeoutMs?: number;
  readonly pollMs?: number;
  readonly retry?: RetryPolicy;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

export interface OperationOptions {
  /** Called with each progress event as it happens; a throwing sink does not stop the operation. */
  readonly onProgress?: ProgressSink;
}

export interface OperationResult {
  readonly cluster: string;
  readonly operation: Operation;
  /** What is deployed once the operation has finished; undefined after a delete. */
  readonly deployed: ClusterSpec | undefined;
  /** Pulumi steps run, retries included. */
  readonly attempts: number;
}

export interface ClusterStatus {
  readonly name: string;
  readonly deployed: ClusterSpec | undefined;
  /** Present when the last change did not complete: what it asked for. */
  readonly pendingChange: ClusterSpec | undefined;
  readonly ready: boolean;
  /** One sentence per host or node that is not ready. */
  readonly notReady: readonly string[];
}

interface Context {
  readonly cluster: string;
  readonly operation: Operation;
  emit(event: Omit<ProgressEvent, 'cluster' | 'operation' | 'at'>): void;
}

/**
 * What went wrong, in a line: Pulumi's CommandError carries the CLI's whole output
 * (`code: 255\n stdout: …\n stderr: error: 1 error occurred:\n\t* creating …: Cause`);
 * the cause lines are in stderr, under the "N errors occurred" wrapper.
 */
export function summary(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const stderr = text.includes('stderr:') ? text.slice(text.lastIndexOf('stderr:') + 'stderr:'.length) : text;
  const lines = stderr
    .split('\n')
    .map((l) => l.trim().replace(/^error:\s*/i, '').replace(/^\*\s*/, ''))
    .filter((l) => l !== '' && !/^\d+ errors? occurred:?$/i.test(l));
  const line = lines.slice(0, 3).join('; ') || 'unknown error';
  return line.length > 400 ? `${line.slice(0, 400)}…` : line;
}

const same = (a: ClusterSpec | undefined, b: ClusterSpec | undefined) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Creates and changes clusters of nodes for the platform's backend: per-cluster and per-node
 * operations, each checked against the invariants before anything is applied, run with
 * bounded retries, reported as a stream of progress events, and finished only once berth
 * reports every host and node ready. One operation per cluster at a time in this process;
 * Pulumi's stack lock covers other processes (its ConcurrentUpdateError is retried).
 */
export class ClusterApi {
  private readonly timeoutMs: number;
  private readonly pollMs: number;
  private readonly retry: RetryPolicy;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;
  private readonly busy = new Map<string, Operation>();
  /** The spec each running create or change of this process is applying, by cluster. */
  private readonly changing = new Map<string, ClusterSpec>();

  constructor(private readonly deps: ClusterApiDeps) {
    this.timeoutMs = deps.readyTimeoutMs ?? 15 * 60_000;
    this.pollMs = deps.pollMs ?? 10_000;
    this.retry = deps.retry ?? DEFAULT_RETRY;
    this.sleep = deps.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.now = deps.now ?? Date.now;
  }

  /** A new cluster. A stack whose first deployment never completed is applied again with this spec. */
  create(spec: ClusterSpec, options: OperationOptions = {}): Promise<OperationResult> {
    return this.run(spec.name, 'create', options, async (ctx) => {
      const state = await this.deps.workspace.read(spec.name);
      if (state?.deployed) throw new ClusterInvariantError(`cluster ${spec.name} already exists; add or remove nodes instead`);
      return this.change(ctx, undefined, spec);
    });
  }

  /** Replaces the cluster's spec with another one the invariants allow from what is deployed. */
  update(spec: ClusterSpec, options: OperationOptions = {}): Promise<OperationResult> {
    return this.run(spec.name, 'update', options, async (ctx) => this.change(ctx, await this.deployed(spec.name), spec));
  }

  /** Adds nodes; a node's host joins the cluster when it is not in it yet. */
  addNodes(cluster: string, nodes: readonly NodeSpec[], options: OperationOptions = {}): Promise<OperationResult> {
    return this.run(cluster, 'add-nodes', options, async (ctx) => {
      const current = await this.deployed(cluster);
      return this.change(ctx, current, withNodes(current, nodes));
    });
  }

  /** Removes nodes (their volumes are kept, see docs/deploy.md); a host left without nodes goes with them. */
  removeNodes(cluster: string, names: readonly string[], options: OperationOptions = {}): Promise<OperationResult> {
    return this.run(cluster, 'remove-nodes', options, async (ctx) => {
      const current = await this.deployed(cluster);
      return this.change(ctx, current, withoutNodes(current, names));
    });
  }

  /** Deletes the whole cluster, nodes before hosts; deleting a cluster that has no stack succeeds. */
  delete(cluster: string, options: OperationOptions = {}): Promise<OperationResult> {
    return this.run(cluster, 'delete', options, async (ctx) => {
      const state = await this.deps.workspace.read(cluster);
      if (!state) {
        ctx.emit({ phase: 'validated', message: `cluster ${cluster} has no stack; nothing to delete` });
        return { deployed: undefined, attempts: 0 };
      }
      const current = state.deployed ?? state.desired;
      if (current) checkTransition(current, undefined, this.deps.regions);
      ctx.emit({ phase: 'validated', message: `deleting cluster ${cluster}: ${current?.nodes.length ?? 0} node(s), then ${current?.hosts.length ?? 0} host(s)` });
      const attempts = await this.step(ctx, (onEvent) => this.deps.workspace.destroy(cluster, { onEvent }));
      if (await this.deps.workspace.read(cluster)) throw new Error(`cluster ${cluster}: the stack is still there after its destroy`);
      return { deployed: undefined, attempts };
    });
  }

  list(): Promise<string[]> {
    return this.deps.workspace.list();
  }

  /** What is deployed and whether berth reports it ready; undefined when the cluster has no stack. */
  async status(cluster: string): Promise<ClusterStatus | undefined> {
    const state = await this.deps.workspace.read(cluster);
    if (!state) return undefined;
    const { deployed, desired } = state;
    const notReady = deployed ? (await this.notReady(deployed)).map(sayNotReady) : ['no deployment has completed yet'];
    return { name: cluster, deployed, pendingChange: same(deployed, desired) ? undefined : desired, ready: notReady.length === 0, notReady };
  }

  private async deployed(cluster: string): Promise<ClusterSpec> {
    const state = await this.deps.workspace.read(cluster);
    if (!state?.deployed) throw new ClusterInvariantError(`cluster ${cluster} does not exist`);
    return state.deployed;
  }

  private async run(
    cluster: string,
    operation: Operation,
    options: OperationOptions,
    body: (ctx: Context) => Promise<{ deployed: ClusterSpec | undefined; attempts: number }>,
  ): Promise<OperationResult> {
    const sink = options.onProgress;
    const ctx: Context = {
      cluster,
      operation,
      emit: (e) => {
        try {
          sink?.({ cluster, operation, at: this.now(), ...e });
        } catch {
          // A UI that fails to show progress must not fail the change.
        }
      },
    };
    const running = this.busy.get(cluster);
    if (running) {
      throw new ClusterOperationError(cluster, operation, 0, 'concurrent-update', undefined, `cluster ${cluster} is busy with ${running}; try again when it has finished`);
    }
    this.busy.set(cluster, operation);
    try {
      const { deployed, attempts } = await body(ctx);
      ctx.emit({ phase: 'succeeded', message: `${operation} of cluster ${cluster} done` });
      return { cluster, operation, deployed, attempts };
    } catch (err) {
      const failure =
        err instanceof ClusterOperationError
          ? err
          : err instanceof ClusterInvariantError
            ? new ClusterOperationError(cluster, operation, 0, 'invariant', err, err.message)
            : new ClusterOperationError(cluster, operation, 0, 'permanent', err, `${operation} of cluster ${cluster} failed: ${summary(err)}`);
      ctx.emit({ phase: 'failed', message: failure.message });
      throw failure;
    } finally {
      this.busy.delete(cluster);
    }
  }

  private async change(ctx: Context, current: ClusterSpec | undefined, next: ClusterSpec): Promise<{ deployed: ClusterSpec; attempts: number }> {
    checkTransition(current, next, this.deps.regions);
    // Names are checked across the environment's clusters before anything is applied: first
    // against the changes this process is running (synchronously, so of two colliding changes
    // the later one is refused), then against every other stack's deployed and desired spec.
    checkPublishedLabels(current, next, [...this.changing.values()]);
    this.changing.set(next.name, next);
    try {
      checkPublishedLabels(current, next, await this.otherSpecs(next.name, current, next));
      // Attachment limits (docs/design.md §6): no host gets more nodes than its type can attach.
      const capacity = await checkAttachmentCapacity(this.deps.ec2(next.region), next);
      const slots = capacity.checked ? `, up to ${capacity.slots} node(s) per ${capacity.limit.instanceType} host` : ` (attachment limit not checked: ${capacity.why})`;
      ctx.emit({ phase: 'validated', message: `cluster ${next.name}: ${next.hosts.length} host(s), ${next.nodes.length} node(s)${slots}` });
      const attempts = await this.step(ctx, (onEvent) => this.deps.workspace.apply(next, { onEvent }));
      await this.waitReady(ctx, next, attempts);
      const deployed = (await this.deps.workspace.read(next.name))?.deployed;
      if (!same(deployed, next)) throw new Error(`cluster ${next.name}: the stack reports another spec than the one just deployed`);
      return { deployed: next, attempts };
    } finally {
      this.changing.delete(next.name);
    }
  }


  /**
   * The specs of the environment's other clusters that could publish a label `next` adds: each
   * such stack's deployed spec and, after a failed change, the one it was asked for (applied
   * again, it would publish those). A change that adds no label (removing nodes, an image) reads
   * nothing; one that does lists the stacks and reads only those whose cluster name could give
   * one of its new labels (`mayPublishLabel`), so the cost does not grow with the fleet.
   */
  private async otherSpecs(cluster: string, current: ClusterSpec | undefined, next: ClusterSpec): Promise<ClusterSpec[]> {
    const held = new Set(current ? publishedLabels(current).map((l) => l.label) : []);
    const fresh = publishedLabels(next).filter((l) => !held.has(l.label));
    if (fresh.length === 0) return [];
    const specs: ClusterSpec[] = [];
    for (const name of await this.deps.workspace.list()) {
      if (name === cluster || !fresh.some((l) => mayPublishLabel(name, l.label))) continue;
      const state = await this.deps.workspace.read(name);
      if (state?.deployed) specs.push(state.deployed);
      if (state?.desired && !same(state.desired, state.deployed)) specs.push(state.desired);
    }
    return specs;
  }

  /** Runs one Pulumi step, again after a retryable failure, within the retry policy. */
  private async step(ctx: Context, run: (onEvent: (e: automation.EngineEvent) => void) => Promise<void>): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      ctx.emit({ phase: 'applying', attempt, message: attempt === 1 ? 'applying the change' : `applying the change, attempt ${attempt}` });
      try {
        await run((e) => {
          const p = fromEngineEvent(e);
          if (p) ctx.emit({ ...p, attempt });
        });
        return attempt;
      } catch (err) {
        const kind = classifyFailure(err);
        const why = summary(err);
        if (kind === 'permanent' || attempt >= this.retry.attempts) {
          const tail = kind === 'permanent' ? '' : ` (${kind}, gave up after ${attempt} attempt(s))`;
          throw new ClusterOperationError(ctx.cluster, ctx.operation, attempt, kind, err, `${ctx.operation} of cluster ${ctx.cluster} failed${tail}: ${why}`);
        }
        const delay = delayBefore(attempt + 1, this.retry);
        ctx.emit({ phase: 'retrying', attempt, message: `attempt ${attempt} failed (${kind}: ${why}); trying again in ${Math.round(delay / 1000)} s` });
        await this.sleep(delay);
      }
    }
  }

  /** Waits until berth's readiness tags and each node's running ECS task say the cluster runs (readiness.ts). */
  private async waitReady(ctx: Context, spec: ClusterSpec, attempts: number): Promise<void> {
    const deadline = this.now() + this.timeoutMs;
    let last = '';
    for (;;) {
      const items = await this.notReady(spec);
      const pending = items.map(sayNotReady);
      if (pending.length === 0) {
        ctx.emit({ phase: 'ready', message: `cluster ${spec.name} is ready` });
        return;
      }
      const failed = items.find((p) => p.failed);
      if (failed) throw new ClusterOperationError(spec.name, ctx.operation, attempts, 'not-ready', undefined, `cluster ${spec.name}: ${sayNotReady(failed)}`);
      if (pending.join('; ') !== last) {
        last = pending.join('; ');
        ctx.emit({ phase: 'waiting', message: `waiting for ${pending.length} item(s) to be ready`, pending });
      }
      if (this.now() >= deadline) {
        throw new ClusterOperationError(spec.name, ctx.operation, attempts, 'not-ready', undefined, `cluster ${spec.name} not ready after ${Math.round(this.timeoutMs / 1000)}s: ${pending.join('; ')}`);
      }
      await this.sleep(this.pollMs);
    }
  }

  private notReady(spec: ClusterSpec): Promise<NotReady[]> {
    return notReady({ ec2: this.deps.ec2(spec.region), ecs: this.deps.ecs(spec.region), environment: this.deps.environment }, spec);
  }
}

const sayNotReady = (p: NotReady): string => `${p.kind} ${p.name}: ${p.reason}`;
