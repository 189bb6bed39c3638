import { CreateTagsCommand, DescribeVolumesCommand, type EC2Client, type Volume } from '@aws-sdk/client-ec2';
import type { ECSClient } from '@aws-sdk/client-ecs';
import type { automation } from '@pulumi/pulumi';
import { checkAttachmentCapacity } from './attachment-capacity.js';
import { TIME_BUDGETS } from '../../agent/config.js';
import { mayPublishLabel, nodeVolumeName, tagKeys } from '../../lib/node-contract.js';
import { SdkEc2 } from '../../volume-plugin/backends/ebs/sdk-ec2.js';
import { createZoneMover, type ZoneMoveDeps } from '../../volume-plugin/backends/ebs/zone-move.js';
import { subnetIndexFor } from '../programs/unit/index.js';
import {
  assertName, checkPublishedLabels, checkTransition, ClusterInvariantError, publishedLabels, withMovedVolumes, withNodeMoved, withNodes, withNodeStopped, withoutNodes,
  type ClusterSpec, type MovedVolume, type NodeSpec,
} from './invariants.js';
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
  /** The region's private subnet zones in order (the stack's `zones` output): a host's zone is `zones[subnetIndexFor(host, n)]`. Absent for a stack deployed before zone moves. */
  readonly zones?: readonly string[];
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
  /**
   * moveNode: how long to wait for the stopped node's volume to be detached. Default: ECS stopping
   * the task, berth's unmount grace and its idle detach (agent/config.ts TIME_BUDGETS), and 5 minutes more.
   */
  readonly detachTimeoutMs?: number;
  /** moveNode: settings of the zone mover (zone-move.ts ZoneMoveDeps: its poll interval, default `pollMs`, and its other waits). */
  readonly move?: Partial<Omit<ZoneMoveDeps, 'ec2' | 'keys' | 'cluster' | 'environment' | 'progress'>>;
}

/**
 * Stands for the volume a zone move is about to make, in the checks moveNode makes before anything
 * changes (the final spec's invariants and attachment capacity do not depend on its id).
 */
