import type { Dns01Provider } from '../../traefik/renewer/renewer.js';

/** pebble-challtestsrv's management API, for tests against a real ACME server. */
export class ChallTestSrvDns01 implements Dns01Provider {
  constructor(private readonly managementUrl: string) {}

  async setTxt(fqdn: string, value: string): Promise<void> {
    await this.post('/set-txt', { host: `${fqdn}.`, value });
  }

  async clearTxt(fqdn: string): Promise<void> {
    await this.post('/clear-txt', { host: `${fqdn}.` });
  }

  private async post(path: string, body: unknown): Promise<void> {
    const res = await fetch(`${this.managementUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`challtestsrv ${path} answered ${res.status}`);
  }
}
