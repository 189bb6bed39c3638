import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkServerIdentity } from 'node:tls';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploymentMocks, publishedNames, type Deployment } from '../infra/test/published-names.js';
import type { Declared } from '../infra/test/pulumi-mocks.js';
import { silentLogger } from '../lib/logger.js';
import { renewIfDue } from '../traefik/renewer/renewer.js';
import { noPebbleReason, startPebble, type Pebble } from './helpers/pebble.js';
import { step } from './helpers/step.js';
import { startS3rver, type S3rverServer } from './helpers/s3server.js';

/**
 * Every name berth publishes answers TLS under the certificate berth obtains: the Route 53
 * records the regional and unit programs declare for one configuration (rendered under
 * setMocks, as `pulumi up` runs them), the certificate the renewer obtains from a real ACME
 * server (pebble, DNS-01 through pebble-challtestsrv) for that configuration's
 * `berth:certDomains`, and Node's own hostname verification of each name against it. A node
 * name the certificate does not cover fails here.
 */
const deployment: Deployment = {
  zone: 'example.test',
  certDomains: ['example.test', '*.example.test'],
  region: 'eu-west-1',
  clusters: [
    { name: 'shop', region: 'eu-west-1', hosts: ['shop-h1', 'shop-h2'], nodes: [{ name: 'db1', host: 'shop-h1' }, { name: 'db2', host: 'shop-h2' }] },
    { name: 'blue', region: 'eu-west-1', hosts: ['blue-h1'], nodes: [{ name: 'db1', host: 'blue-h1' }, { name: 'n'.repeat(58), host: 'blue-h1' }] },
  ],
};
const BUCKET = 'env';

describe.skipIf(noPebbleReason)(`published names vs the issued certificate${noPebbleReason ? ` (skipped: ${noPebbleReason})` : ''}`, () => {
  let declared: Declared[];
  let pebble: Pebble;
  let dir: string;
  let s3server: S3rverServer;
  let s3: S3Client;

  beforeAll(async () => {
    declared = deploymentMocks(deployment);
    pebble = await startPebble();
    dir = mkdtempSync(join(tmpdir(), 'berth-names-'));
    s3server = await startS3rver(dir, [BUCKET]);
    s3 = s3server.s3;
  }, 60_000);

  afterAll(async () => {
    pebble?.stop();
    await s3server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every Route 53 name of the regional and unit programs passes tls.checkServerIdentity against the certificate the renewer obtains', async () => {
    const names = await step('render the regional and unit programs', () => publishedNames(declared, deployment));
    expect(names.length).toBe(1 + 2 * (1 + 2)); // the Traefik host; per cluster its own name and one per node
    await step('the renewer obtains the certificate from pebble', async () => {
      const result = await renewIfDue({
        s3, bucket: BUCKET, certObject: 'tls/cert.pem', keyObject: 'tls/key.pem', accountKeyObject: 'tls/account.pem',
        domains: deployment.certDomains, email: 'ops@example.test', directoryUrl: pebble.directoryUrl, dns: pebble.dns, logger: silentLogger,
      });
      expect(result.action).toBe('renewed');
    });
    const pem = await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'tls/cert.pem' }))).Body!.transformToString();
    const served = new X509Certificate(pem).toLegacyObject();
    const failures = names.map((n) => [n, checkServerIdentity(n, served)?.message] as const).filter(([, err]) => err !== undefined);
    expect(failures).toEqual([]);
    // The names of the earlier scheme (two labels under the zone) fail the same check: this test can fail.
    expect(checkServerIdentity('db1.shop.example.test', served)?.message).toMatch(/does not match certificate's altnames/);
  });
});
