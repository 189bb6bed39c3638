import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { fromInstanceMetadata } from '@smithy/credential-provider-imds';
import { afterEach, describe, expect, it } from 'vitest';
import { startImdsServer, type ImdsServer } from './imds-server.js';

const INSTANCE = 'i-0123456789abcdef0';
let server: ImdsServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(opts: Partial<Parameters<typeof startImdsServer>[0]> = {}): Promise<{ server: ImdsServer; imds: MetadataService }> {
  server = await startImdsServer({ instanceId: INSTANCE, az: 'eu-west-1b', region: 'eu-west-1', ...opts });
  // retries 0: the tests look at single answers; backoff 0 keeps any retry instant.
  const imds = new MetadataService({ endpoint: server.endpoint, retries: 0, backoff: 0, ec2MetadataV1Disabled: true, httpOptions: { timeout: 1000 } });
  return { server, imds };
}

const statusOf = (error: unknown) => (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;

describe('IMDSv2 test server, read by the SDK MetadataService', () => {
  it('answers host identity with a session token', async () => {
    const { server, imds } = await start({ tags: { 'berth:host': 'web-1', Name: 'web' } });
    expect(await imds.request('/latest/meta-data/instance-id', {})).toBe(INSTANCE);
    expect(await imds.request('/latest/meta-data/placement/availability-zone', {})).toBe('eu-west-1b');
    expect(await imds.request('/latest/meta-data/placement/region', {})).toBe('eu-west-1');
    expect((await imds.request('/latest/meta-data/tags/instance', {})).split('\n').sort()).toEqual(['Name', 'berth:host']);
    expect(await imds.request('/latest/meta-data/tags/instance/berth:host', {})).toBe('web-1');
    expect(JSON.parse(await imds.request('/latest/dynamic/instance-identity/document', {}))).toMatchObject({ instanceId: INSTANCE, region: 'eu-west-1' });
    // MetadataService fetches a token before each GET.
    expect(server.paths.get('/latest/api/token')).toBe(6);
    expect(server.requests).toBe(12);
  });

  it('refuses a GET without a token (401) and a token PUT without a valid TTL (400)', async () => {
    const { server } = await start();
    const v1 = new MetadataService({ endpoint: server.endpoint, disableFetchToken: true, retries: 0 });
    await expect(v1.request('/latest/meta-data/instance-id', {})).rejects.toSatisfy((error) => statusOf(error) === 401);
    const noTtl = await fetch(`${server.endpoint}/latest/api/token`, { method: 'PUT' });
    expect(noTtl.status).toBe(400);
    const tooLong = await fetch(`${server.endpoint}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21601' } });
    expect(tooLong.status).toBe(400);
    const forwarded = await fetch(`${server.endpoint}/latest/api/token`, {
      method: 'PUT',
      headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60', 'x-forwarded-for': '10.0.0.1' },
    });
    expect(forwarded.status).toBe(403);
  });

  it('answers 404 for tags when tags in metadata are off, and for unknown paths', async () => {
    const { imds } = await start();
    await expect(imds.request('/latest/meta-data/tags/instance', {})).rejects.toSatisfy((error) => statusOf(error) === 404);
    await expect(imds.request('/latest/meta-data/nothing-here', {})).rejects.toSatisfy((error) => statusOf(error) === 404);
  });

  it('serves instance credentials only after credentialsAfterMs', async () => {
    const { imds } = await start({ credentialsAfterMs: 150 });
    await expect(imds.request('/latest/meta-data/iam/security-credentials/', {})).rejects.toSatisfy((error) => statusOf(error) === 404);
    await new Promise((resolve) => setTimeout(resolve, 160));
    const role = await imds.request('/latest/meta-data/iam/security-credentials/', {});
    expect(role).toBe('berth-host');
    expect(JSON.parse(await imds.request(`/latest/meta-data/iam/security-credentials/${role}`, {}))).toMatchObject({
      Code: 'Success',
      AccessKeyId: expect.stringMatching(/^ASIA/),
      SecretAccessKey: expect.any(String),
      Token: expect.any(String),
      Expiration: expect.any(String),
    });
  });

  it('the SDK instance-credential provider gets credentials from it once they exist', async () => {
    const { server } = await start({ credentialsAfterMs: 60_000 });
    const saved = process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = server.endpoint;
    try {
      await expect(fromInstanceMetadata({ maxRetries: 0, timeout: 1000 })()).rejects.toThrow();
      server.setCredentialsAvailable(true);
      const credentials = await fromInstanceMetadata({ maxRetries: 0, timeout: 1000 })();
      expect(credentials).toMatchObject({ accessKeyId: expect.stringMatching(/^ASIA/), sessionToken: expect.any(String), expiration: expect.any(Date) });
    } finally {
      if (saved === undefined) delete process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
      else process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = saved;
    }
  });

  it('follows a replaced host id, and can be down (reset or hang) and up again', async () => {
    const { server, imds } = await start();
    server.setInstanceId('i-00000000000000001');
    expect(await imds.request('/latest/meta-data/instance-id', {})).toBe('i-00000000000000001');

    server.setDown(true);
    const startedAt = Date.now();
    await expect(imds.request('/latest/meta-data/instance-id', {})).rejects.toThrow();
    expect(Date.now() - startedAt).toBeLessThan(500);

    server.setDown(true, 'hang');
    const quick = new MetadataService({ endpoint: server.endpoint, retries: 0, ec2MetadataV1Disabled: true, httpOptions: { timeout: 200 } });
    await expect(quick.request('/latest/meta-data/instance-id', {})).rejects.toThrow();

    server.setDown(false);
    expect(await imds.request('/latest/meta-data/instance-id', {})).toBe('i-00000000000000001');
  });
});
