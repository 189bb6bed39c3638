/**
 * What berth's hosts tell CloudWatch, and what CloudWatch tells operators (docs/operations.md,
 * "Watch the fleet"; the choice of route in docs/design.md §8).
 *
 * Route: the CloudWatch agent on each host scrapes berth's /metrics (Prometheus text) once a
 * minute and writes the few series below as embedded metric format (EMF) log events into one log
 * group per cluster; CloudWatch turns them into metrics. Least privilege: the host role may only
 * write log events to that one group (no cloudwatch:PutMetricData, which cannot be scoped to a
 * resource); cheapest: the series are published with the environment and cluster as their only
 * dimensions (one custom metric per series per cluster, not per host), the EMF log events are kept one day, and
 * histograms stay on the Prometheus side (Grafana, docs/dashboards/berth.grafana.json): the agent
 * drops histograms and sends a counter as its delta since the last scrape (CloudWatch User Guide,
 * "Prometheus metric type conversion by the CloudWatch agent"), so an alarm sums a counter's deltas. Which host
 * is not ready is what the readiness tags, /readyz and the cluster API's status say.
 */
export const METRICS_NAMESPACE = 'berth';

/** The series the CloudWatch agent publishes (its metric_selectors); each one the agent exports (test/build.test.ts). */
export const CLOUDWATCH_SERIES = [
  'berth_volumes_ready',
  'berth_reconcile_volume_errors',
  'berth_ec2_api_request_throttles_total',
  'berth_ebs_attachment_slots_used',
  'berth_ebs_attachment_limit_refusals_total',
  'berth_cert_expires_in_seconds',
  // Zone moves under way (volume-plugin/backends/ebs/move-metrics.ts).
  'berth_volume_moves_in_progress',
] as const;

export type CloudWatchSeries = (typeof CLOUDWATCH_SERIES)[number];

/** The EMF log group of a cluster's hosts; names carry the environment (a second one can share the account and region). */
export const metricsLogGroupName = (environment: string, cluster: string) => `/${environment}/metrics/${cluster}`;

/** The dimensions every published series carries: the environment and the cluster (scrape labels). */
export const METRIC_DIMENSIONS = ['environment', 'cluster'] as const;

export interface AlarmSpec {
  readonly id: string;
  readonly metric: CloudWatchSeries;
  readonly statistic: 'Minimum' | 'Maximum' | 'Sum';
  readonly comparison: 'LessThanThreshold' | 'GreaterThanThreshold';
  readonly threshold: number;
  readonly periodSeconds: number;
  readonly evaluationPeriods: number;
  /** What an operator does when it fires (also in docs/operations.md). */
  readonly description: string;
  readonly missing: 'breaching' | 'notBreaching' | 'missing';
}

/** A cluster's alarms: readiness, EC2 throttling, an attach refused for the limit, a move stuck. */
export function clusterAlarms(cluster: string): AlarmSpec[] {
  return [
    {
      id: 'not-ready', metric: 'berth_volumes_ready', statistic: 'Minimum', comparison: 'LessThanThreshold', threshold: 1, periodSeconds: 300, evaluationPeriods: 3,
      description: `A host of cluster ${cluster} has had a volume tagged to it not mounted for 15 minutes: read its /readyz or the cluster API's status for which and why (docs/operations.md, "Watch the fleet")`,
      // No data: every host's agent is down, or none publishes: as bad as not ready.
      missing: 'breaching',
    },
    {
      id: 'ec2-throttled', metric: 'berth_ec2_api_request_throttles_total', statistic: 'Sum', comparison: 'GreaterThanThreshold', threshold: 0, periodSeconds: 300, evaluationPeriods: 3,
      description: `EC2 refused calls of cluster ${cluster}'s hosts for throttling in each of the last 15 minutes (every refused try counts; berth retries them, paced): the account's EC2 API budget is spent. Expected while a whole zone's hosts are replaced; otherwise, who else calls EC2 in this region?`,
      missing: 'notBreaching',
    },
    {
      id: 'attachment-limit', metric: 'berth_ebs_attachment_limit_refusals_total', statistic: 'Sum', comparison: 'GreaterThanThreshold', threshold: 0, periodSeconds: 300, evaluationPeriods: 1,
      description: `A host of cluster ${cluster} refused to attach a volume: its instance type has no attachment slot left; move nodes to another host or a type with more EBS slots`,
      missing: 'notBreaching',
    },
    {
      id: 'move-stuck', metric: 'berth_volume_moves_in_progress', statistic: 'Minimum', comparison: 'GreaterThanThreshold', threshold: 0, periodSeconds: 300, evaluationPeriods: 6,
      description: `A volume move of cluster ${cluster} has been under way for 30 minutes: read \`berth inspect\` of the volume for its step (docs/operations.md)`,
      missing: 'notBreaching',
    },
  ];
}

