import { ChangeResourceRecordSetsCommand, GetChangeCommand, type Route53Client } from '@aws-sdk/client-route-53';
import { sleep } from '../../lib/sleep.js';
import type { Dns01Provider } from './renewer.js';

/**
 * Route 53: one TXT record set per challenge name holding every value set on
 * it (a wildcard and its base need two values on one name at once), each
 * change awaited until INSYNC so the ACME server's lookup sees it.
 */
export class Route53Dns01 implements Dns01Provider {
  private readonly values = new Map<string, string[]>();

  constructor(
    private readonly route53: Pick<Route53Client, 'send'>,
    private readonly hostedZoneId: string,
    private readonly wait = { pollMs: 5_000, timeoutMs: 300_000 },
  ) {}

  async setTxt(fqdn: string, value: string): Promise<void> {
    const values = [...(this.values.get(fqdn) ?? []), value];
    this.values.set(fqdn, values);
    await this.change('UPSERT', fqdn, values);
  }

  async clearTxt(fqdn: string): Promise<void> {
    const values = this.values.get(fqdn);
    if (!values) return;
    await this.change('DELETE', fqdn, values);
    this.values.delete(fqdn);
  }

  private async change(action: 'UPSERT' | 'DELETE', fqdn: string, values: string[]): Promise<void> {
    const res = await this.route53.send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: this.hostedZoneId,
        ChangeBatch: {
          Comment: 'berth certificate renewer: ACME DNS-01',
          Changes: [{ Action: action, ResourceRecordSet: { Name: `${fqdn}.`, Type: 'TXT', TTL: 60, ResourceRecords: values.map((v) => ({ Value: JSON.stringify(v) })) } }],
        },
      }),
    );
    const id = res.ChangeInfo?.Id;
    const deadline = Date.now() + this.wait.timeoutMs;
    let status = res.ChangeInfo?.Status;
    while (id && status !== 'INSYNC') {
      if (Date.now() > deadline) throw new Error(`Route 53 change ${id} for ${fqdn} was not INSYNC within ${this.wait.timeoutMs} ms`);
      await sleep(this.wait.pollMs);
      status = (await this.route53.send(new GetChangeCommand({ Id: id }))).ChangeInfo?.Status;
    }
  }
}
