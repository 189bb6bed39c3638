import * as pulumi from '@pulumi/pulumi';
import type { ContainerDefinition, PlacementConstraint, Volume } from '@aws-sdk/client-ecs';
import type { ClusterWorkspace, StackState } from '../../infra/cluster-api/cluster-api.js';
import type { ClusterSpec } from '../../infra/cluster-api/invariants.js';
import { ofType, recordResources, settled, type Declared } from '../../infra/test/pulumi-mocks.js';
import { resolveAll } from '../../infra/test/program-checks.js';
import type { Region } from './region.js';

/** What the regional stack hands the unit program (a StackReference under mocks). */
export const REGIONAL = {
  stack: 'acme/berth-regional/regional-eu-west-1',
  /** The regional stack's `environment` output: it names the unit's ECS cluster. */
  environment: 'prod',
  subnets: ['subnet-a', 'subnet-b', 'subnet-c'],
  azs: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
  zone: 'example.com',
};

/**
 * A ClusterWorkspace that runs the real unit program (infra/programs/unit)
 * under `pulumi.runtime.setMocks` and applies what it declares to the region
 * on this machine, in Pulumi's order: hosts first, then each node's volume,
 * task definition and service; on removal, services first, then hosts.
 * - Auto Scaling group (one instance): an instance boots with the group's tags.
 * - aws.ebs.Volume: created in EC2 (the model) with its tags; a volume no longer
 *   declared is kept, as node.ts declares it (`retainOnDelete`, node.test.ts).
 * - aws.ecs.TaskDefinition: registered (a new revision only when it changed).
 * - aws.ecs.Service: created, updated to a new revision, or deleted in the ECS model.
 */
export class MockedUnitWorkspace implements ClusterWorkspace {
  private readonly declared: Declared[];
  private readonly stacks = new Map<string, { spec: ClusterSpec; state: Deployed }>();

  constructor(private readonly region: Region, private readonly settings: { nodeImage: string; nodePort: number }) {
    this.declared = recordResources({
      stacks: {
        [REGIONAL.stack]: {
          zone: REGIONAL.zone, zoneId: 'Z0EXAMPLE', privateSubnetIds: REGIONAL.subnets, privateSubnetAzs: REGIONAL.azs, securityGroupId: 'sg-eu',
          artifactUri: 's3://berth-artifacts-0001/berth/build-1.tar.gz', ebsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/ebs',
          bucketKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/buckets', traefikIp: '203.0.113.10', environment: REGIONAL.environment,
        },
      },
      calls: {
        'aws:index/getCallerIdentity:getCallerIdentity': () => ({ accountId: '123456789012', arn: 'arn', userId: 'u', id: '123456789012' }),
        'aws:ssm/getParameter:getParameter': (i) => ({ name: i['name'], value: 'ami-0ecs2023', type: 'String' }),
      },
    });
  }

  read(cluster: string): Promise<StackState | undefined> {
    const s = this.stacks.get(cluster);
    return Promise.resolve(s && { deployed: s.spec, desired: s.spec });
  }

  list(): Promise<string[]> {
    return Promise.resolve([...this.stacks.keys()]);
  }

  /** What the unit program declares for this spec (the resources of one program run). */
  async declare(spec: ClusterSpec): Promise<Declared[]> {
    pulumi.runtime.setAllConfig({
      'aws:region': spec.region, 'berth:cluster': JSON.stringify(spec), 'berth:regionalStack': REGIONAL.stack,
      'berth:regions': JSON.stringify([spec.region]), 'berth:zone': REGIONAL.zone,
      'berth:nodeImage': this.settings.nodeImage, 'berth:nodePort': String(this.settings.nodePort),
    });
    const from = this.declared.length;
    const { unitProgram } = await import('../../infra/programs/unit/index.js');
    await resolveAll(unitProgram());
    await settled(this.declared);
    return this.declared.slice(from);
  }

  async apply(spec: ClusterSpec): Promise<void> {
    const next = desired(await this.declare(spec));
    const before = this.stacks.get(spec.name)?.state ?? { hosts: new Map(), volumes: new Map(), services: new Map() };
    const ecs = this.region.ecs;
    // Services that go, first (a node never outlives its host).
    for (const [name, s] of before.services) if (!next.services.has(name)) ecs.deleteService(s.cluster, name);
    for (const [hostId, h] of next.hosts) {
      if (!before.hosts.has(hostId)) await this.region.boot(hostId, { az: h.az, cluster: spec.name, ecsCluster: h.ecsCluster, tags: h.tags });
    }
    const volumeIds = new Map<string, string>();
    for (const [name, v] of next.volumes) {
      const known = before.volumes.get(name);
      volumeIds.set(name, known ?? this.region.ec2.addVolume({ az: v.az, size: v.size, type: v.type as 'gp3', encrypted: true, tags: v.tags }));
    }
    const state: Deployed = { hosts: next.hosts, volumes: volumeIds, services: new Map() };
    for (const [name, s] of next.services) {
      const old = before.services.get(name);
      const tdArn = old && sameTask(ecs.taskDefinition(old.taskDefinitionArn), s.task) ? old.taskDefinitionArn : ecs.registerTaskDefinition(s.task).arn;
      if (!old) ecs.createService({ cluster: s.cluster, name, taskDefinitionArn: tdArn, desiredCount: s.desiredCount, placementConstraints: s.placementConstraints });
      else ecs.updateService(s.cluster, name, { taskDefinitionArn: tdArn, desiredCount: s.desiredCount });
      state.services.set(name, { cluster: s.cluster, taskDefinitionArn: tdArn });
    }
    for (const hostId of before.hosts.keys()) if (!next.hosts.has(hostId)) await this.region.terminate(hostId);
    this.stacks.set(spec.name, { spec, state });
  }

