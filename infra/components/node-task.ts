import { DEFAULT_DRIVER, HOST_ATTRIBUTE, nodeDriverOpts, nodeVolumeName, tagKeys } from '../../lib/node-contract.js';
import { validateEbsOptions } from '../../volume-plugin/backends/ebs/ebs-options.js';
import { parseGivenOptions, resolveOptions } from '../../volume-plugin/options.js';

export { HOST_ATTRIBUTE, nodeVolumeName };

/** Container definitions and volume config for a node's one-task ECS service (docs/design.md §8). */
export interface NodeTaskArgs {
  readonly node: string;
  readonly host: string;
  readonly cluster: string;
  readonly image: string;
  readonly port: number;
  readonly zone: string;
  readonly sizeGiB?: number;
  readonly mountPath?: string;
  readonly healthPath?: string;
}

/**
 * The driverOpts of a node's volume, checked by berth's own option schema and
 * EBS rules (the ones the plugin applies at Create), so a bad size fails when
 * the Pulumi program runs (`pulumi preview`), not when ECS starts the task.
 */
export function nodeVolumeDriverOpts(node: string, volume: string, sizeGiB: number): Record<string, string> {
  const opts = nodeDriverOpts({ sizeGiB });
  try {
    validateEbsOptions(volume, resolveOptions(parseGivenOptions(opts), { sizeBytes: 0, fs: 'ext4' }));
  } catch (err) {
    throw new Error(`node ${node}: berth would refuse its volume: ${(err as Error).message}`);
  }
  return opts;
}

export function nodeTask(args: NodeTaskArgs) {
  const sizeGiB = args.sizeGiB ?? 20;
  const mountPath = args.mountPath ?? '/data';
  const healthPath = args.healthPath ?? '/health';
  const volume = nodeVolumeName(args.cluster, args.node);
  const keys = tagKeys();
  return {
    // With scope shared ECS uses this `name` as the Docker volume name (amazon-ecs-agent agent/api/task/task.go):
    // it must be the node's own volume name, the one its EBS volume is tagged with.
    volumes: [{
      name: volume,
      dockerVolumeConfiguration: {
        scope: 'shared' as const,
        autoprovision: true,
        driver: DEFAULT_DRIVER,
        driverOpts: nodeVolumeDriverOpts(args.node, volume, sizeGiB),
        labels: { [keys.cluster]: args.cluster, [keys.host]: args.host },
      },
    }],
    containerDefinitions: [{
      name: args.node,
      image: args.image,
      essential: true,
      portMappings: [{ containerPort: args.port, protocol: 'tcp' }],
      mountPoints: [{ sourceVolume: volume, containerPath: mountPath }],
      healthCheck: {
        command: ['CMD-SHELL', `wget -q -O /dev/null http://127.0.0.1:${args.port}${healthPath} || exit 1`],
        interval: 15, timeout: 5, retries: 3, startPeriod: 30,
      },
      dockerLabels: {
        'traefik.enable': 'true',
        [`traefik.http.routers.${volume}.rule`]: `Host(\`${args.node}.${args.zone}\`)`,
        [`traefik.http.services.${volume}.loadbalancer.server.port`]: String(args.port),
      },
    }],
    placementConstraints: [{ type: 'memberOf' as const, expression: `attribute:${HOST_ATTRIBUTE} == ${args.host}` }],
  };
}
