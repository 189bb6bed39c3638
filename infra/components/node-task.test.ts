import { describe, expect, it } from 'vitest';
import { nodeVolumeName, tagKeys } from '../../lib/node-contract.js';
import { EBS_OPTIONS, validateEbsOptions } from '../../volume-plugin/backends/ebs/ebs-options.js';
import { parseGivenOptions, resolveOptions } from '../../volume-plugin/options.js';
import { parseRouterLabels, routerMatches, routerProblems } from '../../lib/traefik-routes.js';
import { nodeTask, nodeTaskFamily } from './node-task.js';

const args = { environment: 'prod', node: 'n1', host: 'shop-h1', cluster: 'shop', image: 'app:1', port: 8080, zone: 'example.com', sizeGiB: 50 };

describe('nodeTask', () => {
  const t = nodeTask(args);
  it('mounts a shared, autoprovisioned berth volume named after the cluster and node', () => {
    expect(t.volumes).toEqual([{
      name: 'shop-n1',
      dockerVolumeConfiguration: {
        scope: 'shared', autoprovision: true, driver: 'berth', driverOpts: { size: '50GiB', type: 'gp3' },
        labels: { 'berth:cluster': 'shop', 'berth:host': 'shop-h1', 'berth:environment': 'prod' },
      },
    }]);
    expect(t.containerDefinitions[0]!.mountPoints).toEqual([{ sourceVolume: 'shop-n1', containerPath: '/data' }]);
  });
  it('gives each node of a host its own Docker volume, equal to its EBS volume tag', () => {
    const names = ['n1', 'n2'].map((node) => nodeTask({ ...args, node }).volumes[0]!.name);
    expect(new Set(names).size).toBe(2);
    expect(names[0]).toBe(nodeVolumeName('shop', 'n1'));
    expect(tagKeys().volume).toBe('berth:volume');
  });
  it('emits only driver options the plugin accepts, for every size infra allows', () => {
    for (const sizeGiB of [1, 20, 100, 16_384, 65_536]) {
      const conf = nodeTask({ ...args, sizeGiB }).volumes[0]!.dockerVolumeConfiguration;
      const options = resolveOptions(parseGivenOptions(conf.driverOpts, EBS_OPTIONS), { sizeBytes: 2 ** 30, fs: 'ext4' }, EBS_OPTIONS);
      expect(() => validateEbsOptions(nodeVolumeName('shop', 'n1'), options)).not.toThrow();
      expect(options.sizeBytes).toBe(sizeGiB * 2 ** 30);
    }
  });
  it('refuses a size berth would refuse, with berth\'s reason, before anything is declared', () => {
    expect(() => nodeTask({ ...args, sizeGiB: 1.5 })).toThrow(/node n1: berth would refuse its volume: .*not a whole number of GiB/);
    expect(() => nodeTask({ ...args, sizeGiB: 0 })).toThrow(/node n1: berth would refuse its volume/);
    expect(() => nodeTask({ ...args, sizeGiB: 70_000 })).toThrow(/outside 1–65536 GiB for gp3/);
  });
  it('pins the task to its host attribute and nothing else', () => {
    expect(t.placementConstraints).toEqual([{ type: 'memberOf', expression: 'attribute:berth.host == shop-h1' }]);
  });
  it('routes the node\'s cluster-scoped host name over TLS on every entry point, by SNI for TCP (docs/traefik-labels.md)', () => {
    const labels = t.containerDefinitions[0]!.dockerLabels;
    expect(routerProblems(labels)).toEqual([]);
    const routers = parseRouterLabels(labels);
    expect(routers.map((r) => [r.kind, r.name, r.entrypoints, r.port])).toEqual([
      ['http', 'prod_shop_n1-api', ['http-api'], '8080'], ['http', 'prod_shop_n1-ws', ['websocket'], '8080'], ['tcp', 'prod_shop_n1-tcp', ['tcp'], '8080'],
    ]);
    expect(routers.find((r) => r.kind === 'tcp')!.matcher!.fn).toBe('HostSNIRegexp');
    for (const r of routers) {
      expect(routerMatches(r, 'n1-shop.example.com'), r.name).toBe(true);
      expect(routerMatches(r, 'n1-other.example.com'), r.name).toBe(false);
      expect(routerMatches(r, 'n1-shopXexample.com'), r.name).toBe(false);
    }
  });
  it('routes only the entry points a node asks for, each to its own port', () => {
    const c = nodeTask({ ...args, routes: { tcp: 5432 } }).containerDefinitions[0]!;
    expect(routerProblems(c.dockerLabels)).toEqual([]);
    expect(parseRouterLabels(c.dockerLabels).map((r) => `${r.kind}:${r.entrypoints.join()}:${r.port}`)).toEqual(['tcp:tcp:5432']);
    expect(c.portMappings).toEqual([{ containerPort: 5432, protocol: 'tcp' }]);
    expect(() => nodeTask({ ...args, routes: { tcp: 70_000 } })).toThrow(/route tcp: port must be 1-65535/);
  });
  it('labels the container with its environment and names routers and family by environment, cluster and node', () => {
    const labels = t.containerDefinitions[0]!.dockerLabels;
    expect(labels['berth:environment']).toBe('prod');
    const staging = nodeTask({ ...args, environment: 'staging' }).containerDefinitions[0]!.dockerLabels;
    const names = (l: Record<string, string>) => parseRouterLabels(l).map((r) => r.name);
    expect(names(staging).filter((n) => names(labels).includes(n))).toEqual([]);
    expect(nodeTaskFamily(args)).toBe('prod_shop_n1');
    // ECS: a family is up to 255 letters, digits, hyphens and underscores; the longest names fit.
    const longest = nodeTaskFamily({ environment: 'e'.repeat(20), cluster: 'c'.repeat(63), node: 'n'.repeat(63) });
    expect(longest).toMatch(/^[A-Za-z0-9_-]{1,255}$/);
  });
  it('has no container health check unless the node sets one', () => {
    expect(t.containerDefinitions[0]).not.toHaveProperty('healthCheck');
    const c = nodeTask({ ...args, image: 'postgres:16', healthCheck: { command: ['CMD', 'pg_isready', '-U', 'postgres'], startPeriodSeconds: 60 } }).containerDefinitions[0]!;
    expect(c.healthCheck).toEqual({ command: ['CMD', 'pg_isready', '-U', 'postgres'], interval: 30, timeout: 5, retries: 3, startPeriod: 60 });
    expect(() => nodeTask({ ...args, healthCheck: { command: ['pg_isready'] } })).toThrow(/healthCheck.command must be \["CMD"/);
    expect(() => nodeTask({ ...args, healthCheck: { command: ['CMD', 'true'], intervalSeconds: 1 } })).toThrow(/intervalSeconds must be 5-300/);
  });
});
