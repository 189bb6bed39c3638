import { request, Agent as HttpAgent } from 'node:http';

/** Percentile of sorted-in-place samples (nearest rank). */
export function percentile(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const median = (xs: number[]) => percentile(xs, 50);

/** POSTs JSON to a unix socket; keep-alive like dockerd. */
export function unixPoster(socketPath: string) {
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  return (path: string, body: unknown = {}): Promise<{ status: number; json: Record<string, unknown> }> =>
    new Promise((resolve, reject) => {
      const payload = JSON.stringify(body);
      const req = request({ socketPath, path, method: 'POST', agent, headers: { 'Content-Length': Buffer.byteLength(payload) } }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(data) as Record<string, unknown> }));
      });
      req.on('error', reject);
      req.end(payload);
    });
}

export const fmtMs = (ms: number) => `${ms.toFixed(2)} ms`;

export function rssOf(pid: number, read: (p: string) => string): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(read(`/proc/${pid}/status`))?.[1];
  return Number(kb) * 1024;
}
