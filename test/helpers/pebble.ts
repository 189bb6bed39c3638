import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as acme from 'acme-client';
import { sleep } from '../../lib/sleep.js';
import { ChallTestSrvDns01 } from './challtestsrv-dns01.js';
import { freePort } from './env.js';

/** Why pebble tests cannot run here, or undefined when they can (Debian: apt-get install pebble openssl). */
export const noPebbleReason = ['pebble', 'pebble-challtestsrv', 'openssl'].every((t) => {
  try {
    execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}) ? undefined : 'needs pebble, pebble-challtestsrv and openssl (apt-get install pebble openssl)';

export interface Pebble {
  readonly directoryUrl: string;
  /** DNS-01 answers through pebble-challtestsrv, the DNS server pebble validates against. */
  readonly dns: ChallTestSrvDns01;
  /** pebble-challtestsrv's management API (what `dns` talks to). */
  readonly managementUrl: string;
  stop(): void;
}

/**
 * A real ACME server on localhost: Debian's pebble with pebble-challtestsrv as its DNS server
 * (as test/renewer-pebble.test.ts runs it). pebble has no certificate for its own HTTPS listener:
 * a throwaway CA signs one for 127.0.0.1, and acme-client is told to trust that CA.
 */
export async function startPebble(): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-pebble-'));
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=berth test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-keyout', 'key.pem', '-out', 'req.csr');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ossl('x509', '-req', '-in', 'req.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'ext.cnf', '-out', 'cert.pem');
  acme.axios.defaults.httpsAgent = new HttpsAgent({ ca: readFileSync(join(dir, 'ca.pem')) });

  const [dnsPort, mgmtPort, acmePort, pebbleMgmt] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const procs: ChildProcess[] = [
    spawn('pebble-challtestsrv', ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${mgmtPort}`], { stdio: 'ignore' }),
  ];
  writeFileSync(join(dir, 'pebble.json'), JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`, managementListenAddress: `127.0.0.1:${pebbleMgmt}`,
      certificate: join(dir, 'cert.pem'), privateKey: join(dir, 'key.pem'), httpPort: 5002, tlsPort: 5001, ocspResponderURL: '', externalAccountBindingRequired: false,
    },
  }));
  procs.push(spawn('pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], {
    stdio: 'ignore', env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_AUTHZREUSE: '0', PEBBLE_WFE_NONCEREJECT: '0' },
  }));
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
  const stop = () => {
    for (const p of procs) p.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    try {
      await acme.axios.get(directoryUrl);
      break;
    } catch (err) {
      if (i >= 100) {
        stop();
        throw new Error(`pebble did not answer at ${directoryUrl}: ${String(err)}`);
      }
      await sleep(100);
    }
  }
  const managementUrl = `http://127.0.0.1:${mgmtPort}`;
  return { directoryUrl, dns: new ChallTestSrvDns01(managementUrl), managementUrl, stop };
}
