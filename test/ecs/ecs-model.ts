import { randomBytes } from 'node:crypto';
import type {
  ECSClient} from '@aws-sdk/client-ecs';
import {
  DescribeContainerInstancesCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  ListClustersCommand,
  ListContainerInstancesCommand,
  ListTasksCommand,
  UpdateContainerAgentCommand,
  type ContainerDefinition,
  type DescribeContainerInstancesCommandInput,
  type DescribeServicesCommandInput,
  type DescribeTasksCommandInput,
  type ListContainerInstancesCommandInput,
  type ListTasksCommandInput,
  type UpdateContainerAgentCommandInput,
  type PlacementConstraint,
  type Volume,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';

/**
 * A stateful model of the part of the ECS control plane a node's life goes
 * through: task definitions (family:revision), one-task services and their
 * scheduler, container instances with attributes, and tasks whose state the
 * emulated agents (ecs-agent.ts) report. Control-plane code (ClusterApi's
 * readiness) reads it through a real ECSClient at the SDK boundary
 * (DescribeServices, ListTasks, DescribeTasks, DescribeContainerInstances).
 *
 * Modelled on the ECS API reference and developer guide:
 * - A service keeps `desiredCount` tasks: a task that stops is replaced by the
 *   service scheduler ("Service scheduler concepts").
 * - Placement: a task goes only to an ACTIVE container instance whose agent is
 *   connected, that has every attribute the task definition requires (for a
 *   `dockerVolumeConfiguration` with a driver: `ecs.capability.docker-plugin.<driver>`; the API
 *   reference, DockerVolumeConfiguration: "the driver value must match the driver name provided
 *   by Docker because it is used for task placement") and that satisfies each
 *   `memberOf` constraint; cluster query language, only the
 *   `attribute:<name> == <value>` form the unit program uses.
 * - When no instance qualifies, the service records the event ECS writes
 *   ("was unable to place a task because no container instance met all of its requirements").
 * - Tasks go PROVISIONING → PENDING → RUNNING → STOPPED (lastStatus, from the
 *   agent) while desiredStatus is RUNNING or STOPPED (from the control plane).
 * - A deleted service stops its tasks and reads as INACTIVE in DescribeServices.
 * - A terminated instance's container instance turns INACTIVE and its tasks STOPPED.
 */
export interface TaskDefinitionInput {
  family: string;
  containerDefinitions: ContainerDefinition[];
  volumes?: Volume[];
  placementConstraints?: PlacementConstraint[];
  networkMode?: string;
}

export interface ModelTaskDefinition extends TaskDefinitionInput {
  arn: string;
  revision: number;
  requiresAttributes: string[];
}

export interface ModelContainer {
  name: string;
  lastStatus: string;
  runtimeId?: string;
  exitCode?: number;
  reason?: string;
}

export interface ModelTask {
  arn: string;
  cluster: string;
  taskDefinitionArn: string;
  containerInstanceArn: string;
  group: string;
  lastStatus: 'PROVISIONING' | 'PENDING' | 'RUNNING' | 'STOPPED';
  desiredStatus: 'RUNNING' | 'STOPPED';
  stoppedReason?: string;
  containers: ModelContainer[];
  startedAt?: Date;
  stoppedAt?: Date;
}

export interface ModelService {
  arn: string;
  name: string;
  cluster: string;
  taskDefinitionArn: string;
  desiredCount: number;
  placementConstraints: PlacementConstraint[];
  status: 'ACTIVE' | 'DRAINING' | 'INACTIVE';
  events: { createdAt: Date; message: string }[];
}

export interface ModelContainerInstance {
  arn: string;
  cluster: string;
  ec2InstanceId: string;
  attributes: Record<string, string | undefined>;
  status: 'ACTIVE' | 'INACTIVE';
  agentConnected: boolean;
  /** ECS agent version; UpdateContainerAgent moves it to LATEST_AGENT. */
  agentVersion: string;
}

/** The agent version UpdateContainerAgent installs; an instance already on it has no update available. */
export const LATEST_AGENT = '1.90.0';

export class EcsModel {
  readonly region: string;
  readonly accountId: string;
  private readonly taskDefs = new Map<string, ModelTaskDefinition>();
  private readonly revisions = new Map<string, number>();
  private readonly services = new Map<string, ModelService>();
  private readonly instances = new Map<string, ModelContainerInstance>();
  private readonly tasks = new Map<string, ModelTask>();
  /** ECS clusters by name (CreateCluster: Pulumi's, or one a container instance registers into). */
  private readonly clusters = new Set<string>();

  constructor(opts: { region?: string; accountId?: string } = {}) {
    this.region = opts.region ?? 'eu-west-1';
    this.accountId = opts.accountId ?? '123456789012';
  }

  private arn(kind: string, rest: string): string {
    return `arn:aws:ecs:${this.region}:${this.accountId}:${kind}/${rest}`;
  }

  // ---- control plane (what Pulumi's RegisterTaskDefinition/CreateService/... do) ----

  /** CreateCluster (idempotent for a name, as ECS is). */
  createCluster(name: string): string {
    this.clusters.add(name);
    return this.arn('cluster', name);
  }

  /** The agent version of a container instance. */
  agentVersionOf(arn: string): string {
    return this.instances.get(arn)!.agentVersion;
  }

  registerTaskDefinition(input: TaskDefinitionInput): ModelTaskDefinition {
    const revision = (this.revisions.get(input.family) ?? 0) + 1;
    this.revisions.set(input.family, revision);
    const requiresAttributes = [...new Set((input.volumes ?? []).flatMap((v) => {
      const driver = v.dockerVolumeConfiguration?.driver;
      return driver ? [`ecs.capability.docker-plugin.${driver}`] : [];
    }))];
    const td: ModelTaskDefinition = { ...structuredClone(input), arn: this.arn('task-definition', `${input.family}:${revision}`), revision, requiresAttributes };
    this.taskDefs.set(td.arn, td);
    return td;
  }

  taskDefinition(arn: string): ModelTaskDefinition {
    const td = this.taskDefs.get(arn);
    if (!td) throw new Error(`EcsModel: no task definition ${arn}`);
    return td;
  }

  createService(p: { cluster: string; name: string; taskDefinitionArn: string; desiredCount: number; placementConstraints?: PlacementConstraint[] }): ModelService {
    const arn = this.arn('service', `${p.cluster}/${p.name}`);
    const existing = this.services.get(arn);
    if (existing && existing.status !== 'INACTIVE') throw new Error(`EcsModel: service ${p.name} exists already (InvalidParameterException: Creation of service was not idempotent)`);
    const service: ModelService = { arn, name: p.name, cluster: p.cluster, taskDefinitionArn: p.taskDefinitionArn, desiredCount: p.desiredCount, placementConstraints: p.placementConstraints ?? [], status: 'ACTIVE', events: [] };
    this.services.set(arn, service);
    this.schedule();
    return service;
  }

  /** UpdateService with a new task definition: the old tasks stop first (minimum healthy 0 %, maximum 100 %), then new ones start. */
  updateService(cluster: string, name: string, p: { taskDefinitionArn?: string; desiredCount?: number }): void {
    const service = this.service(cluster, name);
    if (p.taskDefinitionArn && p.taskDefinitionArn !== service.taskDefinitionArn) {
      service.taskDefinitionArn = p.taskDefinitionArn;
      for (const t of this.tasksOf(service)) this.stopTask(t.arn, 'Deployment: task definition changed');
    }
    if (p.desiredCount !== undefined) service.desiredCount = p.desiredCount;
    this.schedule();
  }

  /** DeleteService (with force, as Pulumi does): its tasks stop, it reads INACTIVE from then on. */
  deleteService(cluster: string, name: string): void {
    const service = this.service(cluster, name);
    service.desiredCount = 0;
    service.status = 'INACTIVE';
    for (const t of this.tasksOf(service)) this.stopTask(t.arn, 'Service deleted');
  }

  service(cluster: string, name: string): ModelService {
    const s = this.services.get(this.arn('service', `${cluster}/${name}`));
    if (!s) throw new Error(`EcsModel: no service ${name} in ${cluster}`);
    return s;
  }

  stopTask(arn: string, reason: string): void {
    const t = this.tasks.get(arn);
    if (!t || t.desiredStatus === 'STOPPED') return;
    t.desiredStatus = 'STOPPED';
    t.stoppedReason ??= reason;
    // A task the agent never picked up stops at once.
    if (t.lastStatus === 'PROVISIONING') this.finishStop(t);
  }

  // ---- container instances (what the agent's RegisterContainerInstance does) ----

  registerContainerInstance(p: { cluster: string; ec2InstanceId: string; attributes: Record<string, string | undefined>; agentVersion?: string }): string {
    // The long ARN format: container-instance/<cluster>/<id> (ECS "Amazon Resource Names (ARNs) and IDs").
    const arn = this.arn('container-instance', `${p.cluster}/${randomBytes(16).toString('hex')}`);
    this.clusters.add(p.cluster);
    this.instances.set(arn, { arn, cluster: p.cluster, ec2InstanceId: p.ec2InstanceId, attributes: { ...p.attributes }, status: 'ACTIVE', agentConnected: true, agentVersion: p.agentVersion ?? LATEST_AGENT });
    this.schedule();
    return arn;
  }

  setAgentConnected(arn: string, connected: boolean): void {
    this.instances.get(arn)!.agentConnected = connected;
    if (connected) this.schedule();
  }

  /** The EC2 instance is gone: its container instance turns INACTIVE and its tasks stop; services place new ones elsewhere. */
  instanceTerminated(ec2InstanceId: string): void {
    for (const ci of this.instances.values()) {
      if (ci.ec2InstanceId !== ec2InstanceId) continue;
      ci.status = 'INACTIVE';
      ci.agentConnected = false;
      for (const t of this.tasks.values()) {
        if (t.containerInstanceArn !== ci.arn || t.lastStatus === 'STOPPED') continue;
        t.desiredStatus = 'STOPPED';
        t.stoppedReason ??= `Host EC2 (instance ${ec2InstanceId}) terminated.`;
        this.finishStop(t);
      }
    }
    this.schedule();
  }

  // ---- what the agent on an instance sees and reports ----

  /** Tasks placed on this container instance that are not stopped yet. */
  tasksOn(containerInstanceArn: string): ModelTask[] {
    return [...this.tasks.values()].filter((t) => t.containerInstanceArn === containerInstanceArn && t.lastStatus !== 'STOPPED');
  }

  /** The agent's SubmitTaskStateChange. */
  reportTask(arn: string, p: { lastStatus: ModelTask['lastStatus']; containers?: ModelContainer[]; stoppedReason?: string }): void {
    const t = this.tasks.get(arn);
    if (!t || t.lastStatus === 'STOPPED') return;
    if (p.containers) t.containers = p.containers;
    if (p.lastStatus === 'STOPPED') {
      t.desiredStatus = 'STOPPED';
      t.stoppedReason ??= p.stoppedReason ?? 'Task stopped';
      this.finishStop(t);
      this.schedule();
      return;
    }
    t.lastStatus = p.lastStatus;
    if (p.lastStatus === 'RUNNING') t.startedAt ??= new Date();
  }

  /** Every task, for assertions. */
  allTasks(): ModelTask[] {
    return [...this.tasks.values()];
  }

  private finishStop(t: ModelTask): void {
    t.lastStatus = 'STOPPED';
    t.stoppedAt = new Date();
    for (const c of t.containers) c.lastStatus = 'STOPPED';
  }

  private tasksOf(service: ModelService): ModelTask[] {
    return [...this.tasks.values()].filter((t) => t.group === `service:${service.name}` && t.cluster === service.cluster && t.desiredStatus === 'RUNNING');
  }

  /** The service scheduler: places tasks until each ACTIVE service has desiredCount of them. */
  schedule(): void {
    for (const service of this.services.values()) {
      if (service.status !== 'ACTIVE') continue;
      const td = this.taskDefinition(service.taskDefinitionArn);
      for (let missing = service.desiredCount - this.tasksOf(service).length; missing > 0; missing--) {
        const ci = [...this.instances.values()].find((i) => i.cluster === service.cluster && i.status === 'ACTIVE' && i.agentConnected
          && td.requiresAttributes.every((a) => a in i.attributes)
          && [...service.placementConstraints, ...(td.placementConstraints ?? [])].every((c) => satisfies(c, i)));
        if (!ci) {
          const message = `(service ${service.name}) was unable to place a task because no container instance met all of its requirements.`;
          if (service.events[0]?.message !== message) service.events.unshift({ createdAt: new Date(), message });
          break;
        }
        const arn = this.arn('task', `${service.cluster}/${randomBytes(16).toString('hex')}`);
        this.tasks.set(arn, {
          arn, cluster: service.cluster, taskDefinitionArn: td.arn, containerInstanceArn: ci.arn, group: `service:${service.name}`,
          lastStatus: 'PROVISIONING', desiredStatus: 'RUNNING',
          containers: td.containerDefinitions.map((c) => ({ name: c.name!, lastStatus: 'PENDING' })),
        });
        service.events.unshift({ createdAt: new Date(), message: `(service ${service.name}) has started 1 tasks: (task ${arn.split('/').pop()}).` });
      }
    }
  }

  // ---- the SDK boundary ----

  /** Answers this client's ECS calls from the model (other clients stay real). */
  install(client: ECSClient): void {
    const stub = mockClient(client);
    stub.on(DescribeServicesCommand).callsFake((i: DescribeServicesCommandInput) => this.describeServices(i));
    stub.on(ListTasksCommand).callsFake((i: ListTasksCommandInput) => this.listTasks(i));
    stub.on(DescribeTasksCommand).callsFake((i: DescribeTasksCommandInput) => this.describeTasks(i));
    stub.on(DescribeContainerInstancesCommand).callsFake((i: DescribeContainerInstancesCommandInput) => this.describeContainerInstances(i));
    // The agent-update job's calls (one page each: the model never holds 100 clusters or instances).
    stub.on(ListClustersCommand).callsFake(() => ({ clusterArns: [...this.clusters].map((c) => this.arn('cluster', c)) }));
    stub.on(ListContainerInstancesCommand).callsFake((i: ListContainerInstancesCommandInput) => ({
      containerInstanceArns: [...this.instances.values()].filter((ci) => ci.cluster === this.clusterName(i.cluster) && (i.status === undefined || ci.status === i.status)).map((ci) => ci.arn),
    }));
    stub.on(UpdateContainerAgentCommand).callsFake((i: UpdateContainerAgentCommandInput) => this.updateContainerAgent(i));
  }

  /** UpdateContainerAgent: NoUpdateAvailableException when the agent is current, else the update (done at once here). */
  private updateContainerAgent(i: UpdateContainerAgentCommandInput) {
    const ci = this.instances.get(i.containerInstance!);
    if (!ci || ci.cluster !== this.clusterName(i.cluster)) throw Object.assign(new Error(`container instance ${i.containerInstance} not found in ${i.cluster}`), { name: 'InvalidParameterException' });
    if (ci.agentVersion === LATEST_AGENT) throw Object.assign(new Error('There is no update available for your container agent.'), { name: 'NoUpdateAvailableException' });
    ci.agentVersion = LATEST_AGENT;
    return { containerInstance: { containerInstanceArn: ci.arn, agentUpdateStatus: 'PENDING' } };
  }

  private clusterName(cluster: string | undefined): string {
    const c = cluster ?? 'default';
    return c.startsWith('arn:') ? c.split('/').pop()! : c;
  }

  private describeServices(i: DescribeServicesCommandInput) {
    const cluster = this.clusterName(i.cluster);
    // DescribeServices takes at most 10 services per call (API reference).
    if ((i.services ?? []).length > 10) throw Object.assign(new Error('services can have at most 10 items'), { name: 'InvalidParameterException' });
    const services = [];
    const failures = [];
    for (const s of i.services ?? []) {
      const found = this.services.get(s.startsWith('arn:') ? s : this.arn('service', `${cluster}/${s}`));
      if (!found) {
        failures.push({ arn: s.startsWith('arn:') ? s : this.arn('service', `${cluster}/${s}`), reason: 'MISSING' });
        continue;
      }
      const tasks = this.tasksOf(found);
      services.push({
        serviceArn: found.arn, serviceName: found.name, clusterArn: this.arn('cluster', found.cluster), status: found.status,
        desiredCount: found.desiredCount, taskDefinition: found.taskDefinitionArn,
        runningCount: tasks.filter((t) => t.lastStatus === 'RUNNING').length,
        pendingCount: tasks.filter((t) => t.lastStatus !== 'RUNNING').length,
        events: found.events.slice(0, 100).map((e, n) => ({ id: String(n), createdAt: e.createdAt, message: e.message })),
      });
    }
    return { services, failures };
  }

  private listTasks(i: ListTasksCommandInput) {
    const cluster = this.clusterName(i.cluster);
    const desired = i.desiredStatus ?? 'RUNNING';
    const tasks = [...this.tasks.values()].filter((t) => t.cluster === cluster && t.desiredStatus === desired
      && (i.serviceName === undefined || t.group === `service:${i.serviceName}`)
      && (i.containerInstance === undefined || t.containerInstanceArn === i.containerInstance));
    return { taskArns: tasks.map((t) => t.arn) };
  }

  private describeTasks(i: DescribeTasksCommandInput) {
    if ((i.tasks ?? []).length > 100) throw Object.assign(new Error('tasks can have at most 100 items'), { name: 'InvalidParameterException' });
    const tasks = [];
    const failures = [];
    for (const arn of i.tasks ?? []) {
      const t = this.tasks.get(arn);
      if (!t) {
        failures.push({ arn, reason: 'MISSING' });
        continue;
      }
      tasks.push({
        taskArn: t.arn, clusterArn: this.arn('cluster', t.cluster), taskDefinitionArn: t.taskDefinitionArn, containerInstanceArn: t.containerInstanceArn,
        group: t.group, lastStatus: t.lastStatus, desiredStatus: t.desiredStatus, stoppedReason: t.stoppedReason, startedAt: t.startedAt, stoppedAt: t.stoppedAt,
        containers: t.containers.map((c) => ({ name: c.name, lastStatus: c.lastStatus, runtimeId: c.runtimeId, exitCode: c.exitCode, reason: c.reason })),
      });
    }
    return { tasks, failures };
  }

  private describeContainerInstances(i: DescribeContainerInstancesCommandInput) {
    const found = (i.containerInstances ?? []).map((arn) => this.instances.get(arn)).filter((x) => x !== undefined);
    return {
      containerInstances: found.map((ci) => ({
        containerInstanceArn: ci.arn, ec2InstanceId: ci.ec2InstanceId, status: ci.status, agentConnected: ci.agentConnected,
        attributes: Object.entries(ci.attributes).map(([name, value]) => ({ name, ...(value !== undefined ? { value } : {}) })),
      })),
      failures: [],
    };
  }
}

/** `memberOf` with `attribute:<name> == <value>` (the one form the unit program writes); anything else is not modelled. */
function satisfies(c: PlacementConstraint, ci: ModelContainerInstance): boolean {
  if (c.type === 'distinctInstance') return true;
  const m = /^attribute:([\w.-]+)\s*==\s*(\S+)$/.exec(c.expression ?? '');
  if (c.type !== 'memberOf' || !m) throw new Error(`EcsModel: placement constraint ${JSON.stringify(c)} is not modelled`);
  return ci.attributes[m[1]!] === m[2];
}
