import { DEFAULT_DRIVER, HOST_ATTRIBUTE, nodeDriverOpts, nodeQualifiedId, nodeVolumeName, tagKeys } from '../../lib/node-contract.js';
import { nodeHostName } from './dns-names.js';
import { NODE_ENTRY_POINTS, nodeRouterLabels, type NodeRoutes } from '../../lib/traefik-routes.js';
import { EBS_OPTIONS, validateEbsOptions } from '../../volume-plugin/backends/ebs/ebs-options.js';
import { parseGivenOptions, resolveOptions } from '../../volume-plugin/options.js';

export { HOST_ATTRIBUTE, nodeVolumeName };

/** Container definitions and volume config for a node's one-task ECS service (docs/design.md §8). */
export interface NodeTaskArgs {
  /** The environment: part of the task family and router names, and the label Traefik is constrained to. */
  readonly environment: string;
  readonly node: string;
  readonly host: string;
  readonly cluster: string;
  readonly image: string;
  readonly port: number;
  readonly zone: string;
  readonly sizeGiB?: number;
  readonly mountPath?: string;
  /** Container port per Traefik entry point; default: the node's `port` on every entry point. */
  readonly routes?: NodeRoutes;
  /** The container's health check; none by default (ECS then judges the task by its container running). */
  readonly healthCheck?: NodeHealthCheck;
}

/** An ECS container health check (`CMD` or `CMD-SHELL` form), in seconds. */
export interface NodeHealthCheck {
  readonly command: readonly string[];
  readonly intervalSeconds?: number;
  readonly timeoutSeconds?: number;
  readonly retries?: number;
  readonly startPeriodSeconds?: number;
}

function ecsHealthCheck(node: string, h: NodeHealthCheck) {
  if (!['CMD', 'CMD-SHELL'].includes(h.command[0] ?? '') || h.command.length < 2) {
    throw new Error(`node ${node}: healthCheck.command must be ["CMD", ...args] or ["CMD-SHELL", "<shell command>"], not ${JSON.stringify(h.command)}`);
  }
  // Ranges of the ECS HealthCheck API type.
  const int = (what: string, v: number | undefined, min: number, max: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new Error(`node ${node}: healthCheck.${what} must be ${min}-${max}, not ${v}`);
    return v;
  };
  return {
    command: [...h.command],
    interval: int('intervalSeconds', h.intervalSeconds, 5, 300) ?? 30,
    timeout: int('timeoutSeconds', h.timeoutSeconds, 2, 120) ?? 5,
    retries: int('retries', h.retries, 1, 10) ?? 3,
    ...(h.startPeriodSeconds !== undefined ? { startPeriod: int('startPeriodSeconds', h.startPeriodSeconds, 0, 300) } : {}),
  };
}

/**
 * The driverOpts of a node's volume, checked by berth's own option schema and
 * EBS rules (the ones the plugin applies at Create), so a bad size fails when
 * the Pulumi program runs (`pulumi preview`), not when ECS starts the task.
 */
export function nodeVolumeDriverOpts(node: string, volume: string, sizeGiB: number): Record<string, string> {
  const opts = nodeDriverOpts({ sizeGiB });
  try {
    validateEbsOptions(volume, resolveOptions(parseGivenOptions(opts, EBS_OPTIONS), { sizeBytes: 0, fs: 'ext4' }, EBS_OPTIONS));
  } catch (err) {
    throw new Error(`node ${node}: berth would refuse its volume: ${(err as Error).message}`);
  }
  return opts;
}

/** The task family of a node: `<environment>_<cluster>_<node>` (nodeQualifiedId), so environments and clusters never share one. */
export function nodeTaskFamily(args: Pick<NodeTaskArgs, 'environment' | 'cluster' | 'node'>): string {
  return nodeQualifiedId(args.environment, args.cluster, args.node);
}

export function nodeTask(args: NodeTaskArgs) {
  const sizeGiB = args.sizeGiB ?? 20;
  const mountPath = args.mountPath ?? '/data';
  const routes: NodeRoutes = args.routes ?? Object.fromEntries(Object.keys(NODE_ENTRY_POINTS).map((ep) => [ep, args.port]));
  const ports = [...new Set(Object.values(routes).filter((p): p is number => p !== undefined))];
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
        labels: { [keys.cluster]: args.cluster, [keys.host]: args.host, [keys.environment]: args.environment },
      },
    }],
    containerDefinitions: [{
      name: args.node,
      image: args.image,
      essential: true,
      portMappings: ports.map((containerPort) => ({ containerPort, protocol: 'tcp' })),
      mountPoints: [{ sourceVolume: volume, containerPath: mountPath }],
      ...(args.healthCheck ? { healthCheck: ecsHealthCheck(args.node, args.healthCheck) } : {}),
      // Router names carry environment and cluster too: Traefik discovers every cluster's tasks in the region.
      dockerLabels: nodeRouterLabels(nodeQualifiedId(args.environment, args.cluster, args.node), nodeHostName(args.node, args.cluster, args.zone), routes, args.environment),
    }],
    placementConstraints: [{ type: 'memberOf' as const, expression: `attribute:${HOST_ATTRIBUTE} == ${args.host}` }],
  };
}
