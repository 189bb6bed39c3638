import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP server speaking the IMDSv2 subset berth reads: a session token
 * (PUT /latest/api/token), then instance id, zone, region and instance tags
 * with that token. Requests without a valid token get 401, like IMDS with
 * http-tokens=required.
 */
export interface ImdsServer {
  endpoint: string;
  instanceId: string;
  tags: Record<string, string>;
  requests: number;
  close(): Promise<void>;
}

export async function startImdsServer(p: { instanceId: string; az: string; region: string; tags?: Record<string, string> }): Promise<ImdsServer> {
  const tokens = new Set<string>();
  const state: ImdsServer = {
    endpoint: '',
    instanceId: p.instanceId,
    tags: { ...p.tags },
    requests: 0,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
  const server = createServer((req, res) => {
    state.requests++;
    const send = (status: number, body = '') => {
      res.writeHead(status, { 'Content-Type': 'text/plain' });
      res.end(body);
    };
    const url = req.url ?? '';
    if (req.method === 'PUT' && url === '/latest/api/token') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) return send(400);
      const token = randomBytes(16).toString('base64');
      tokens.add(token);
      return send(200, token);
    }
    if (req.method !== 'GET') return send(405);
    if (!tokens.has(String(req.headers['x-aws-ec2-metadata-token'] ?? ''))) return send(401);
    const path = url.replace(/^\/latest\/meta-data\//, '');
    if (path === 'instance-id') return send(200, state.instanceId);
    if (path === 'placement/availability-zone') return send(200, p.az);
    if (path === 'placement/region') return send(200, p.region);
    if (path === 'tags/instance' || path === 'tags/instance/') return send(200, Object.keys(state.tags).join('\n'));
    const tag = /^tags\/instance\/(.+)$/.exec(path);
    if (tag && state.tags[decodeURIComponent(tag[1]!)] !== undefined) return send(200, state.tags[decodeURIComponent(tag[1]!)]);
    return send(404);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}
