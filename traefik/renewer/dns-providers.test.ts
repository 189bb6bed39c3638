import { ChangeResourceRecordSetsCommand, GetChangeCommand, InvalidChangeBatch, Route53Client } from '@aws-sdk/client-route-53';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { Route53Model } from '../../test/aws/route53-model.js';
import { Route53Dns01 } from './dns-providers.js';

/** A hosted zone that enforces Route 53's rules for TXT changes, with changes that take two polls to sync. */
function zoneModel() {
  const client = new Route53Client({ region: 'us-east-1' });
  const mock = mockClient(client);
  const records = new Map<string, string[]>();
  const polls = new Map<string, number>();
  let seq = 0;
  mock.on(ChangeResourceRecordSetsCommand).callsFake((input) => {
    for (const change of input.ChangeBatch.Changes) {
      const name = change.ResourceRecordSet.Name;
      const values = change.ResourceRecordSet.ResourceRecords.map((r: { Value: string }) => r.Value);
      if (change.Action === 'DELETE') {
        if (JSON.stringify(records.get(name)) !== JSON.stringify(values)) {
          throw new InvalidChangeBatch({ $metadata: {}, message: `Tried to delete resource record set [name='${name}', type='TXT'] but the values provided do not match the current values` });
        }
        records.delete(name);
      } else records.set(name, values);
    }
    const id = `/change/C${++seq}`;
    polls.set(id, 0);
    return { ChangeInfo: { Id: id, Status: 'PENDING', SubmittedAt: new Date() } };
  });
  mock.on(GetChangeCommand).callsFake(({ Id }) => {
    const n = (polls.get(Id) ?? 0) + 1;
    polls.set(Id, n);
    return { ChangeInfo: { Id, Status: n >= 2 ? 'INSYNC' : 'PENDING', SubmittedAt: new Date() } };
  });
  return { client, mock, records };
}

describe('Route 53 DNS-01 provider', () => {
  it('keeps both values of a wildcard and its base on one name, waits for INSYNC, and deletes exactly what it set', async () => {
    const { client, mock, records } = zoneModel();
    const dns = new Route53Dns01(client, 'Z123', { pollMs: 1, timeoutMs: 1_000 });
    await dns.setTxt('_acme-challenge.db.example.com', 'token-base');
    await dns.setTxt('_acme-challenge.db.example.com', 'token-wildcard');
    expect(records.get('_acme-challenge.db.example.com.')).toEqual(['"token-base"', '"token-wildcard"']);
    expect(mock.commandCalls(GetChangeCommand).length).toBe(4); // two polls per change
    await dns.clearTxt('_acme-challenge.db.example.com');
    expect(records.size).toBe(0);
    await dns.clearTxt('_acme-challenge.db.example.com'); // nothing left to clear: no call
    expect(mock.commandCalls(ChangeResourceRecordSetsCommand).length).toBe(3);
  });

  it('gives up with a clear error when a change never syncs', async () => {
    const { client, mock } = zoneModel();
    mock.on(GetChangeCommand).resolves({ ChangeInfo: { Id: 'x', Status: 'PENDING', SubmittedAt: new Date() } });
    const dns = new Route53Dns01(client, 'Z123', { pollMs: 5, timeoutMs: 30 });
    await expect(dns.setTxt('_acme-challenge.a.example.com', 'v')).rejects.toThrow(/was not INSYNC within 30 ms/);
  });
});

describe('Route 53 DNS-01 provider against a Route 53 model whose UPSERT replaces the record set', () => {
  it('keeps the apex and wildcard values when acme-client sets both at once and the first request reaches Route 53 last', async () => {
    // acme-client's auto() runs every authorization's challengeCreateFn concurrently; a wildcard
    // and its base share one _acme-challenge name. The first UPSERT is slow on the wire.
    const model = new Route53Model({ zones: { Z123: 'example.com' }, arrivalDelayMs: (n) => (n === 0 ? 100 : 0), insyncAfterMs: 20 });
    const client = new Route53Client({ region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    model.install(client);
    const dns = new Route53Dns01(client, 'Z123', { pollMs: 5, timeoutMs: 5_000 });
    await Promise.all([dns.setTxt('_acme-challenge.db.example.com', 'token-base'), dns.setTxt('_acme-challenge.db.example.com', 'token-wildcard')]);
    expect(model.values('Z123', '_acme-challenge.db.example.com')?.sort()).toEqual(['"token-base"', '"token-wildcard"']);
    // DELETE must name exactly the current values (Route 53 refuses anything else).
    await dns.clearTxt('_acme-challenge.db.example.com');
    expect(model.values('Z123', '_acme-challenge.db.example.com')).toBeUndefined();
  });

  it('a refused change leaves the values it meant to add out of later changes', async () => {
    const model = new Route53Model({ zones: { Z123: 'example.com' } });
    const client = new Route53Client({ region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    model.install(client);
    const dns = new Route53Dns01(client, 'Z123', { pollMs: 1, timeoutMs: 1_000 });
    // A TXT string is at most 255 characters: Route 53 refuses the whole change.
    await expect(dns.setTxt('_acme-challenge.db.example.com', 'x'.repeat(300))).rejects.toThrow(InvalidChangeBatch);
    await dns.setTxt('_acme-challenge.db.example.com', 'ok');
    expect(model.values('Z123', '_acme-challenge.db.example.com')).toEqual(['"ok"']);
  });
});
