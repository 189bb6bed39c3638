import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface ImdsServerOptions {
  instanceId: string;
  az: string;
  region: string;
  /** Instance tags served under /latest/meta-data/tags/instance; omitted = tags in metadata disabled (404, as on EC2). */
  tags?: Record<string, string>;
  /** IAM role of the instance profile. Default 'berth-host'; null = no instance profile (404). */
  roleName?: string | null;
  /** Instance credentials answer 404 until this long after start (lagging credentials at boot). Default 0. */
  credentialsAfterMs?: number;
  /** IMDSv2 only (default true): a GET without a valid token gets 401. false also answers IMDSv1 GETs. */
  tokenRequired?: boolean;
  accountId?: string;
  /** /latest/meta-data/instance-type (and the identity document's instanceType). Default m6i.large. */
  instanceType?: string;
  /**
   * MAC addresses of the instance's network interfaces, served as IMDS serves them: one
   * `<mac>/` per line under /latest/meta-data/network/interfaces/macs/ (EC2 User Guide,
   * "Instance metadata categories": network/interfaces/macs/mac). Default one interface.
   */
  macs?: string[];
  /** The instance profile's key pair (a test S3 that checks signatures knows it); default a fresh random one each time. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Address to listen on; default 127.0.0.1 (a test network namespace reaches another). */
  host?: string;
}

export interface ImdsServer {
  /** `http://127.0.0.1:<port>`: pass as `endpoint` to MetadataService, or as AWS_EC2_METADATA_SERVICE_ENDPOINT. */
  readonly endpoint: string;
  /** HTTP requests received (token PUTs included; not those refused or left hanging while down). */
  readonly requests: number;
  /** Requests per path, e.g. `paths.get('/latest/meta-data/instance-id')`. */
  readonly paths: ReadonlyMap<string, number>;
  /** Answers with another instance id from now on (host replaced). */
  setInstanceId(instanceId: string): void;
  setTags(tags: Record<string, string> | undefined): void;
  /** Network interfaces attached from now on (an ENI attached or detached while the instance runs). */
  setMacs(macs: string[]): void;
  /** Makes credentials available (true) or 404 (false) from now on, whatever credentialsAfterMs said. */
  setCredentialsAvailable(available: boolean): void;
  /**
   * Down: every connection is reset at once ('reset', default) or left
   * unanswered ('hang', for timeouts). Up again with setDown(false).
   */
  setDown(down: boolean, how?: 'reset' | 'hang'): void;
  close(): Promise<void>;
}

/**
 * A real HTTP server speaking the part of IMDSv2 that berth reads: the session
 * token (PUT /latest/api/token with a TTL of 1-21600 s), instance id,
 * placement, instance tags, instance-profile credentials and the identity
 * document. The SDK's MetadataService and the SDK credential provider
 * (`fromInstanceMetadata`) run against it unchanged.
 */
