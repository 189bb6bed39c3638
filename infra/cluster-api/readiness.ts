import { DescribeInstancesCommand, DescribeVolumesCommand, type EC2Client, type Tag } from '@aws-sdk/client-ec2';
import { DescribeServicesCommand, DescribeTasksCommand, ListTasksCommand, type ECSClient } from '@aws-sdk/client-ecs';
import { nodeServiceName, nodeVolumeName, READY, tagKeys, VOLUME_STATE } from '../../lib/node-contract.js';
import { unitEcsClusterName } from '../components/cluster.js';
import type { ClusterSpec } from './invariants.js';

/**
 * Whether a cluster runs as its spec says, from what berth and ECS report:
 * each host has a running instance tagged `<prefix>ready=true` (berth mounted
 * every volume tagged to it, docs/design.md §6), each node's volume is tagged
 * `<prefix>state=mounted`, and each node's ECS service has a RUNNING task of
 * its current task definition. Tags alone are not enough: a volume is mounted
 * at boot whether or not its task can start.
 */
export interface NotReady {
  readonly kind: 'host' | 'node';
  readonly name: string;
  readonly reason: string;
  /** berth reported an error: waiting will not help. */
  readonly failed?: boolean;
}

export interface ReadinessClients {
  readonly ec2: Pick<EC2Client, 'send'>;
  readonly ecs: Pick<ECSClient, 'send'>;
  /** The deployment's environment (`berth:environment`): it names each cluster's ECS cluster. */
  readonly environment: string;
  readonly tagPrefix?: string;
}

const tagValue = (tags: Tag[] | undefined, key: string) => tags?.find((t) => t.Key === key)?.Value;

/** Everything not ready yet, with the reason; empty when the cluster is ready. */
export async function notReady(clients: ReadinessClients, spec: ClusterSpec): Promise<NotReady[]> {
  const keys = tagKeys(clients.tagPrefix);
  // A cluster is its name in its environment: another environment's `shop` is not this one.
  const ownCluster = [{ Name: `tag:${keys.cluster}`, Values: [spec.name] }, { Name: `tag:${keys.environment}`, Values: [clients.environment] }];
  const out: NotReady[] = [];
  const inst = await clients.ec2.send(new DescribeInstancesCommand({
    Filters: [...ownCluster, { Name: 'instance-state-name', Values: ['running'] }],
  }));
  const instances = (inst.Reservations ?? []).flatMap((r) => r.Instances ?? []);
  for (const host of spec.hosts) {
    const i = instances.find((x) => tagValue(x.Tags, keys.host) === host);
    if (!i) out.push({ kind: 'host', name: host, reason: 'no running instance' });
    else if (tagValue(i.Tags, keys.ready) !== READY) out.push({ kind: 'host', name: host, reason: `instance ${i.InstanceId} is not tagged ${keys.ready}=${READY} yet (berth is still mounting its volumes)` });
  }
  const vols = await clients.ec2.send(new DescribeVolumesCommand({ Filters: ownCluster }));
  const services = await describeServices(clients.ecs, clients.environment, spec);
  // A stopped node (`stopped`, a zone move's first step) runs no task and has its volume unmounted on purpose.
  for (const node of spec.nodes.filter((n) => n.stopped !== true)) {
    const v = (vols.Volumes ?? []).find((x) => tagValue(x.Tags, keys.volume) === nodeVolumeName(spec.name, node.name));
    const state = tagValue(v?.Tags, keys.state);
    if (!v) out.push({ kind: 'node', name: node.name, reason: `no EBS volume tagged ${keys.volume}=${nodeVolumeName(spec.name, node.name)}` });
    else if (state?.startsWith(VOLUME_STATE.errorPrefix)) out.push({ kind: 'node', name: node.name, reason: `volume ${v.VolumeId}: ${keys.state}=${state}`, failed: true });
    else if (state !== VOLUME_STATE.mounted) out.push({ kind: 'node', name: node.name, reason: `volume ${v.VolumeId} is ${state ?? 'not reported by berth yet'}, not ${VOLUME_STATE.mounted}` });
    const why = await taskNotRunning(clients.ecs, clients.environment, spec, node.name, services.get(nodeServiceName(spec.name, node.name)));
    if (why) out.push({ kind: 'node', name: node.name, reason: why });
  }
  return out;
}

type Service = { serviceName?: string; status?: string; runningCount?: number; taskDefinition?: string; events?: { message?: string }[] };

async function describeServices(ecs: Pick<ECSClient, 'send'>, environment: string, spec: ClusterSpec): Promise<Map<string, Service>> {
  const names = spec.nodes.filter((n) => n.stopped !== true).map((n) => nodeServiceName(spec.name, n.name));
  const found = new Map<string, Service>();
  // DescribeServices takes at most 10 services per call.
  for (let i = 0; i < names.length; i += 10) {
    const res = await ecs.send(new DescribeServicesCommand({ cluster: unitEcsClusterName(environment, spec.name), services: names.slice(i, i + 10) }));
    for (const s of res.services ?? []) found.set(s.serviceName!, s);
  }
  return found;
}

/** Why the node's service has no running task of its current task definition, or undefined when it has. */
async function taskNotRunning(ecs: Pick<ECSClient, 'send'>, environment: string, spec: ClusterSpec, node: string, service: Service | undefined): Promise<string | undefined> {
  const name = nodeServiceName(spec.name, node);
  if (!service || service.status !== 'ACTIVE') return `ECS service ${name} is ${service?.status ?? 'missing'}`;
  const cluster = unitEcsClusterName(environment, spec.name);
  const running = (await ecs.send(new ListTasksCommand({ cluster, serviceName: name, desiredStatus: 'RUNNING' }))).taskArns ?? [];
  const stopped = (await ecs.send(new ListTasksCommand({ cluster, serviceName: name, desiredStatus: 'STOPPED' }))).taskArns ?? [];
  const arns = [...running, ...stopped].slice(0, 100);
  const tasks = arns.length > 0 ? (await ecs.send(new DescribeTasksCommand({ cluster, tasks: arns }))).tasks ?? [] : [];
  if (tasks.some((t) => t.lastStatus === 'RUNNING' && t.desiredStatus === 'RUNNING' && t.taskDefinitionArn === service.taskDefinition)) return undefined;
  const pending = tasks.find((t) => t.desiredStatus === 'RUNNING');
  const last = tasks.filter((t) => t.lastStatus === 'STOPPED').sort((a, b) => (b.stoppedAt?.getTime() ?? 0) - (a.stoppedAt?.getTime() ?? 0))[0];
  const parts = [pending ? `its task is ${pending.lastStatus ?? 'pending'}` : 'no task is running'];
  if (last?.stoppedReason) parts.push(`last task stopped: ${last.stoppedReason}`);
  if (!pending && service.events?.[0]?.message) parts.push(`ECS: ${service.events[0].message}`);
  return `ECS service ${name}: ${parts.join('; ')}`;
}
