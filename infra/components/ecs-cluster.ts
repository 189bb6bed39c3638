import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { tagKeys } from '../../lib/node-contract.js';
import { roleNamePrefix } from './naming.js';
import { HOST_ATTRIBUTE } from './node-task.js';
import { TRAEFIK_NETWORK_MODE } from './traefik-names.js';

/** Traefik's entry points (traefik/traefik.yml): HTTP API, TCP, WebSocket, internal (ping, metrics). */
export const TRAEFIK_PORTS = [8090, 8860, 4000, 9860] as const;

/** What Traefik's ECS provider reads; nothing else, and nothing that changes state. */
export const TRAEFIK_TASK_ACTIONS = [
  'ecs:ListClusters', 'ecs:DescribeClusters', 'ecs:ListTasks', 'ecs:DescribeTasks',
  'ecs:DescribeContainerInstances', 'ecs:DescribeTaskDefinition', 'ec2:DescribeInstances',
] as const;

export interface EcsClusterArgs {
  /** The environment: Traefik routes only node containers labelled with it (traefik/traefik.yml). */
  readonly environment: pulumi.Input<string>;
  readonly region: string;
  /** ECS cluster of the Traefik host (`<environment>-traefik-<region>`); also its task family and log group `/<clusterName>`. */
  readonly clusterName: pulumi.Input<string>;
  /** Image reference of berth's Traefik build, e.g. `<account>.dkr.ecr.<region>.amazonaws.com/<environment>/traefik:src-0123456789abcdef`. */
  readonly traefikImage: pulumi.Input<string>;
  /** Logical id of the Traefik host (its `berth.host` instance attribute). */
  readonly traefikHostId: string;
  readonly logRetentionDays?: number;
}


/**
 * The region's Traefik ECS cluster and the Traefik service, one task in bridge network mode with
 * its ports published on the host's, pinned to the Traefik host by its `berth.host` attribute,
 * with berth's certificate directories mounted (directories, not files: Traefik must see renames).
 */
export class EcsCluster extends pulumi.ComponentResource {
  readonly clusterName: pulumi.Output<string>;
  readonly clusterArn: pulumi.Output<string>;
  readonly traefikServiceName: pulumi.Output<string>;

  constructor(name: string, args: EcsClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:compute:EcsCluster', name, {}, opts);
    const parent = { parent: this };
    const cluster = new aws.ecs.Cluster(`${name}-cluster`, {
      name: args.clusterName, settings: [{ name: 'containerInsights', value: 'enabled' }], tags: { [tagKeys().environment]: args.environment },
    }, parent);
    const logGroup = new aws.cloudwatch.LogGroup(`${name}-traefik`, { name: pulumi.interpolate`/${args.clusterName}`, retentionInDays: args.logRetentionDays ?? 30 }, parent);

    const tasks = aws.iam.assumeRolePolicyForPrincipal({ Service: 'ecs-tasks.amazonaws.com' });
    const executionRole = new aws.iam.Role(`${name}-traefik-exec`, { namePrefix: roleNamePrefix(`${name}-traefik-exec`), assumeRolePolicy: tasks }, parent);
    new aws.iam.RolePolicyAttachment(`${name}-traefik-exec`, {
      role: executionRole.name, policyArn: 'arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy',
    }, parent);
    const taskRole = new aws.iam.Role(`${name}-traefik-task`, { namePrefix: roleNamePrefix(`${name}-traefik-task`), assumeRolePolicy: tasks }, parent);
    new aws.iam.RolePolicy(`${name}-traefik-task`, {
      role: taskRole.id,
      policy: JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: 'EcsDiscovery', Effect: 'Allow', Action: [...TRAEFIK_TASK_ACTIONS], Resource: '*' }] }),
    }, parent);

    const containerDefinitions = pulumi.all([args.traefikImage, logGroup.name, args.environment]).apply(([image, group, environment]) => JSON.stringify([{
      name: 'traefik',
      image,
      essential: true,
      memoryReservation: 256,
      portMappings: TRAEFIK_PORTS.map((p) => ({ containerPort: p, hostPort: p, protocol: 'tcp' })),
      // Cluster discovery is in the image's traefik.yml (autoDiscoverClusters): with a static
      // file present Traefik ignores TRAEFIK_* variables. The ECS provider takes its region from here;
      // the image's entrypoint fills BERTH_ENVIRONMENT into the provider's constraint (traefik/entrypoint.sh).
      environment: [{ name: 'AWS_REGION', value: args.region }, { name: 'BERTH_ENVIRONMENT', value: environment }],
      mountPoints: [
        { sourceVolume: 'certs', containerPath: '/etc/traefik/certs', readOnly: true },
        { sourceVolume: 'dynamic', containerPath: '/etc/traefik/dynamic', readOnly: true },
      ],
      healthCheck: { command: ['CMD', 'traefik', 'healthcheck', '--ping'], interval: 10, timeout: 3, retries: 3, startPeriod: 10 },
      logConfiguration: { logDriver: 'awslogs', options: { 'awslogs-group': group, 'awslogs-region': args.region, 'awslogs-stream-prefix': 'traefik' } },
    }]));
    const taskDefinition = new aws.ecs.TaskDefinition(`${name}-traefik`, {
      family: args.clusterName,
      networkMode: TRAEFIK_NETWORK_MODE,
      requiresCompatibilities: ['EC2'],
      executionRoleArn: executionRole.arn,
      taskRoleArn: taskRole.arn,
      containerDefinitions,
      volumes: [
        { name: 'certs', hostPath: '/etc/traefik/certs' },
        { name: 'dynamic', hostPath: '/etc/traefik/dynamic' },
      ],
    }, parent);
    const service = new aws.ecs.Service(`${name}-traefik`, {
      cluster: cluster.arn,
      taskDefinition: taskDefinition.arn,
      desiredCount: 1,
      launchType: 'EC2',
      // Host ports: the old task must stop before the new one can bind them.
      deploymentMinimumHealthyPercent: 0,
      deploymentMaximumPercent: 100,
      placementConstraints: [{ type: 'memberOf', expression: `attribute:${HOST_ATTRIBUTE} == ${args.traefikHostId}` }],
    }, parent);
    this.clusterName = cluster.name;
    this.clusterArn = cluster.arn;
    this.traefikServiceName = service.name;
    this.registerOutputs({ clusterName: this.clusterName, clusterArn: this.clusterArn, traefikServiceName: this.traefikServiceName });
  }
}