const PLANNED_VOLUME: MovedVolume = { id: 'vol-00000000000000000', snapshotId: 'snap-00000000000000000' };

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
    return this.run(spec.name, 'update', options, async (ctx) => {
      const current = await this.deployed(spec.name);
      return this.change(ctx, current, withMovedVolumes(current, spec));
    });
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

  /**
   * Moves node `node` to host `toHost` in another availability zone, its EBS volume with it
   * (docs/operations.md, "Move a node to another zone"; docs/design.md §6, "Zone moves"):
   * refuses up front what cannot work; stops the node (its service at 0 tasks, an apply of the
   * unit program) and waits until berth has detached its volume; moves the volume with zone-move.ts
   * (the code of `berth move`; the new volume tagged to `toHost`); then applies the unit program with
   * the node on `toHost` and the moved volume, which Pulumi adopts (import) while forgetting the old
   * one (retained, as the move retired it), and waits until the node runs there. Safe to run again
   * after this process died at any point: each step resumes from what EC2 and the stack say.
   */
  moveNode(cluster: string, node: string, toHost: string, options: OperationOptions = {}): Promise<OperationResult> {
    return this.run(cluster, 'move-node', options, async (ctx) => {
      const state = await this.deps.workspace.read(cluster);
      const current = state?.deployed;
      if (!current) throw new ClusterInvariantError(`cluster ${cluster} does not exist`);
      assertName('host', toHost);
      const n = current.nodes.find((x) => x.name === node);
      if (!n) throw new ClusterInvariantError(`cluster ${cluster} has no node ${node}`);
      if (n.host === toHost) {
        // Done by an earlier run up to its last apply: only the wait for the node is left.
        ctx.emit({ phase: 'validated', message: `node ${node} is on host ${toHost} already` });
        await this.waitReady(ctx, current, 0);
        return { deployed: current, attempts: 0 };
      }
      const zones = state.zones ?? [];
      const zoneOf = (host: string) => (zones.length > 0 ? zones[subnetIndexFor(host, zones.length)] : undefined);
      const from = zoneOf(n.host);
      const to = zoneOf(toHost);
      if (!from || !to) {
        throw new ClusterInvariantError(`the zone of host ${toHost} is not known: cluster ${cluster}'s stack has no "zones" output (it was deployed before zone moves); apply the cluster once (update with its spec), then move`);
      }
      if (from === to) {
        throw new ClusterInvariantError(`host ${toHost} is in ${to}, where node ${node} and its volume are already (host ${n.host}); moveNode moves a node to a host in another zone`);
      }
      // The final spec's invariants and the target host's attachment capacity, before anything changes.
      const planned = withNodeMoved(current, node, toHost, PLANNED_VOLUME);
      checkTransition(current, planned, this.deps.regions);
      const capacity = await checkAttachmentCapacity(this.deps.ec2(current.region), planned);
      const name = nodeVolumeName(cluster, node);
      // The mover has no retry of its own: the SDK retries EC2's refusals, as for berth move (agent/cli.ts).
      const mover = createZoneMover({
        zones, pollMs: this.pollMs, now: this.now, ...this.deps.move,
        ec2: new SdkEc2(this.deps.ec2(current.region), { refusals: 'sdk' }), keys: tagKeys(), cluster, environment: this.deps.environment, progress: (line) => ctx.emit({ phase: 'moving', message: line.trim() }),
      });
      const under = await mover.status(name);
      if (under && under.journal.to !== to) {
        throw new ClusterInvariantError(
          `volume ${name} (${under.volumeId}) is already moving to ${under.journal.to} (step ${under.journal.step}); finish that move (berth move ${name} --zone ${under.journal.to}) or abort it (berth move ${name} --abort) first`,
        );
      }
      const slots = capacity.checked ? `, host ${toHost} has room (up to ${capacity.slots} node(s) per ${capacity.limit.instanceType} host)` : ` (attachment limit not checked: ${capacity.why})`;
      ctx.emit({ phase: 'validated', message: `moving node ${node} from host ${n.host} (${from}) to host ${toHost} (${to})${under ? `, resuming the move at step ${under.journal.step}` : ''}${slots}` });

      // 1. Stop the node; berth on its host unmounts and detaches the volume.
      let attempts = 0;
      const stopped = withNodeStopped(current, node);
      if (n.stopped !== true) {
        checkTransition(current, stopped, this.deps.regions);
        ctx.emit({ phase: 'applying', message: `stopping node ${node} (its ECS service to 0 tasks)` });
        attempts += await this.step(ctx, (onEvent) => this.deps.workspace.apply(stopped, { onEvent }));
      }
      await this.waitDetached(ctx, current.region, name, to);

      // 2. The move, by zone-move.ts (resumes a journalled one).
      const moved = await mover.move({ name, zone: to, host: toHost });
      const volume = await this.adoptable(current.region, moved.to.volumeId, toHost);
      ctx.emit({ phase: 'moving', message: `volume ${name} is ${volume.moved.id} in ${to} now${moved.already ? '' : `; ${moved.from.volumeId} is retired, kept until ${moved.retainUntil}`}` });

      // 3. The node on its new host with the moved volume, which Pulumi imports.
      const result = await this.change(ctx, stopped, withNodeMoved(stopped, node, toHost, volume.moved, volume.sizeGiB));
      return { deployed: result.deployed, attempts: attempts + result.attempts };
    });
  }

  /**
   * Waits until no volume named `name` outside zone `to` is attached (berth on the stopped node's
   * host detached it). One in `to` is the moved volume of an earlier run: berth on the target host
   * may have attached it already (it is tagged to that host), which is where it belongs.
   */
  private async waitDetached(ctx: Context, region: string, name: string, to: string): Promise<void> {
    const keys = tagKeys();
    const timeoutMs = this.deps.detachTimeoutMs ?? (30 + TIME_BUDGETS.unmountGraceSeconds + TIME_BUDGETS.idleDetachSeconds + 300) * 1000;
    const deadline = this.now() + timeoutMs;
    let said = '';
    for (;;) {
      const answer = await this.deps.ec2(region).send(new DescribeVolumesCommand({
        Filters: [{ Name: `tag:${keys.volume}`, Values: [name] }, { Name: `tag:${keys.cluster}`, Values: [ctx.cluster] }, { Name: `tag:${keys.environment}`, Values: [this.deps.environment] }],
      }));
      const attached = (answer.Volumes ?? [])
        .filter((v) => !v.Tags?.some((t) => t.Key === keys.retired) && v.AvailabilityZone !== to)
        .filter((v) => v.State === 'in-use' || (v.Attachments ?? []).some((a) => a.State !== 'detached'));
      if (attached.length === 0) return;
      const where = attached.map((v) => `${v.VolumeId} attached to ${v.Attachments?.[0]?.InstanceId ?? 'an instance'} (${v.Attachments?.[0]?.State ?? v.State})`).join(', ');
      if (this.now() >= deadline) {
        throw new ClusterOperationError(ctx.cluster, ctx.operation, 0, 'not-ready', undefined,
          `volume ${name} is still attached after ${Math.round(timeoutMs / 1000)} s: ${where}; the node stays stopped. berth detaches an unused volume after BERTH_IDLE_DETACH_SECONDS: check that the node's task stopped and berth runs on its host, then run the move again`);
      }
      if (where !== said) ctx.emit({ phase: 'waiting', message: `waiting for berth to detach volume ${name}: ${where}`, pending: [where] });
      said = where;
      await this.sleep(this.pollMs);
    }
  }

  /**
   * The moved volume as the unit program must declare it for the import to match; its host tag set
   * to `host` (a move journalled by `berth move` without --host kept the old host's).
   */
  private async adoptable(region: string, volumeId: string, host: string): Promise<{ moved: MovedVolume; sizeGiB: number }> {
    const keys = tagKeys();
    const ec2 = this.deps.ec2(region);
    const v: Volume | undefined = (await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes?.[0];
    if (!v?.VolumeId || !v.SnapshotId || v.Size === undefined) throw new Error(`the moved volume ${volumeId} is not there as EC2 describes it`);
    if (!v.Tags?.some((t) => t.Key === keys.host && t.Value === host)) await ec2.send(new CreateTagsCommand({ Resources: [volumeId], Tags: [{ Key: keys.host, Value: host }] }));
    return {
      moved: { id: v.VolumeId, snapshotId: v.SnapshotId, ...(v.Iops !== undefined ? { iops: v.Iops } : {}), ...(v.Throughput !== undefined ? { throughput: v.Throughput } : {}) },
      sizeGiB: v.Size,
    };
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
