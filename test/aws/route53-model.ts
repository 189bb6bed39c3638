import { randomBytes } from 'node:crypto';
import { InvalidChangeBatch, NoSuchChange, NoSuchHostedZone, type Change, type ChangeResourceRecordSetsCommandInput, type GetChangeCommandInput, type Route53Client } from '@aws-sdk/client-route-53';
import { sleep } from '../../lib/sleep.js';

/**
 * A stateful model of the part of Route 53 the certificate renewer uses: record sets of hosted
 * zones, ChangeResourceRecordSets and GetChange. The rules, from the Route 53 API Reference
 * (ChangeResourceRecordSets, GetChange) and Developer Guide ("Values that you specify when you
 * create or edit records"):
 *
 * - A record set is (name, type) with a TTL and a list of values; names compare case-insensitively
 *   with a trailing dot. A batch is applied atomically, in order, or not at all.
 * - `UPSERT` creates the record set or replaces it whole: values not in the request are gone.
 *   `CREATE` of an existing set and `DELETE` of a missing one, or with other TTL or values than the
 *   current ones, fail the batch with InvalidChangeBatch.
 * - A TXT value is one or more quoted strings of at most 255 characters each.
 * - A change is `PENDING` until every authoritative server has it, then `INSYNC` (GetChange).
 *
 * And one property of the network in front of it: concurrent requests travel on separate
 * connections and reach Route 53 in no fixed order. `arrivalDelayMs(n)` delays the n-th request
 * (0-based) before it is applied, so a test can make a later request overtake an earlier one.
 * `onApply` sees every record set as applied (e.g. to serve it from pebble-challtestsrv's DNS).
 */
export interface Route53ModelOptions {
  readonly zones: Readonly<Record<string, string>>; // zone id → zone name
  readonly arrivalDelayMs?: (request: number) => number;
  readonly insyncAfterMs?: number;
  readonly onApply?: (name: string, type: string, values: readonly string[] | undefined) => Promise<void>;
}

interface RecordSet { ttl: number | undefined; values: string[] }

export class Route53Model {
  private readonly records = new Map<string, Map<string, RecordSet>>();
  private readonly changes = new Map<string, number>();
  private requests = 0;

  constructor(private readonly opts: Route53ModelOptions) {
    for (const id of Object.keys(opts.zones)) this.records.set(id, new Map());
  }

  /** Answers the client's commands from the model, after the SDK's own middleware; any other command rejects. Returns a remover. */
  install(client: Route53Client): () => void {
    const name = `berth-route53-model-${randomBytes(4).toString('hex')}`;
    client.middlewareStack.add(
      (_next, context) => async (args) => {
        const output = await this.dispatch(context.commandName ?? '', args.input);
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the middleware's output type is the union of every command's
        return { output: { ...output, $metadata: { httpStatusCode: 200 } } as any, response: {} };
      },
      { step: 'finalizeRequest', priority: 'low', name },
    );
    return () => void client.middlewareStack.remove(name);
  }

  /** The values of a record set now, or undefined. */
  values(zoneId: string, name: string, type = 'TXT'): string[] | undefined {
    return this.records.get(zoneId)?.get(`${normal(name)}|${type}`)?.values;
  }

  private async dispatch(command: string, input: unknown): Promise<Record<string, unknown>> {
    if (command === 'ChangeResourceRecordSetsCommand') return this.change(input as ChangeResourceRecordSetsCommandInput);
    if (command === 'GetChangeCommand') return this.getChange(input as GetChangeCommandInput);
    throw new Error(`Route53Model: ${command} is not modelled`);
  }

  private async change(input: ChangeResourceRecordSetsCommandInput): Promise<Record<string, unknown>> {
    const n = this.requests++;
    const delay = this.opts.arrivalDelayMs?.(n) ?? 0;
    if (delay > 0) await sleep(delay);
    const zoneId = String(input.HostedZoneId).replace(/^\/hostedzone\//, '');
    const zone = this.records.get(zoneId);
    if (!zone) throw new NoSuchHostedZone({ $metadata: { httpStatusCode: 404 }, message: `No hosted zone found with ID: ${zoneId}` });
    const next = new Map([...zone].map(([k, v]) => [k, { ...v, values: [...v.values] }]));
    const touched: string[] = [];
    for (const c of input.ChangeBatch?.Changes ?? []) this.apply(zoneId, next, c, touched);
    this.records.set(zoneId, next);
    for (const key of touched) {
      const [name, type] = key.split('|') as [string, string];
      await this.opts.onApply?.(name, type, next.get(key)?.values);
    }
    const id = `/change/C${randomBytes(8).toString('hex').toUpperCase()}`;
    this.changes.set(id, Date.now());
    return { ChangeInfo: { Id: id, Status: 'PENDING', SubmittedAt: new Date() } };
  }

  private apply(zoneId: string, zone: Map<string, RecordSet>, c: Change, touched: string[]): void {
    const set = c.ResourceRecordSet;
    if (!set?.Name || !set.Type) throw invalid('a change needs a record set with Name and Type');
    const name = normal(set.Name);
    if (!name.endsWith(`${normal(this.opts.zones[zoneId]!)}`)) throw invalid(`RRSet with DNS name ${name} is not permitted in zone ${this.opts.zones[zoneId]}`);
    const key = `${name}|${set.Type}`;
    const values = (set.ResourceRecords ?? []).map((r) => String(r.Value));
    if (set.Type === 'TXT') {
      const bad = values.find((v) => !/^("([^"\\]|\\.){0,255}"\s*)+$/.test(v));
      if (bad !== undefined) throw invalid(`Invalid Resource Record: FATAL problem: InvalidCharacterString (Value should be enclosed in quotation marks) encountered with '${bad}'`);
    }
    const current = zone.get(key);
    const desc = `[name='${name}', type='${set.Type}']`;
    switch (c.Action) {
      case 'CREATE':
        if (current) throw invalid(`Tried to create resource record set ${desc} but it already exists`);
        zone.set(key, { ttl: set.TTL, values });
        break;
      case 'UPSERT':
        zone.set(key, { ttl: set.TTL, values });
        break;
      case 'DELETE':
        if (!current) throw invalid(`Tried to delete resource record set ${desc} but it was not found`);
        if (current.ttl !== set.TTL || JSON.stringify([...current.values].sort()) !== JSON.stringify([...values].sort())) {
          throw invalid(`Tried to delete resource record set ${desc} but the values provided do not match the current values`);
        }
        zone.delete(key);
        break;
      default:
        throw invalid(`unknown action ${String(c.Action)}`);
    }
    touched.push(key);
  }

  private async getChange(input: GetChangeCommandInput): Promise<Record<string, unknown>> {
    const id = String(input.Id).startsWith('/change/') ? String(input.Id) : `/change/${String(input.Id)}`;
    const at = this.changes.get(id);
    if (at === undefined) throw new NoSuchChange({ $metadata: { httpStatusCode: 404 }, message: `A change with the specified change ID does not exist: ${id}` });
    const insync = Date.now() - at >= (this.opts.insyncAfterMs ?? 0);
    return { ChangeInfo: { Id: id, Status: insync ? 'INSYNC' : 'PENDING', SubmittedAt: new Date(at) } };
  }
}

const normal = (name: string) => `${name.toLowerCase().replace(/\.$/, '')}.`;
const invalid = (message: string) => new InvalidChangeBatch({ $metadata: { httpStatusCode: 400 }, message });
