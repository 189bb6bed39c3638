import { Counter, Histogram, type Registry } from 'prom-client';
import { codeOf, isThrottled } from './ec2-errors.js';
import { EC2_PORT_METHODS, ec2ActionOf, type Ec2Port } from './ec2-port.js';

/**
 * The EC2 port, measured: each call's duration, its errors by EC2 code and its throttles, per EC2
 * action, named as aws-ebs-csi-driver names the same measures (docs/metrics.md:
 * aws_ebs_csi_api_request_duration_seconds, …_errors_total, …_throttles_total) under berth's prefix.
 * One port call is one SDK `send`, the SDK's retries included: a call that ended throttled counts as
 * a throttle (not an error); the attempts the SDK made past the first are counted in
 * …_retries_total (from the answer's or the error's `$metadata.attempts`). The SDK does not retry
 * refusals of the mutations, reads and tags the facade makes (sdk-ec2.ts): the facade does, and
 * each refused try is one throttle here.
 */
export function meteredEc2(port: Ec2Port, registry: Registry, now: () => number = () => performance.now()): Ec2Port {
  const duration = new Histogram({
    name: 'berth_ec2_api_request_duration_seconds',
    help: 'Duration of EC2 API calls by action, the SDK\'s retries included',
    labelNames: ['request'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const errors = new Counter({ name: 'berth_ec2_api_request_errors_total', help: 'EC2 API calls that failed, by action and EC2 error code (throttles apart)', labelNames: ['request', 'error'], registers: [registry] });
  const throttles = new Counter({ name: 'berth_ec2_api_request_throttles_total', help: 'EC2 API calls refused for throttling (RequestLimitExceeded) that reached berth, by action', labelNames: ['request'], registers: [registry] });
  const retries = new Counter({ name: 'berth_ec2_api_request_retries_total', help: 'Attempts the SDK made past the first, by action', labelNames: ['request'], registers: [registry] });
  const attemptsOf = (x: unknown) => (x as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts ?? 1;

  return Object.fromEntries(
    EC2_PORT_METHODS.map((method) => {
      const request = ec2ActionOf(method);
      const call = port[method] as (input: unknown, signal: AbortSignal) => Promise<unknown>;
      return [
        method,
        async (input: unknown, signal: AbortSignal) => {
          const started = now();
          try {
            const output = await call.call(port, input, signal);
            if (attemptsOf(output) > 1) retries.inc({ request }, attemptsOf(output) - 1);
            return output;
          } catch (err) {
            if (attemptsOf(err) > 1) retries.inc({ request }, attemptsOf(err) - 1);
            if (isThrottled(err)) throttles.inc({ request });
            else errors.inc({ request, error: codeOf(err) || 'Unknown' });
            throw err;
          } finally {
            duration.observe({ request }, (now() - started) / 1000);
          }
        },
      ];
    }),
  ) as unknown as Ec2Port;
}