/** A region's Traefik host: its served certificate expires within 14 days (the renewer renews 30 days before). */
export function traefikAlarms(region: string): AlarmSpec[] {
  return [
    {
      id: 'certificate-expiring', metric: 'berth_cert_expires_in_seconds', statistic: 'Minimum', comparison: 'LessThanThreshold', threshold: 14 * 86_400, periodSeconds: 3600, evaluationPeriods: 1,
      description: `The TLS certificate Traefik serves in ${region} expires within 14 days (or none is served): check the renewer Lambda's log and the certificate refresher's (docs/operations.md)`,
      missing: 'breaching',
    },
  ];
}

/** The CloudWatch dashboard body of a cluster (its widgets name CLOUDWATCH_SERIES only). */
export function clusterDashboardBody(environment: string, cluster: string, region: string): string {
  const metric = (name: CloudWatchSeries, stat: string) => [METRICS_NAMESPACE, name, 'environment', environment, 'cluster', cluster, { stat }];
  const widget = (title: string, metrics: unknown[][], x: number, y: number) => ({
    type: 'metric', x, y, width: 12, height: 6, properties: { title, region, period: 300, view: 'timeSeries', metrics },
  });
  return JSON.stringify({
    widgets: [
      widget('Ready (minimum over hosts: 1 = every volume mounted or idle)', [metric('berth_volumes_ready', 'Minimum')], 0, 0),
      widget('Volumes the last reconcile could not make ready', [metric('berth_reconcile_volume_errors', 'Maximum')], 12, 0),
      widget('EC2 calls refused for throttling', [metric('berth_ec2_api_request_throttles_total', 'Sum')], 0, 6),
      widget('Attachment slots used (busiest host) and attaches refused for the limit', [metric('berth_ebs_attachment_slots_used', 'Maximum'), metric('berth_ebs_attachment_limit_refusals_total', 'Sum')], 12, 6),
      widget('Volume moves in progress', [metric('berth_volume_moves_in_progress', 'Maximum')], 0, 12),
    ],
  });
}

/**
 * The CloudWatch agent's configuration on a host (userdata/host-prep.sh writes it next to its own
 * config as etc/berth-prometheus.json, and the Prometheus scrape file it names, and appends it).
 * `healthAddr`: BERTH_HEALTH_ADDR (the agent runs as root, which /metrics requires).
 */
export function cloudWatchAgentConfig(p: { environment: string; cluster: string; hostId: string; healthAddr: string; prometheusConfigPath: string }): { agentJson: string; prometheusYaml: string } {
  const agent = {
    agent: { metrics_collection_interval: 60, run_as_user: 'root' },
    logs: {
      metrics_collected: {
        prometheus: {
          log_group_name: metricsLogGroupName(p.environment, p.cluster),
          prometheus_config_path: p.prometheusConfigPath,
          emf_processor: {
            metric_namespace: METRICS_NAMESPACE,
            metric_declaration: [
              { source_labels: ['job'], label_matcher: '^berth$', dimensions: [[...METRIC_DIMENSIONS]], metric_selectors: CLOUDWATCH_SERIES.map((s) => `^${s}$`) },
            ],
          },
        },
      },
    },
  };
  const prometheusYaml = [
    'global:',
    '  scrape_interval: 1m',
    '  scrape_timeout: 10s',
    'scrape_configs:',
    '  - job_name: berth',
    '    static_configs:',
    `      - targets: ['${p.healthAddr}']`,
    '        labels:',
    `          environment: '${p.environment}'`,
    `          cluster: '${p.cluster}'`,
    `          host: '${p.hostId}'`,
    '',
  ].join('\n');
  return { agentJson: JSON.stringify(agent, null, 2), prometheusYaml };
}

/** The host role's statement for the CloudWatch agent: log events into the cluster's metrics group, nothing else. */
export function cloudWatchAgentStatement(p: { region: string; accountId: string; environment: string; cluster: string }) {
  return {
    Sid: 'MetricsAsEmfLogEvents',
    Effect: 'Allow' as const,
    Action: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
    Resource: `arn:aws:logs:${p.region}:${p.accountId}:log-group:${metricsLogGroupName(p.environment, p.cluster)}:*`,
  };
}
