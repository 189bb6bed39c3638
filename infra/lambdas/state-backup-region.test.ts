import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { handler } from './state-backup-cleanup.js';

/**
 * S3 as seen from a Lambda in another region than the state bucket: a request signed for any
 * region but the bucket's gets 301 PermanentRedirect with `x-amz-bucket-region` (S3 API Reference,
 * "Error responses"; the SDK surfaces it as a PermanentRedirect error). The region is read from
 * the SigV4 credential scope (`Credential=<key>/<date>/<region>/s3/aws4_request`).
 */
const BUCKET_REGION = 'eu-central-1';
const requests: string[] = [];
let server: Server;
let endpoint: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const region = /Credential=[^/]+\/\d{8}\/([^/]+)\/s3\//.exec(req.headers.authorization ?? '')?.[1] ?? '?';
    requests.push(region);
    if (region !== BUCKET_REGION) {
      res.writeHead(301, { 'content-type': 'application/xml', 'x-amz-bucket-region': BUCKET_REGION });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>s3.${BUCKET_REGION}.amazonaws.com</Endpoint><Bucket>state</Bucket></Error>`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/xml' });
    res.end('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>state</Name><Prefix>.pulumi/backups/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
  requests.length = 0;
});

describe('state backup cleanup handler, state bucket in another region than the function', () => {
  it('signs for the bucket\'s region (STATE_BUCKET_REGION), not the function\'s, so S3 answers instead of redirecting', async () => {
    Object.assign(process.env, {
      AWS_REGION: 'us-east-1', // the Lambda's own region
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret',
      STATE_BUCKET: 'state', STATE_BUCKET_REGION: BUCKET_REGION,
    });
    await expect(handler()).resolves.toEqual({ deleted: 0 });
    expect(requests).toEqual([BUCKET_REGION]);
  });

  it('refuses to run without the bucket\'s region, with a clear error', async () => {
    Object.assign(process.env, { AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: endpoint, STATE_BUCKET: 'state' });
    delete process.env['STATE_BUCKET_REGION'];
    await expect(handler()).rejects.toThrow(/STATE_BUCKET_REGION is not set/);
    expect(requests).toEqual([]);
  });
});
