import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

/** s3rver's one account (lib/models/account.js): the key pair it checks every signature against. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3rverServer {
  /** http://<address>:<port> */
  readonly endpoint: string;
  /** A client of it (path-style, s3rver's credentials) in `region`. */
  readonly s3: S3Client;
  /** Stops the client and the server. */
  close(): Promise<void>;
}

/**
 * A real S3-compatible server on localhost: s3rver (it checks SigV4 signatures and
 * x-amz-content-sha256), on a free port of `address` (127.0.0.1 unless given), its files under
 * `<dir>/s3`, with `buckets` made.
 */
export async function startS3rver(dir: string, buckets: string[], opts: { address?: string; region?: string } = {}): Promise<S3rverServer> {
  const address = opts.address ?? '127.0.0.1';
  const server = new S3rver({ address, port: 0, directory: join(dir, 's3'), silent: true, configureBuckets: buckets.map((name) => ({ name, configs: [] })) });
  const { port } = await server.run();
  const endpoint = `http://${address}:${port}`;
  const s3 = new S3Client({ endpoint, region: opts.region ?? 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
  return {
    endpoint,
    s3,
    async close() {
      s3.destroy();
      await server.close();
    },
  };
}
