import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3RVER_CREDENTIALS } from '../helpers/s3server.js';
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

const s3Error = (code: string, message: string, extra = '') =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>${extra}<RequestId>berth-test</RequestId><HostId>berth-test</HostId></Error>`;

export interface S3AccessOptions {
  /** Give PutObject S3's conditional-write semantics (If-None-Match, If-Match), which s3rver lacks. */
  readonly conditionalWrites?: boolean;
}

export async function startS3AccessProxy(upstream: string, policy: PolicyDocument, opts: S3AccessOptions = {}): Promise<S3AccessProxy> {
  const seen: S3Request[] = [];
  const target = new URL(upstream);
  const answer = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const deny = (res: ServerResponse) => answer(res, 403, ACCESS_DENIED);
  // The proxy's own reads of the current ETag, past the policy (S3 evaluates the condition itself).
  const admin = opts.conditionalWrites ? new S3Client({ endpoint: upstream, forcePathStyle: true, region: 'us-east-1', credentials: S3RVER_CREDENTIALS }) : undefined;
  /** Per object: its writes under way or queued (only with conditionalWrites). */
  const writing = new Map<string, number>();
  /** Per object: the tail of its queue of requests (only with conditionalWrites). */
  const locks = new Map<string, Promise<void>>();
  const lock = async (key: string): Promise<() => void> => {
    const before = locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = before.then(() => mine);
    locks.set(key, tail);
    await before;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      if (locks.get(key) === tail) locks.delete(key);
    };
  };
  const currentEtag = async (resource: string): Promise<string | undefined> => {
    const [bucket, ...rest] = resource.replace(/^arn:aws:s3:::/, '').split('/');
    try {
      return (await admin!.send(new HeadObjectCommand({ Bucket: bucket, Key: rest.join('/') }))).ETag;
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
      throw err;
    }
  };
  /**
   * s3rver answers a PutObject before the object's file is written (lib/stores/filesystem.js, putObject ends its
   * write stream without waiting for it), so a read right after could find it empty; S3's could not. The key is
   * held until its content reads back with the ETag the write answered (a plain PutObject's ETag is its MD5).
   */
  const written = async (resource: string, etag: string) => {
    const [bucket, ...rest] = resource.replace(/^arn:aws:s3:::/, '').split('/');
    for (let i = 0; i < 200; i++) {
      const out = await admin!.send(new GetObjectCommand({ Bucket: bucket, Key: rest.join('/') })).catch(() => undefined);
      // Gone, or written again past the proxy (a test's own hand): nothing left to wait for.
      if (!out || out.ETag !== etag) return;
      const body = Buffer.from(await out.Body!.transformToByteArray());
      if (`"${createHash('md5').update(body).digest('hex')}"` === etag) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`s3-access: ${resource} did not read back as ${etag}`);
  };
  /** Whether a conditional PutObject may go on; answers it (and returns false) when not. */
  const conditionHolds = async (req: IncomingMessage, res: ServerResponse, r: S3Request): Promise<boolean> => {
    const ifMatch = req.headers['if-match'];
    const ifNoneMatch = req.headers['if-none-match'];
    if (ifNoneMatch !== undefined && ifNoneMatch !== '*') {
      answer(res, 501, s3Error('NotImplemented', 'A header you provided implies functionality that is not implemented', '<Header>If-None-Match</Header>'));
      return false;
    }
    const current = await currentEtag(r.resource);
    if (ifNoneMatch === '*' && current !== undefined) {
      answer(res, 412, s3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', '<Condition>If-None-Match</Condition>'));
      return false;
    }
    if (ifMatch !== undefined && current === undefined) {
      answer(res, 404, s3Error('NoSuchKey', 'The specified key does not exist.', `<Key>${r.resource.split('/').slice(1).join('/')}</Key>`));
      return false;
    }
    if (ifMatch !== undefined && ifMatch !== current) {
      answer(res, 412, s3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', '<Condition>If-Match</Condition>'));
      return false;
    }
    return true;
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
    /** `done` once the key may serve the next request; `answered` once the client has S3's answer. */
    const forward = (done?: () => void, answered?: () => void) => {
      const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
        const bucketArn = r.resource.split('/')[0]!;
        if (r.action === 's3:GetObject' && upRes.statusCode === 404 && !allows([policy], 's3:ListBucket', bucketArn)) {
          upRes.resume();
          done?.();
          deny(res);
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
        const etag = upRes.headers.etag;
        upRes.on('end', () => {
          answered?.();
          if (!done) return;
          if (r.action === 's3:PutObject' && upRes.statusCode === 200 && etag) void written(r.resource, etag).finally(done);
          else done();
        });
      });
      up.on('error', (err) => {
        done?.();
        if (!res.headersSent) res.writeHead(502).end(String(err));
        else res.destroy(err);
      });
      req.pipe(up);
    };
    if (!opts.conditionalWrites || r.resource.split('/').length < 2) {
      forward();
      return;
    }
    const conditional = r.action === 's3:PutObject' && (req.headers['if-match'] !== undefined || req.headers['if-none-match'] !== undefined);
    // A conditional write that meets another write of its key under way: S3's 409.
    if (conditional && writing.has(r.resource)) {
      req.resume();
      answer(res, 409, s3Error('ConditionalRequestConflict', 'A conflicting conditional operation is currently in progress against this resource. Please try again.'));
      return;
    }
    // One request per key at a time: a conditional write's check and its write are one step, and a read sees
    // the object before or after a write, never s3rver's files half written (S3 reads are strongly consistent).
    const isWrite = r.action === 's3:PutObject';
    if (isWrite) writing.set(r.resource, (writing.get(r.resource) ?? 0) + 1);
    void lock(r.resource).then((unlock) => {
      let counted = isWrite;
      const answered = () => {
        if (!counted) return;
        counted = false;
        const n = (writing.get(r.resource) ?? 1) - 1;
        if (n > 0) writing.set(r.resource, n);
        else writing.delete(r.resource);
      };
      const release = () => {
        answered();
        unlock();
      };
      if (!conditional) {
        forward(release, answered);
        return;
      }
      conditionHolds(req, res, r).then(
        (holds) => {
          if (holds) forward(release, answered);
          else {
            req.resume();
            release();
          }
        },
        (err: unknown) => {
          req.resume();
          release();
          if (!res.headersSent) res.writeHead(502).end(String(err));
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    seen,
    close: () => {
      admin?.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
