import { ChangeResourceRecordSetsCommand, GetChangeCommand, type Route53Client } from '@aws-sdk/client-route-53';
import { sleep } from '../../lib/sleep.js';
import type { Dns01Provider } from './renewer.js';

/**
 * Route 53: one TXT record set per challenge name holding every value set on
 * it (a wildcard and its base need two values on one name at once), each
 * change awaited until INSYNC so the ACME server's lookup sees it.
 *
 * Changes are sent one at a time: acme-client sets every authorization's
 * challenge concurrently, and an UPSERT replaces the whole record set, so two
 * UPSERTs in flight at once could reach Route 53 in either order and the one
 * with fewer values would win (and Route 53 may refuse a change that arrives
 * while another is processed, PriorRequestNotComplete). Each change carries
 * the values Route 53 has accepted so far plus its own; the waits for INSYNC
 * run side by side.
 */
export class Route53Dns01 implements Dns01Provider {
  private readonly values = new Map<string, string[]>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly route53: Pick<Route53Client, 'send'>,
    private readonly hostedZoneId: string,
    private readonly wait = { pollMs: 5_000, timeoutMs: 300_000 },
  ) {}

  async setTxt(fqdn: string, value: string): Promise<void> {
    const id = await this.serially(async () => {
      const values = [...(this.values.get(fqdn) ?? []), value];
      const change = await this.submit('UPSERT', fqdn, values);
      this.values.set(fqdn, values); // only what Route 53 accepted
      return change;
    });
    await this.untilInsync(id, fqdn);
  }

  async clearTxt(fqdn: string): Promise<void> {
    const id = await this.serially(async () => {
      const values = this.values.get(fqdn);
      if (!values) return undefined;
      const change = await this.submit('DELETE', fqdn, values);
      this.values.delete(fqdn);
      return change;
    });
    await this.untilInsync(id, fqdn);
  }

  /** Runs `fn` after every change submitted before it, whatever their outcome. */
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async submit(action: 'UPSERT' | 'DELETE', fqdn: string, values: string[]): Promise<{ id: string | undefined; status: string | undefined }> {
    const res = await this.route53.send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: this.hostedZoneId,
        ChangeBatch: {
          Comment: 'berth certificate renewer: ACME DNS-01',
          Changes: [{ Action: action, ResourceRecordSet: { Name: `${fqdn}.`, Type: 'TXT', TTL: 60, ResourceRecords: values.map((v) => ({ Value: JSON.stringify(v) })) } }],
        },
      }),
    );
    return { id: res.ChangeInfo?.Id, status: res.ChangeInfo?.Status };
  }

  private async untilInsync(change: { id: string | undefined; status: string | undefined } | undefined, fqdn: string): Promise<void> {
    if (!change?.id) return;
    const { id } = change;
    const deadline = Date.now() + this.wait.timeoutMs;
    let status = change.status;
    while (status !== 'INSYNC') {
      if (Date.now() > deadline) throw new Error(`Route 53 change ${id} for ${fqdn} was not INSYNC within ${this.wait.timeoutMs} ms`);
      await sleep(this.wait.pollMs);
      status = (await this.route53.send(new GetChangeCommand({ Id: id }))).ChangeInfo?.Status;
    }
  }
}
