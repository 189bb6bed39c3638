/**
 * From a certificate upload to the new certificate served by a TLS server that
 * reloads the way Traefik does, over N swaps with the refresher polling S3
 * (s3rver) every --poll seconds; a client handshakes every 20 ms throughout and
 * every failure is counted. Then the S3 requests per hour in steady state.
 * Targets: ≤ 65 s per swap with the 60 s poll (the seed's timer: 12 h), 0 failed
 * handshakes, ≤ 60 S3 requests per hour, all 304.
 *
 * After the swaps it watches --steady seconds with nothing uploaded and counts
 * the S3 requests made in that window.
 *
 *   node --import tsx bench/cert-swap.ts [--swaps 10] [--poll 60] [--steady 300]
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Registry } from 'prom-client';
import S3rver from 's3rver';
import { CertRefresher } from '../agent/cert-refresher.js';
import { silentLogger } from '../lib/logger.js';
import { sleep } from '../lib/sleep.js';
import { makeCert } from '../test/helpers/certs.js';
import { handshake, startReloadingTlsServer } from '../test/helpers/tls-server.js';
import { median } from './lib.js';

const { values } = parseArgs({ options: { swaps: { type: 'string', default: '10' }, poll: { type: 'string', default: '60' }, steady: { type: 'string', default: '300' } } });
const swaps = Number(values.swaps);
const pollS = Number(values.poll);
const steadyS = Number(values.steady);
const DOMAINS = ['db.example.test', '*.db.example.test'];

const dir = mkdtempSync(join(tmpdir(), 'berth-bench-cert-'));
const s3server = new S3rver({ address: '127.0.0.1', port: 0, directory: join(dir, 's3'), silent: true, configureBuckets: [{ name: 'env', configs: [] }] });
const { port } = await s3server.run();
const s3 = new S3Client({ endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
const upload = async (c: { certPem: string; keyPem: string }) => {
  await s3.send(new PutObjectCommand({ Bucket: 'env', Key: 'tls/key.pem', Body: c.keyPem }));
  await s3.send(new PutObjectCommand({ Bucket: 'env', Key: 'tls/cert.pem', Body: c.certPem }));
};
mkdirSync(join(dir, 'dynamic'));
const registry = new Registry();
const refresher = new CertRefresher({ s3, bucket: 'env', certObject: 'tls/cert.pem', keyObject: 'tls/key.pem', certDir: join(dir, 'certs'), dynamicFile: join(dir, 'dynamic', 'certificates.yml'), domains: DOMAINS, pollMs: pollS * 1000, logger: silentLogger, registry });

const certs = Array.from({ length: swaps + 1 }, (_, i) => makeCert(DOMAINS, 30 + i));
await upload(certs[0]!);
await refresher.refreshOnce();
const server = await startReloadingTlsServer(join(dir, 'dynamic', 'certificates.yml'));
await refresher.start();

let failures = 0;
let handshakes = 0;
let current = '';
let stop = false;
const client = (async () => {
  while (!stop) {
    try {
      current = await handshake(server.port, 'x.db.example.test');
      handshakes++;
    } catch {
      failures++;
    }
    await sleep(20);
  }
})();

const latencies: number[] = [];
for (let i = 1; i <= swaps; i++) {
  const want = new X509Certificate(certs[i]!.certPem).fingerprint256;
  // Uploads land at a random point of the poll cycle, as real renewals do.
  await sleep(Math.random() * pollS * 1000);
  const t0 = Date.now();
  await upload(certs[i]!);
  while (current !== want) await sleep(10);
  latencies.push((Date.now() - t0) / 1000);
  console.log(`swap ${i}: served after ${latencies.at(-1)!.toFixed(2)} s`);
}
const requestCounts = async () =>
  Object.fromEntries(
    (await registry.getSingleMetricAsString('berth_cert_s3_requests_total'))
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => [/result="(\w+)"/.exec(l)![1]!, Number(l.split(' ').at(-1))]),
  ) as Record<string, number>;

// Steady state: nothing is uploaded; every request should be a 304.
const before = await requestCounts();
await sleep(steadyS * 1000);
const after = await requestCounts();
stop = true;
await client;
await refresher.stop();
await server.close();
await s3server.close();
rmSync(dir, { recursive: true, force: true });

const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
const steadyRequests = delta('not_modified') + delta('changed') + delta('key');
console.log(`poll ${pollS} s, ${swaps} swaps: upload → served median ${median(latencies).toFixed(2)} s, max ${Math.max(...latencies).toFixed(2)} s (target ≤ 65 s)`);
console.log(`seed's 12 h timer: mean 21600 s, max 43200 s (analytic, uniform upload time) → median ratio ${(median(latencies) / 21600).toExponential(2)}`);
console.log(`handshakes ${handshakes}, failed ${failures} (target 0)`);
console.log(`steady state: ${steadyRequests} S3 requests in ${steadyS} s (${delta('not_modified')} were 304) = ${((steadyRequests * 3600) / steadyS).toFixed(0)} per hour (target ≤ 60, all 304)`);
