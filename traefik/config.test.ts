import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigSchema } from '../agent/config.js';
import { environmentConstraint, environmentLabel, parseRouterLabels, routerMatches, routerProblems } from '../lib/traefik-routes.js';
import { traefikConstraintAdmits } from '../test/helpers/traefik-constraints.js';

const here = import.meta.dirname;
const yaml = (f: string) => parse(readFileSync(join(here, f), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const staticConf = yaml('traefik.yml');

describe('Traefik static configuration', () => {
  it('has no tls section (Traefik ignores certificates there)', () => {
    expect(Object.keys(staticConf)).not.toContain('tls');
    expect(JSON.stringify(staticConf)).not.toMatch(/certFile|keyFile/);
  });

  it('listens on the ports of docs/design.md §7: API 8090, TCP 8860, WebSocket 4000, internal 9860', () => {
    const ports = Object.fromEntries(Object.entries(staticConf.entryPoints as Record<string, { address: string }>).map(([k, v]) => [k, v.address]));
    expect(ports).toEqual({ 'http-api': ':8090', tcp: ':8860', websocket: ':4000', internal: ':9860' });
    expect(staticConf.ping.entryPoint).toBe('internal');
    expect(staticConf.metrics.prometheus.entryPoint).toBe('internal');
  });

  it('routes only labelled ECS tasks and watches the dynamic directory berth writes into', () => {
    expect(staticConf.providers.ecs.exposedByDefault).toBe(false);
    // One ECS cluster per berth cluster (infra/): Traefik must discover them all, and only this file can say so.
    expect(staticConf.providers.ecs.autoDiscoverClusters).toBe(true);
    expect(staticConf.providers.file).toEqual({ directory: '/etc/traefik/dynamic', watch: true });
    const berthDefault = ConfigSchema.shape.BERTH_CERT_DYNAMIC_FILE.parse(undefined);
    expect(dirname(berthDefault)).toBe(staticConf.providers.file.directory);
    const certDir = ConfigSchema.shape.BERTH_CERT_DIR.parse(undefined);
    expect(certDir.startsWith(staticConf.providers.file.directory)).toBe(false); // key and cert writes must not trigger reloads
  });
});

describe('Traefik routes only its own environment', () => {
  /** Runs traefik/entrypoint.sh with a stand-in `traefik` that records its arguments and the file they name. */
  function entrypoint(environment: string | undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'berth-traefik-'));
    try {
      writeFileSync(join(dir, 'traefik'), `#!/bin/sh\nprintf '%s\\n' "$@" >"${dir}/args"\ncp "\${1#--configfile=}" "${dir}/seen.yml"\n`);
      chmodSync(join(dir, 'traefik'), 0o755);
      const env: Record<string, string> = {
        PATH: `${dir}:/usr/bin:/bin`, BERTH_TRAEFIK_TEMPLATE: join(here, 'traefik.yml'), BERTH_TRAEFIK_CONFIG: join(dir, 'traefik.yml'),
        ...(environment !== undefined ? { BERTH_ENVIRONMENT: environment } : {}),
      };
      const r = spawnSync('sh', [join(here, 'entrypoint.sh')], { env, encoding: 'utf8' });
      const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : undefined);
      return { status: r.status, stderr: r.stderr, args: read('args'), config: read('seen.yml') };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('fills the environment into the ECS provider constraint and starts Traefik on that file', () => {
    const r = entrypoint('prod');
    expect(r.status).toBe(0);
    expect(r.args).toMatch(/^--configfile=.*traefik\.yml\n$/);
    const conf = parse(r.config!) as typeof staticConf;
    expect(conf.providers.ecs.constraints).toBe(environmentConstraint('prod'));
    // Everything else is the shipped file.
    expect({ ...conf, providers: { ...conf.providers, ecs: { ...conf.providers.ecs, constraints: undefined } } })
      .toEqual({ ...staticConf, providers: { ...staticConf.providers, ecs: { ...staticConf.providers.ecs, constraints: undefined } } });
  });

  it('refuses to start without an environment, or with one that could rewrite the file, rather than route every environment', () => {
    for (const bad of [undefined, '', 'Prod', 'a/b', 'x`, `y', 'prod\nfoo']) {
      const r = entrypoint(bad);
      expect(r.status, String(bad)).toBe(64);
      expect(r.stderr).toMatch(/BERTH_ENVIRONMENT must be this environment's name/);
      expect(r.args).toBeUndefined();
    }
  });

  it('the shipped file as it is routes no environment; filled in, only its own', () => {
    const node = (environment: string) => ({ 'traefik.enable': 'true', [environmentLabel()]: environment });
    const raw = staticConf.providers.ecs.constraints as string;
    expect(['prod', 'staging'].some((e) => traefikConstraintAdmits(raw, node(e)))).toBe(false);
    const prod = parse(entrypoint('prod').config!).providers.ecs.constraints as string;
    expect(traefikConstraintAdmits(prod, node('prod'))).toBe(true);
    expect(traefikConstraintAdmits(prod, node('staging'))).toBe(false);
    expect(traefikConstraintAdmits(prod, { 'traefik.enable': 'true' })).toBe(false);
  });
});

describe('Traefik dynamic configuration shipped in the image', () => {
  it('sets modern TLS minimums for every router', () => {
    const opts = yaml('dynamic/tls-options.yml').tls.options.default;
    expect(opts.minVersion).toBe('VersionTLS12');
    expect(opts.cipherSuites.every((c: string) => /GCM|CHACHA20/.test(c))).toBe(true);
  });

  it('every file the Dockerfile copies exists', () => {
    const dockerfile = readFileSync(join(here, '..', 'Dockerfile.traefik'), 'utf8');
    const copies = [...dockerfile.matchAll(/^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+$/gm)].map((m) => m[1]!);
    expect(copies.length).toBeGreaterThan(0);
    for (const src of copies) expect(existsSync(join(here, '..', src)), src).toBe(true);
  });
});

describe('node labels example', () => {
  const task = JSON.parse(readFileSync(join(here, 'examples', 'node-task-definition.json'), 'utf8'));
  const labels = task.containerDefinitions[0].dockerLabels as Record<string, string>;

  it('opts in, and uses v3 regexp rules on the right entry points (the rules infra builds node labels by)', () => {
    expect(routerProblems(labels, Object.keys(staticConf.entryPoints))).toEqual([]);
    const routers = parseRouterLabels(labels);
    expect(routers).toHaveLength(3);
    for (const r of routers) {
      expect(routerMatches(r, 'pg-7f3a.db.example.com'), r.name).toBe(true);
      expect(routerMatches(r, 'pg-7f3aXdb.example.com'), r.name).toBe(false);
    }
    expect(Object.fromEntries(routers.map((r) => [`${r.kind}:${r.name}`, r.entrypoints.join()]))).toEqual({
      'http:pg-7f3a-api': 'http-api', 'http:pg-7f3a-ws': 'websocket', 'tcp:pg-7f3a-tcp': 'tcp',
    });
  });

  it('the rules catch what docs/traefik-labels.md forbids', () => {
    const broken = { ...labels, 'traefik.http.routers.pg-7f3a-api.rule': 'HostRegexp(`{sub:[a-z]+}.example.com`)', 'traefik.tcp.routers.pg-7f3a-tcp.tls': 'false' };
    delete (broken as Record<string, string>)['traefik.http.routers.pg-7f3a-ws.entrypoints'];
    expect(routerProblems(broken)).toEqual([
      expect.stringMatching(/pg-7f3a-api: .*v2 \{name:regex\} placeholder/),
      expect.stringMatching(/pg-7f3a-ws must name exactly one entry point/),
      expect.stringMatching(/pg-7f3a-tcp does not set tls=true/),
    ]);
    expect(routerProblems({ ...labels, 'traefik.tcp.routers.pg-7f3a-tcp.rule': 'Host(`pg-7f3a.db.example.com`)' })).toEqual([expect.stringMatching(/must be one of HostSNI, HostSNIRegexp/)]);
  });

  it('mounts a berth volume that ECS provisions once and shares across task restarts', () => {
    expect(task.volumes[0].dockerVolumeConfiguration).toMatchObject({ scope: 'shared', autoprovision: true, driver: 'berth' });
  });
});
