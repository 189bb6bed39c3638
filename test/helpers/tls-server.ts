import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, connect, type Server, createSecureContext } from 'node:tls';
import { dirname } from 'node:path';
import { parse } from 'yaml';

/**
 * A TLS server that behaves like Traefik's file provider, which cannot run
 * here: it watches the dynamic configuration *directory*, and on any change
 * re-reads the dynamic file and serves the default certificate it names.
 * Connections already open keep the context they started with.
 */
export async function startReloadingTlsServer(dynamicFile: string): Promise<{ port: number; reloads(): number; close(): Promise<void> }> {
  let reloads = 0;
  const load = async () => {
    const conf = parse(await readFile(dynamicFile, 'utf8')) as { tls: { stores: { default: { defaultCertificate: { certFile: string; keyFile: string } } } } };
    const { certFile, keyFile } = conf.tls.stores.default.defaultCertificate;
    return createSecureContext({ cert: await readFile(certFile), key: await readFile(keyFile) });
  };
  let context = await load();
  const server: Server = createServer({ SNICallback: (_name, cb) => cb(null, context) }, (socket) => socket.end('ok'));
  let pending: NodeJS.Timeout | undefined;
  const watcher: FSWatcher = watch(dirname(dynamicFile), () => {
    // Traefik debounces file events too (by about 2 s); a short one keeps tests quick.
    clearTimeout(pending);
    pending = setTimeout(() => {
      load().then(
        (c) => {
          context = c;
          reloads++;
        },
        () => undefined, // a half-written file is ignored, the old context stays, as Traefik does
      );
    }, 50);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    reloads: () => reloads,
    async close() {
      watcher.close();
      clearTimeout(pending);
      await new Promise((r) => server.close(r));
    },
  };
}

/** One TLS handshake; resolves the served certificate's SHA-256 fingerprint. */
export function handshake(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? '';
      socket.destroy();
      resolve(fp);
    });
    socket.setTimeout(5_000, () => socket.destroy(new Error('handshake timed out')));
    socket.on('error', reject);
  });
}