export async function startImdsServer(opts: ImdsServerOptions): Promise<ImdsServer> {
  const startedAt = Date.now();
  const tokens = new Map<string, number>();
  const paths = new Map<string, number>();
  const sockets = new Set<Socket>();
  const accountId = opts.accountId ?? '123456789012';
  const roleName = opts.roleName === undefined ? 'berth-host' : opts.roleName;
  const tokenRequired = opts.tokenRequired ?? true;
  let instanceId = opts.instanceId;
  let tags = opts.tags;
  const instanceType = opts.instanceType ?? 'm6i.large';
  let macs = opts.macs ?? ['0e:00:00:00:00:01'];
  let credentialsOverride: boolean | undefined;
  let down: false | 'reset' | 'hang' = false;
  let requests = 0;

  const credentialsAvailable = () => credentialsOverride ?? Date.now() - startedAt >= (opts.credentialsAfterMs ?? 0);

  function metadata(path: string): string | object | undefined {
    const base = '/latest/meta-data/';
    const fixed: Record<string, string> = {
      [base]: ['ami-id', 'iam/', 'instance-id', 'instance-type', 'network/', 'placement/', 'tags/'].join('\n'),
      [`${base}instance-id`]: instanceId,
      [`${base}instance-type`]: instanceType,
      [`${base}network/`]: 'interfaces/',
      [`${base}network/interfaces/`]: 'macs/',
      [`${base}network/interfaces/macs/`]: macs.map((m) => `${m}/`).join('\n'),
      [`${base}ami-id`]: 'ami-0123456789abcdef0',
      [`${base}placement/`]: ['availability-zone', 'region'].join('\n'),
      [`${base}placement/availability-zone`]: opts.az,
      [`${base}placement/region`]: opts.region,
    };
    if (path in fixed) return fixed[path];
    if (path === `${base}tags/` && tags) return 'instance';
    if (path === `${base}tags/instance` || path === `${base}tags/instance/`) return tags ? Object.keys(tags).join('\n') : undefined;
    if (path.startsWith(`${base}tags/instance/`) && tags) return tags[decodeURIComponent(path.slice(`${base}tags/instance/`.length))];
    if (path === `${base}iam/`) return roleName && credentialsAvailable() ? 'info\nsecurity-credentials/' : undefined;
    if (path === `${base}iam/security-credentials/` || path === `${base}iam/security-credentials`) {
      return roleName && credentialsAvailable() ? roleName : undefined;
    }
    if (roleName && path === `${base}iam/security-credentials/${roleName}` && credentialsAvailable()) {
      const now = new Date();
      return {
        Code: 'Success',
        LastUpdated: now.toISOString(),
        Type: 'AWS-HMAC',
        AccessKeyId: opts.credentials?.accessKeyId ?? `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
        SecretAccessKey: opts.credentials?.secretAccessKey ?? randomBytes(30).toString('base64'),
        Token: randomBytes(64).toString('base64'),
        Expiration: new Date(now.getTime() + 6 * 3600_000).toISOString(),
      };
    }
    if (path === '/latest/dynamic/instance-identity/document') {
      return { accountId, availabilityZone: opts.az, region: opts.region, instanceId, instanceType, architecture: 'x86_64' };
    }
    return undefined;
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    // Pausing the socket would not do: the HTTP parser reads the socket handle directly.
    if (down === 'hang') return;
    requests += 1;
    // MetadataService joins the endpoint's path '/' and '/latest/…' into '//latest/…'.
    const path = new URL((req.url ?? '/').replace(/^\/{2,}/, '/'), 'http://imds').pathname.replace(/\/{2,}/g, '/');
    paths.set(path, (paths.get(path) ?? 0) + 1);
    const send = (status: number, body = '', type = 'text/plain') => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) }).end(body);
    };

    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return send(405);
      if (req.headers['x-forwarded-for']) return send(403);
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return send(400);
      const token = randomBytes(32).toString('base64url');
      tokens.set(token, Date.now() + ttl * 1000);
      res.setHeader('x-aws-ec2-metadata-token-ttl-seconds', String(ttl));
      return send(200, token);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405);
    const token = req.headers['x-aws-ec2-metadata-token'];
    if (typeof token === 'string' ? (tokens.get(token) ?? 0) < Date.now() : tokenRequired) return send(401);
    const answer = metadata(path);
    if (answer === undefined) return send(404);
    if (typeof answer === 'string') return send(200, answer);
    return send(200, JSON.stringify(answer, null, 2), 'application/json');
  }

  const server = createServer(handle);
  server.on('connection', (socket) => {
    if (down === 'reset') return void socket.resetAndDestroy();
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, opts.host ?? '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('IMDS test server has no TCP address');

  return {
    endpoint: `http://${address.address}:${address.port}`,
    get requests() {
      return requests;
    },
    paths,
    setInstanceId(id) {
      instanceId = id;
    },
    setTags(next) {
      tags = next;
    },
    setMacs(next) {
      macs = next;
    },
    setCredentialsAvailable(available) {
      credentialsOverride = available;
    },
    setDown(isDown, how = 'reset') {
      down = isDown ? how : false;
      if (down === 'reset') for (const socket of sockets) socket.resetAndDestroy();
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
