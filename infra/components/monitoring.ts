import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { clusterDashboardBody, METRICS_NAMESPACE, metricsLogGroupName, type AlarmSpec } from './monitoring-specs.js';

export * from './monitoring-specs.js';

export interface MonitoringArgs {
  readonly environment: pulumi.Input<string>;
  readonly cluster: string;
  readonly region: string;
  readonly alarms: readonly AlarmSpec[];
  /** Declare the cluster's CloudWatch dashboard (node clusters); the Traefik host has its alarm only. Default true. */
  readonly dashboard?: boolean;
  /** SNS topic ARNs the alarms notify; none by default. */
  readonly alarmActions?: pulumi.Input<string>[];
}

/** A cluster's metrics log group, dashboard and alarms. */
export class Monitoring extends pulumi.ComponentResource {
  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:monitoring:Monitoring', name, {}, opts);
    const parent = { parent: this };
    // The EMF log events are only the carrier of the metrics: one day is enough.
    const env = pulumi.output(args.environment);
    new aws.cloudwatch.LogGroup(`${name}-metrics`, { name: env.apply((e) => metricsLogGroupName(e, args.cluster)), retentionInDays: 1 }, parent);
    if (args.dashboard ?? true) {
      new aws.cloudwatch.Dashboard(`${name}-dashboard`, {
        dashboardName: pulumi.interpolate`${env}-berth-${args.cluster}`,
        dashboardBody: env.apply((e) => clusterDashboardBody(e, args.cluster, args.region)),
      }, parent);
    }
    for (const a of args.alarms) {
      new aws.cloudwatch.MetricAlarm(`${name}-${a.id}`, {
        name: pulumi.interpolate`${env}-berth-${args.cluster}-${a.id}`,
        namespace: METRICS_NAMESPACE,
        metricName: a.metric,
        dimensions: { environment: env, cluster: args.cluster },
        statistic: a.statistic,
        comparisonOperator: a.comparison,
        threshold: a.threshold,
        period: a.periodSeconds,
        evaluationPeriods: a.evaluationPeriods,
        treatMissingData: a.missing,
        alarmDescription: a.description,
        ...(args.alarmActions ? { alarmActions: args.alarmActions, okActions: args.alarmActions } : {}),
      }, parent);
    }
    this.registerOutputs({});
  }
}
