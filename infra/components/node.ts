import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { NODE_VOLUME_TYPE, nodeServiceName, nodeVolumeTags } from '../../lib/node-contract.js';
import type { MovedVolume } from '../cluster-api/invariants.js';
import { nodeTask, nodeTaskFamily, type NodeTaskArgs } from './node-task.js';

export interface NodeArgs extends Omit<NodeTaskArgs, 'environment'> {
  /** The environment (the regional stack's output). */
  readonly environment: pulumi.Input<string>;
  readonly ecsCluster: pulumi.Input<string>;
  readonly availabilityZone: pulumi.Input<string>;
  readonly kmsKeyId?: pulumi.Input<string>;
  /** The volume a zone move made (NodeSpec.volume): adopted by `import` instead of the one Pulumi created. */
  readonly volume?: MovedVolume;
  /** The service at 0 tasks. */
  readonly stopped?: boolean;
}

/**
 * The logical name of a node's volume: `<node>-data` for the one Pulumi created, `<node>-data-<id>`
 * for one a zone move made. A new name is a new resource, so Pulumi imports the moved volume and
 * drops the old one from its state (retainOnDelete: no DeleteVolume); the same name with another
 * import id would make Pulumi delete the current one and import in its place (pulumi/pulumi,
 * developer-docs/architecture/import.md, case 3).
 */
export const nodeVolumeResourceName = (name: string, volume?: MovedVolume) => (volume ? `${name}-data-${volume.id}` : `${name}-data`);

/**
 * One node: its EBS volume carrying berth's tags, its task definition and its one-task service.
 * The volume is retained on delete, not protected: removing a node (or its cluster) succeeds and
 * leaves the volume, its data and its tags in EC2 (docs/deploy.md, "Removing a node").
 */
export class Node extends pulumi.ComponentResource {
  readonly volumeId: pulumi.Output<string>;
  readonly serviceName: pulumi.Output<string>;

  constructor(name: string, args: NodeArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:unit:Node', name, {}, opts);
    const sizeGiB = args.sizeGiB ?? 20;
    const moved = args.volume;
    const volume = new aws.ebs.Volume(nodeVolumeResourceName(name, moved), {
      availabilityZone: args.availabilityZone, size: sizeGiB, type: NODE_VOLUME_TYPE, encrypted: true, kmsKeyId: args.kmsKeyId,
      tags: nodeVolumeTags({ environment: args.environment, cluster: args.cluster, node: args.node, host: args.host }),
      // An import must match the volume as it is, or it fails (Pulumi, "Resource option: import"; a
      // changed snapshotId would even replace it): what the move's CreateVolume was given.
      ...(moved ? { snapshotId: moved.snapshotId, iops: moved.iops, throughput: moved.throughput } : {}),
    }, {
      parent: this,
      // Adopt the moved volume (docs/design.md §6, "Zone moves"); once in the state, the same import
      // id is a no-op (import.md, case 2), so later changes (a grow) update it in place.
      ...(moved ? { import: moved.id } : {}),
      // `protect` would make every removal of the node fail; retaining keeps the data and lets it go.
      // (A final snapshot would need a DeleteVolume, which fails while berth keeps the volume attached.)
      retainOnDelete: true,
      // berth adds its own tags (berth:state, berth:attached-to, berth:options); a refresh-and-up must not strip them.
      // A new zone or key would replace the volume by a blank one: the data stays where it is instead.
      ignoreChanges: ['tags', 'tagsAll', 'availabilityZone', 'kmsKeyId', 'encrypted'],
    });
    // Checked now (bad sizes, routes, health checks fail the preview), rendered once the environment is known.
    const { placementConstraints } = nodeTask({ ...args, environment: 'check', sizeGiB });
    const task = pulumi.output(args.environment).apply((environment) => ({ environment, ...nodeTask({ ...args, environment, sizeGiB }) }));
    const taskDef = new aws.ecs.TaskDefinition(`${name}-task`, {
      family: task.apply((t) => nodeTaskFamily({ environment: t.environment, cluster: args.cluster, node: args.node })), networkMode: 'bridge', requiresCompatibilities: ['EC2'], memory: '512',
      containerDefinitions: task.apply((t) => JSON.stringify(t.containerDefinitions)), volumes: task.apply((t) => t.volumes),
    }, { parent: this });
    const service = new aws.ecs.Service(`${name}-svc`, {
      name: nodeServiceName(args.cluster, args.node), cluster: args.ecsCluster, taskDefinition: taskDef.arn, desiredCount: args.stopped ? 0 : 1, launchType: 'EC2',
      // One task at a time: the volume can be attached to one host only.
      deploymentMinimumHealthyPercent: 0, deploymentMaximumPercent: 100,
      placementConstraints,
    }, { parent: this });
    this.volumeId = volume.id;
    this.serviceName = service.name;
    this.registerOutputs({ volumeId: this.volumeId, serviceName: this.serviceName });
  }
}