  /** pulumi destroy: services, then hosts; node volumes are retained. */
  async destroy(cluster: string): Promise<void> {
    const deployed = this.stacks.get(cluster);
    if (!deployed) return;
    for (const [name, s] of deployed.state.services) this.region.ecs.deleteService(s.cluster, name);
    for (const hostId of deployed.state.hosts.keys()) if (this.region.host(hostId)) await this.region.terminate(hostId);
    this.stacks.delete(cluster);
  }

  /** The instance of one host dies; returns its id. */
  terminateInstance(hostId: string): Promise<string> {
    return this.region.terminate(hostId);
  }

  /** The host's Auto Scaling group launches a new instance with the group's tags, which boots. */
  async launchInstance(cluster: string, hostId: string): Promise<string> {
    const h = this.stacks.get(cluster)?.state.hosts.get(hostId);
    if (!h) throw new Error(`cluster ${cluster} has no host ${hostId}`);
    return (await this.region.boot(hostId, { az: h.az, cluster, ecsCluster: h.ecsCluster, tags: h.tags })).instanceId;
  }

  /** The EC2 volume id of each node volume deployed (by Pulumi resource name). */
  volumeIds(cluster: string): Map<string, string> {
    return new Map(this.stacks.get(cluster)?.state.volumes ?? []);
  }
}

interface Deployed {
  hosts: Map<string, DesiredHost>;
  volumes: Map<string, string>;
  services: Map<string, { cluster: string; taskDefinitionArn: string }>;
}

interface DesiredHost { az: string; ecsCluster: string; tags: Record<string, string> }
interface DesiredTask { family: string; containerDefinitions: ContainerDefinition[]; volumes?: Volume[]; networkMode?: string }

function desired(declared: Declared[]) {
  const arnOf = (d: Declared) => `arn:aws:mock:::${d.name}`;
  const clusters = new Map(ofType(declared, 'aws:ecs/cluster:Cluster').map((c) => [arnOf(c), String(c.inputs['name'])]));
  const ecsCluster = [...clusters.values()][0]!;
  const hosts = new Map<string, DesiredHost>();
  for (const g of ofType(declared, 'aws:autoscaling/group:Group')) {
    const tags = Object.fromEntries((g.inputs['tags'] as Array<{ key: string; value: string; propagateAtLaunch: boolean }>).filter((t) => t.propagateAtLaunch).map((t) => [t.key, t.value]));
    const subnet = (g.inputs['vpcZoneIdentifiers'] as string[])[0]!;
    hosts.set(tags['berth:host']!, { az: REGIONAL.azs[REGIONAL.subnets.indexOf(subnet)]!, ecsCluster, tags });
  }
  const volumes = new Map(ofType(declared, 'aws:ebs/volume:Volume').map((v) => [v.name, {
    az: String(v.inputs['availabilityZone']), size: Number(v.inputs['size']), type: String(v.inputs['type']), tags: v.inputs['tags'] as Record<string, string>,
  }]));
  const tasks = new Map(ofType(declared, 'aws:ecs/taskDefinition:TaskDefinition').map((t) => [arnOf(t), {
    family: String(t.inputs['family']), networkMode: t.inputs['networkMode'] as string,
    containerDefinitions: JSON.parse(t.inputs['containerDefinitions'] as string) as ContainerDefinition[],
    volumes: t.inputs['volumes'] as Volume[],
  } satisfies DesiredTask]));
  const services = new Map(ofType(declared, 'aws:ecs/service:Service').map((s) => [String(s.inputs['name'] ?? s.name), {
    cluster: clusters.get(String(s.inputs['cluster']))!, task: tasks.get(String(s.inputs['taskDefinition']))!,
    desiredCount: Number(s.inputs['desiredCount']), placementConstraints: s.inputs['placementConstraints'] as PlacementConstraint[],
  }]));
  return { hosts, volumes, services };
}

function sameTask(a: DesiredTask, b: DesiredTask): boolean {
  return JSON.stringify([a.family, a.containerDefinitions, a.volumes]) === JSON.stringify([b.family, b.containerDefinitions, b.volumes]);
}
