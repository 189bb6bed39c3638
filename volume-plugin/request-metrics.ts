import { Counter, type Metric, type Registry } from 'prom-client';

/** Upper bounds (seconds) of berth_plugin_request_seconds. */
const BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 120];

/**
 * Requests and latency per plugin endpoint, recorded in plain arrays and read
 * by prom-client only when /metrics is scraped. prom-client's own Counter and
 * Histogram hash their label object on every inc/observe, about a third of
 * the plugin's work per Get under --lite-mode (bench/plugin-hot-path.ts).
 * Exposed as berth_plugin_requests_total{endpoint,outcome} and the histogram
 * berth_plugin_request_seconds{endpoint}, as before.
 */
export class RequestMetrics {
  private readonly ok: Float64Array;
  private readonly failed: Float64Array;
  private readonly sums: Float64Array;
  /** Per endpoint, BUCKETS.length + 1 counts (the last one: above every bound). */
  private readonly buckets: Float64Array;

  constructor(
    private readonly endpoints: readonly string[],
    registry: Registry | undefined,
  ) {
    const n = endpoints.length;
    this.ok = new Float64Array(n);
    this.failed = new Float64Array(n);
    this.sums = new Float64Array(n);
    this.buckets = new Float64Array(n * (BUCKETS.length + 1));
    if (!registry) return;
    const { ok, failed } = this;
    new Counter({
      name: 'berth_plugin_requests_total',
      help: 'Docker volume plugin requests by endpoint and outcome',
      labelNames: ['endpoint', 'outcome'] as const,
      registers: [registry],
      collect() {
        this.reset();
        endpoints.forEach((endpoint, i) => {
          if (ok[i]! > 0) this.inc({ endpoint, outcome: 'ok' }, ok[i]);
          if (failed[i]! > 0) this.inc({ endpoint, outcome: 'error' }, failed[i]);
        });
      },
    });
    registry.registerMetric(this.histogram() as unknown as Metric);
  }

  /** One request to endpoints[endpoint] that took `seconds`. */
  record(endpoint: number, ok: boolean, seconds: number): void {
    if (ok) this.ok[endpoint]!++;
    else this.failed[endpoint]!++;
    this.sums[endpoint]! += seconds;
    let b = 0;
    while (b < BUCKETS.length && seconds > BUCKETS[b]!) b++;
    this.buckets[endpoint * (BUCKETS.length + 1) + b]!++;
  }

  /**
   * berth_plugin_request_seconds in the shape prom-client's Registry reads
   * from any metric (name, help, type, get, reset), with the values its own
   * Histogram would give: cumulative buckets, +Inf, sum and count per label set.
   */
  private histogram() {
    const name = 'berth_plugin_request_seconds';
    const get = async () => {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
      this.endpoints.forEach((endpoint, i) => {
        const count = this.ok[i]! + this.failed[i]!;
        if (count === 0) return;
        const base = i * (BUCKETS.length + 1);
        let acc = 0;
        BUCKETS.forEach((le, b) => {
          acc += this.buckets[base + b]!;
          values.push({ metricName: `${name}_bucket`, labels: { le, endpoint }, value: acc });
        });
        values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', endpoint }, value: count });
        values.push({ metricName: `${name}_sum`, labels: { endpoint }, value: this.sums[i]! });
        values.push({ metricName: `${name}_count`, labels: { endpoint }, value: count });
      });
      return { name, help: 'Docker volume plugin request latency by endpoint', type: 'histogram', values, aggregator: 'sum' };
    };
    const reset = () => {
      for (const a of [this.ok, this.failed, this.sums, this.buckets]) a.fill(0);
    };
    return { name, get, reset };
  }
}
