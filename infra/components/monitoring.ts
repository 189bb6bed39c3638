import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { clusterDashboardBody, METRICS_NAMESPACE, metricsLogGroupName, type AlarmSpec } from './monitoring-specs.js';

export * from './monitoring-specs.js';

export interface MonitoringArgs {
  readonly cluster: string;
  readonly region: string;
  readonly alarms: readonly AlarmSpec[];
  /** Declare the cluster's EMF log group and dashboard (node clusters); the Traefik host's cluster only alarms. */
  readonly dashboard?: boolean;
  /** SNS topic ARNs the alarms notify; none by default. */
  readonly alarmActions?: pulumi.Input<string>[];
}

/** A cluster's metrics log group, dashboard and alarms. */
export class Monitoring extends pulumi.ComponentResource {
  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:monitoring:Monitoring', name, {}, opts);
    const parent = { parent: this };
    if (args.dashboard ?? true) {
      new aws.cloudwatch.LogGroup(`${name}-metrics`, { name: metricsLogGroupName(args.cluster), retentionInDays: 1 }, parent);
      new aws.cloudwatch.Dashboard(`${name}-dashboard`, { dashboardName: `berth-${args.cluster}`, dashboardBody: clusterDashboardBody(args.cluster, args.region) }, parent);
    }
    for (const a of args.alarms) {
      new aws.cloudwatch.MetricAlarm(`${name}-${a.id}`, {
        name: `berth-${args.cluster}-${a.id}`,
        namespace: METRICS_NAMESPACE,
        metricName: a.metric,
        dimensions: { cluster: args.cluster },
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
