import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { unixPoster } from '../bench/lib.js';
import { startImdsServer, type ImdsServer } from './aws/imds-server.js';
import { cloudWatchMetricNames, exportedFamilies, grafanaMetricNames, isExported, PENDING_METRICS } from './helpers/dashboard-metrics.js';
import { socketOf, startChildAgent, stopChild, uniquePluginName } from './helpers/agent.js';
import { freePort, noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';
import { sleep } from '../lib/sleep.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

// The plugin socket (which startChildAgent waits for) may be up a moment before the health
// endpoint: on Node.js 24 the gap was wide enough to refuse the first /readyz (status 0 here).
async function readyz(port: number): Promise<{ status: number; body: { checks?: Record<string, string> } }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
  if (!res) return { status: 0, body: {} };
  return { status: res.status, body: (await res.json()) as { checks?: Record<string, string> } };
}

// What production runs is the bundle scripts/build.mjs makes, not the TypeScript
// the other tests load through tsx: these tests run that bundle from a directory
// with no node_modules, as it is installed.
describe.skipIf(noLoopReason)('the built agent (scripts/build.mjs)', () => {
  const tmp = tempDir('berth-build');
  const app = join(tmp.path, 'app');
  const main = join(app, 'dist/agent/main.js');
  let imds: ImdsServer | undefined;

  beforeAll(async () => {
    await execa('node', ['scripts/build.mjs', join(app, 'dist')], { cwd: repoRoot, timeout: 120_000 });
    copyFileSync(join(repoRoot, 'package.json'), join(app, 'package.json'));
  }, 180_000);
  afterAll(async () => {
    await imds?.close();
    detachLoopDevicesUnder(tmp.path);
    tmp.cleanup();
  });

  it('serves a volume end to end over its socket from a directory without node_modules', async () => {
    expect(existsSync(join(app, 'node_modules'))).toBe(false);
    const name = uniquePluginName('berth-built');
    const port = await freePort();
    const child = await startChildAgent(name, join(tmp.path, 'state'), { BERTH_HEALTH_ADDR: `127.0.0.1:${port}` }, main, [...AGENT_NODE_FLAGS]);
    try {
      const post = unixPoster(socketOf(name));
      expect((await post('/Plugin.Activate')).json).toEqual({ Implements: ['VolumeDriver'] });
      expect((await post('/VolumeDriver.Create', { Name: 'v', Opts: { size: '64MiB', fs: 'ext4' } })).json.Err).toBe('');
      const bad = await post('/VolumeDriver.Create', { Name: 'w', Opts: { fs: 'ntfs' } });
      expect(bad.json.Err).toMatch(/fs: Invalid option: expected one of "ext4"\|"xfs"/);
      const mounted = await post('/VolumeDriver.Mount', { Name: 'v', ID: 'a'.repeat(64) });
      const mountpoint = mounted.json.Mountpoint as string;
      writeFileSync(join(mountpoint, 'f'), 'from the bundle');
      const { stdout } = await execa('findmnt', ['-no', 'FSTYPE', mountpoint]);
      expect(stdout.trim()).toBe('ext4');
      expect((await post('/VolumeDriver.Unmount', { Name: 'v', ID: 'a'.repeat(64) })).json.Err).toBe('');
      expect((await post('/VolumeDriver.Remove', { Name: 'v' })).json.Err).toBe('');
      // The bundle takes prom-client without its index (scripts/bundle/): the metrics are all there.
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^berth_plugin_requests_total\{endpoint="VolumeDriver\.Mount",outcome="ok"\} 1$/m);
      expect(metrics).toMatch(/^berth_volumes_known 0$/m);
      expect(metrics).toMatch(/^berth_process_cpu_seconds_total \d/m);
      expect(metrics).toMatch(/^berth_nodejs_heap_size_used_bytes \d/m);
    } finally {
      await stopChild(child, 'SIGTERM');
    }
  });

  it('loads the EBS backend and the AWS SDK from its lazy chunks: with credentials from IMDS, an EC2 API that refuses connections is reported in /readyz', async () => {
    imds = await startImdsServer({ instanceId: 'i-0built000000000001', az: 'eu-west-1a', region: 'eu-west-1' });
    const name = uniquePluginName('berth-built');
    const port = await freePort();
    const state = join(tmp.path, 'state-ebs');
    const child = await startChildAgent(name, state, {
      BERTH_BACKEND: 'ebs',
      BERTH_HOST_ID: 'h-built',
      BERTH_IMDS_ENDPOINT: imds.endpoint,
      BERTH_EC2_ENDPOINT: 'http://127.0.0.1:1',
      BERTH_HEALTH_ADDR: `127.0.0.1:${port}`,
    }, main);
    try {
      let ready = await readyz(port);
      for (let i = 0; i < 100 && !/EC2 said/.test(ready.body.checks?.volumes ?? ''); i++) {
        await sleep(100);
        ready = await readyz(port);
      }
      expect(ready.status).toBe(503);
      expect(ready.body.checks?.volumes).toMatch(/EC2 said .*ECONNREFUSED 127\.0\.0\.1:1/);
      expect(imds!.paths.get('/latest/meta-data/instance-id')).toBeGreaterThan(0);
    } finally {
      await stopChild(child, 'SIGTERM');
    }
    expect(readFileSync(join(tmp.path, `agent-${name}.log`), 'utf8')).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find (module|package)/);
  });

  it('every metric the Grafana dashboard, the CloudWatch dashboard and the alarms name is one the built agent exports (or one listed as pending, which it does not export yet)', async () => {
    imds ??= await startImdsServer({ instanceId: 'i-0built000000000001', az: 'eu-west-1a', region: 'eu-west-1' });
    const name = uniquePluginName('berth-built');
    const port = await freePort();
    const state = join(tmp.path, 'state-metrics');
    // Everything a host can run: the EBS backend (EC2 unreachable: its metrics exist all the same) and the certificate refresher.
    const child = await startChildAgent(name, state, {
      BERTH_BACKEND: 'ebs',
      BERTH_HOST_ID: 'h-built',
      BERTH_IMDS_ENDPOINT: imds.endpoint,
      BERTH_EC2_ENDPOINT: 'http://127.0.0.1:1',
      BERTH_CERT_BUCKET: 'certs',
      BERTH_S3_ENDPOINT: 'http://127.0.0.1:1',
      BERTH_AWS_REGION: 'eu-west-1',
      BERTH_CERT_DIR: join(state, 'certs'),
      BERTH_CERT_DYNAMIC_FILE: join(state, 'certificates.yml'),
      BERTH_HEALTH_ADDR: `127.0.0.1:${port}`,
    }, main);
    try {
      let families = new Map<string, string>();
      // The health endpoint opens once the refresher's first poll gave up on S3 (a few seconds).
      for (let i = 0; i < 300 && !families.has('berth_volumes_ready'); i++) {
        const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
        families = exportedFamilies(text);
        if (!families.has('berth_volumes_ready')) await sleep(100);
      }
      expect(families.has('berth_volumes_ready'), 'the agent serves /metrics with the reconciler\'s families').toBe(true);
      const named = new Set([...grafanaMetricNames(), ...cloudWatchMetricNames()]);
      expect(named.size).toBeGreaterThan(20);
      const missing = [...named].filter((n) => !isExported(n, families) && !(n in PENDING_METRICS)).sort();
      expect(missing, 'named by a dashboard or an alarm, not exported by the agent').toEqual([]);
      const landed = Object.keys(PENDING_METRICS).filter((n) => isExported(n, families));
      expect(landed, 'exported now: drop them from PENDING_METRICS (test/helpers/dashboard-metrics.ts)').toEqual([]);
      // Histograms are named by their series in queries: the check sees through the suffixes.
      expect(isExported('berth_ebs_attach_duration_seconds_bucket', families)).toBe(true);
      expect(isExported('berth_ebs_attach_duration_bucket', families)).toBe(false);
    } finally {
      await stopChild(child, 'SIGTERM');
    }
  });

  it('the CLI bundle runs on its own and reports the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const { stdout } = await execa('node', [join(app, 'dist/agent/cli.js'), '--version']);
    expect(stdout.trim()).toContain(version);
  });
});
