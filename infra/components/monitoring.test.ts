import { describe, expect, it } from 'vitest';
import { CLOUDWATCH_SERIES, cloudWatchAgentConfig, cloudWatchAgentStatement, clusterAlarms, clusterDashboardBody, traefikAlarms } from './monitoring-specs.js';

describe('CloudWatch side of the metrics (docs/operations.md, "Watch the fleet")', () => {
  const alarms = [...clusterAlarms('shop'), ...traefikAlarms('eu-west-1')];

  it('every alarm and dashboard widget reads a series the CloudWatch agent publishes (else it has no data)', () => {
    const published = new Set<string>(CLOUDWATCH_SERIES);
    expect(alarms.filter((a) => !published.has(a.metric)).map((a) => a.id)).toEqual([]);
    const body = JSON.parse(clusterDashboardBody('prod', 'shop', 'eu-west-1')) as { widgets: { properties: { metrics: unknown[][] } }[] };
    for (const m of body.widgets.flatMap((w) => w.properties.metrics)) {
      expect(published.has(String(m[1]))).toBe(true);
      expect(m.slice(2, 6)).toEqual(['environment', 'prod', 'cluster', 'shop']);
    }
  });

  it('counters are alarmed on the sum of their deltas (the agent sends a counter as its delta), gauges on their extreme', () => {
    for (const a of alarms) {
      if (a.metric.endsWith('_total')) expect(a.statistic).toBe('Sum');
      else expect(['Minimum', 'Maximum']).toContain(a.statistic);
    }
  });

  it('the agent\'s configuration scrapes the local health endpoint, labels the series as the alarms\' dimensions, and writes only to the cluster\'s group', () => {
    const { agentJson, prometheusYaml } = cloudWatchAgentConfig({ environment: 'prod', cluster: 'shop', hostId: 'h1', healthAddr: '127.0.0.1:9470', prometheusConfigPath: '/etc/berth/prometheus.yml' });
    const prom = (JSON.parse(agentJson) as { logs: { metrics_collected: { prometheus: { log_group_name: string; emf_processor: { metric_declaration: { dimensions: string[][]; metric_selectors: string[] }[] } } } } }).logs.metrics_collected.prometheus;
    expect(prom.log_group_name).toBe('/prod/metrics/shop');
    expect(prom.emf_processor.metric_declaration[0]!.dimensions).toEqual([['environment', 'cluster']]);
    expect(prom.emf_processor.metric_declaration[0]!.metric_selectors).toEqual(CLOUDWATCH_SERIES.map((s) => `^${s}$`));
    expect(prometheusYaml).toContain("- targets: ['127.0.0.1:9470']");
    expect(prometheusYaml).toMatch(/environment: 'prod'\n\s+cluster: 'shop'\n\s+host: 'h1'/);
    expect(cloudWatchAgentStatement({ region: 'eu-west-1', accountId: '123456789012', environment: 'prod', cluster: 'shop' }).Resource).toBe('arn:aws:logs:eu-west-1:123456789012:log-group:/prod/metrics/shop:*');
  });
});
