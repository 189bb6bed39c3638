import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { NODE_VOLUME_TYPE, nodeServiceName, nodeVolumeTags } from '../../lib/node-contract.js';
import { nodeTask, nodeVolumeName, type NodeTaskArgs } from './node-task.js';

export interface NodeArgs extends NodeTaskArgs {
  readonly ecsCluster: pulumi.Input<string>;
  readonly availabilityZone: pulumi.Input<string>;
  readonly kmsKeyId?: pulumi.Input<string>;
}

/** One node: its protected EBS volume carrying berth's tags, its task definition and its one-task service. */
export class Node extends pulumi.ComponentResource {
  readonly volumeId: pulumi.Output<string>;
  readonly serviceName: pulumi.Output<string>;

  constructor(name: string, args: NodeArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:unit:Node', name, {}, opts);
    const sizeGiB = args.sizeGiB ?? 20;
    const volumeName = nodeVolumeName(args.cluster, args.node);
    const volume = new aws.ebs.Volume(`${name}-data`, {
      availabilityZone: args.availabilityZone, size: sizeGiB, type: NODE_VOLUME_TYPE, encrypted: true, kmsKeyId: args.kmsKeyId,
      tags: nodeVolumeTags({ cluster: args.cluster, node: args.node, host: args.host }),
    }, {
      // Retained, not protected: removing a node succeeds and leaves its volume and data in EC2 (docs/design.md §11).
      parent: this, retainOnDelete: true,
      // berth adds its own tags (berth:state, berth:attached-to, berth:options); a refresh-and-up must not strip them.
      ignoreChanges: ['tags', 'tagsAll'],
    });
    const task = nodeTask({ ...args, sizeGiB });
    const taskDef = new aws.ecs.TaskDefinition(`${name}-task`, {
      family: volumeName, networkMode: 'bridge', requiresCompatibilities: ['EC2'], memory: '512',
      containerDefinitions: JSON.stringify(task.containerDefinitions), volumes: task.volumes,
    }, { parent: this });
    const service = new aws.ecs.Service(`${name}-svc`, {
      name: nodeServiceName(args.cluster, args.node), cluster: args.ecsCluster, taskDefinition: taskDef.arn, desiredCount: 1, launchType: 'EC2',
      // One task at a time: the volume can be attached to one host only.
      deploymentMinimumHealthyPercent: 0, deploymentMaximumPercent: 100,
      placementConstraints: task.placementConstraints,
    }, { parent: this });
    this.volumeId = volume.id;
    this.serviceName = service.name;
    this.registerOutputs({ volumeId: this.volumeId, serviceName: this.serviceName });
  }
}
