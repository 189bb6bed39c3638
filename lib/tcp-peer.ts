import { readFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { endianness } from 'node:os';

/**
 * The user owning the other end of a TCP connection, when that end is a
 * socket on this host (in this network namespace): the kernel lists every
 * socket with its owner's uid in /proc/net/tcp and tcp6 (proc(5)), so a
 * connection from 127.0.0.1:P to our port is found as the row whose local
 * address is 127.0.0.1:P and whose remote address is our end. A peer on
 * another host, or in another network namespace, has no row: undefined.
 */

export interface TcpEnds {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  localAddress?: string | undefined;
  localPort?: number | undefined;
}

/** 16 bytes of an IPv6 address in text form (with :: and a dotted IPv4 tail). */
function ipv6Bytes(address: string): number[] {
  let text = address.replace(/%.*$/, '');
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return words.flatMap((w) => {
    const n = parseInt(w, 16);
    return [n >> 8, n & 0xff];
  });
}

/** An address as /proc/net/tcp{,6} prints it: 32-bit words in host byte order, hex. */
function procHex(bytes: number[]): string {
  const little = endianness() === 'LE';
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    const word = bytes.slice(i, i + 4);
    out += (little ? word.reverse() : word).map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return out.toUpperCase();
}

/** Every way the kernel may list this address: [file, hex] pairs. */
function procForms(address: string): Array<['tcp' | 'tcp6', string]> {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return [['tcp', procHex(mapped.split('.').map(Number))], ['tcp6', procHex(ipv6Bytes(address))]];
  if (isIPv4(address)) return [['tcp', procHex(address.split('.').map(Number))], ['tcp6', procHex(ipv6Bytes(`::ffff:${address}`))]];
  if (isIPv6(address)) return [['tcp6', procHex(ipv6Bytes(address))]];
  return [];
}

const port = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');

export async function localPeerUid(ends: TcpEnds, procNet = '/proc/net'): Promise<number | undefined> {
  const { remoteAddress, remotePort, localAddress, localPort } = ends;
  if (!remoteAddress || !remotePort || !localAddress || !localPort) return undefined;
  const ours = new Map(procForms(localAddress));
  const uids = new Set<number>();
  for (const [file, peerHex] of procForms(remoteAddress)) {
    const ourHex = ours.get(file);
    if (!ourHex) continue;
    const want = [`${peerHex}:${port(remotePort)}`, `${ourHex}:${port(localPort)}`];
    const text = await readFile(`${procNet}/${file}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === want[0] && f[2] === want[1] && f[7] !== undefined) uids.add(Number(f[7]));
    }
  }
  // Two owners for one address pair cannot happen for a live connection: believe neither.
  return uids.size === 1 ? [...uids][0] : undefined;
}
