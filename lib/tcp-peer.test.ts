import { connect, createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { localPeerUid } from './tcp-peer.js';

/** The uid localPeerUid finds for a connection from this process to a server listening on host. */
async function peerUidVia(host: string, connectTo: string): Promise<number | undefined> {
  let client: Socket | undefined;
  const uid = await new Promise<number | undefined>((resolve, reject) => {
    const server = createServer((socket) => {
      localPeerUid(socket).then(resolve, reject).finally(() => {
        socket.destroy();
        server.close();
      });
    });
    server.listen(0, host, () => {
      const addr = server.address();
      client = connect(typeof addr === 'object' && addr ? addr.port : 0, connectTo);
      client.on('error', reject);
    });
  });
  client?.destroy();
  return uid;
}

describe('localPeerUid', () => {
  it.each([
    ['IPv4 loopback', '127.0.0.1', '127.0.0.1'],
    ['IPv6 loopback', '::1', '::1'],
    ['an IPv4 client of a dual-stack listener', '::', '127.0.0.1'],
  ])('finds this process\'s own uid for %s', async (_what, host, connectTo) => {
    expect(await peerUidVia(host, connectTo)).toBe(process.getuid!());
  });

  it('finds nobody for ends that no socket on this host has', async () => {
    expect(await localPeerUid({ remoteAddress: '192.0.2.1', remotePort: 40000, localAddress: '127.0.0.1', localPort: 9470 })).toBeUndefined();
    expect(await localPeerUid({})).toBeUndefined();
  });
});
