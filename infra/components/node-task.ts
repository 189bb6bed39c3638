/** Container definitions and volume config for a node's one-task ECS service (DESIGN.md §8). */
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

/** ECS instance attribute the Host userdata sets; the service is pinned to it. */
export const HOST_ATTRIBUTE = 'berth.host';

export function nodeVolumeName(cluster: string, node: string): string {
  return `${cluster}-${node}`;
}

export function nodeTask(args: NodeTaskArgs) {
  const sizeGiB = args.sizeGiB ?? 20;
  const mountPath = args.mountPath ?? '/data';
  const healthPath = args.healthPath ?? '/health';
  const volume = nodeVolumeName(args.cluster, args.node);
  return {
    volumes: [{
      name: 'data',
      dockerVolumeConfiguration: {
        scope: 'shared' as const,
        autoprovision: true,
        driver: 'berth',
        driverOpts: { size: `${sizeGiB}G`, name: volume },
        labels: { 'berth:cluster': args.cluster, 'berth:host': args.host },
      },
    }],
    containerDefinitions: [{
      name: args.node,
      image: args.image,
      essential: true,
      portMappings: [{ containerPort: args.port, protocol: 'tcp' }],
      mountPoints: [{ sourceVolume: 'data', containerPath: mountPath }],
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
