import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CLOUDWATCH_SERIES, clusterAlarms, clusterDashboardBody, traefikAlarms } from '../../infra/components/monitoring-specs.js';

/**
 * The metric names the dashboards and alarms name, and the names an agent's /metrics exports, so
 * a test can hold one against the other (docs/operations.md, "Watch the fleet").
 */

const NAME = /\bberth_[a-z0-9_]+/g;

/** Every berth_* name in the Grafana dashboard's queries (panels' targets and template variables). */
export function grafanaMetricNames(file = fileURLToPath(new URL('../../docs/dashboards/berth.grafana.json', import.meta.url))): Set<string> {
  const dash = JSON.parse(readFileSync(file, 'utf8')) as { panels: { targets?: { expr: string }[] }[]; templating: { list: { query?: string }[] } };
  const exprs = [...dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)), ...dash.templating.list.map((v) => v.query ?? '')];
  return new Set(exprs.flatMap((e) => e.match(NAME) ?? []));
}

/** Every metric the CloudWatch side names: the agent's published series, the alarms, the dashboard's widgets. */
export function cloudWatchMetricNames(): Set<string> {
  const body = JSON.parse(clusterDashboardBody('prod', 'c', 'eu-west-1')) as { widgets: { properties: { metrics: unknown[][] } }[] };
  return new Set<string>([
    ...CLOUDWATCH_SERIES,
    ...[...clusterAlarms('c'), ...traefikAlarms('eu-west-1')].map((a) => a.metric),
    ...body.widgets.flatMap((w) => w.properties.metrics.map((m) => String(m[1]))),
  ]);
}

/** Metric families of a Prometheus text exposition, by name, with their type (from `# TYPE`). */
export function exportedFamilies(exposition: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!);
  return out;
}

/** Whether a name a query uses is exported: a family, or a histogram's _bucket/_sum/_count series. */
export function isExported(name: string, families: ReadonlyMap<string, string>): boolean {
  if (families.has(name)) return true;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && (families.get(base) === 'histogram' || families.get(base) === 'summary');
}

/**
 * Names the dashboards use that other helpers' branches add (issue 22 items 1 and 3), with who
 * adds them. The test fails when one of them is exported, so this list shrinks as they land.
 */
export const PENDING_METRICS: Readonly<Record<string, string>> = {};
