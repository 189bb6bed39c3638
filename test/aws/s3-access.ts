import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { allows, type PolicyDocument } from './iam-policy.js';

/**
 * An S3 endpoint that answers as S3 does a caller holding only `policy`: a thin proxy in front of
 * s3rver (which grants everything and always answers a missing key with 404 NoSuchKey). Each
 * path-style request becomes its IAM action; what the policy does not allow gets S3's 403
 * AccessDenied, and a missing key gets 403 AccessDenied instead of 404 unless the caller may
 * s3:ListBucket the bucket (S3 API reference, GetObject, "Permissions": "If you don't have the
 * s3:ListBucket permission, Amazon S3 returns an HTTP status code 403 Access Denied error").
 * Whether S3 applies an `s3:prefix` condition to that check is not documented; the model assumes
 * the strict answer (no prefix in the request, so a prefix-scoped grant does not turn it into a
 * 404). Every request is recorded as `{action, resource}` for the policy-contract test.
 */
export interface S3Request {
  readonly action: string;
  readonly resource: string;
  readonly prefix?: string;
}

export interface S3AccessProxy {
  readonly endpoint: string;
  readonly seen: S3Request[];
  close(): Promise<void>;
}

function classify(req: IncomingMessage): S3Request {
  const url = new URL(req.url ?? '/', 'http://s3');
  const [bucket, ...rest] = url.pathname.slice(1).split('/');
  const key = decodeURIComponent(rest.join('/'));
  if (!key) {
    if (req.method === 'GET') return { action: 's3:ListBucket', resource: `arn:aws:s3:::${bucket}`, prefix: url.searchParams.get('prefix') ?? '' };
    throw new Error(`s3-access: ${req.method} on bucket ${bucket} is not modelled`);
  }
  const action = { GET: 's3:GetObject', HEAD: 's3:GetObject', PUT: 's3:PutObject', DELETE: 's3:DeleteObject' }[req.method ?? ''];
  if (!action) throw new Error(`s3-access: ${req.method} on an object is not modelled`);
  return { action, resource: `arn:aws:s3:::${bucket}/${key}` };
}

const ACCESS_DENIED = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>berth-test</RequestId></Error>';

export async function startS3AccessProxy(upstream: string, policy: PolicyDocument): Promise<S3AccessProxy> {
  const seen: S3Request[] = [];
  const target = new URL(upstream);
  const deny = (res: ServerResponse) => {
    res.writeHead(403, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(ACCESS_DENIED) });
    res.end(ACCESS_DENIED);
  };
  const server: Server = createServer((req, res) => {
    let r: S3Request;
    try {
      r = classify(req);
    } catch (err) {
      res.writeHead(501).end(String(err));
      return;
    }
    seen.push(r);
    const ctx: Record<string, string> = r.prefix !== undefined ? { 's3:prefix': r.prefix } : {};
    if (!allows([policy], r.action, r.resource, ctx)) {
      req.resume();
      deny(res);
      return;
    }
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      const bucketArn = r.resource.split('/')[0]!;
      if (r.action === 's3:GetObject' && upRes.statusCode === 404 && !allows([policy], 's3:ListBucket', bucketArn)) {
        upRes.resume();
        deny(res);
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', (err) => res.writeHead(502).end(String(err)));
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
