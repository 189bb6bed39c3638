import { EC2Client } from '@aws-sdk/client-ec2';
import { afterEach, describe, expect, it } from 'vitest';
import { zoneMovePolicy } from '../../infra/components/move-policy.js';
import { tagKeys } from '../../lib/node-contract.js';
import { EC2_PORT_METHODS, type Ec2Port } from '../../volume-plugin/backends/ebs/ec2-port.js';
import { SdkEc2 } from '../../volume-plugin/backends/ebs/sdk-ec2.js';
import { createZoneMover } from '../../volume-plugin/backends/ebs/zone-move.js';
import { Ec2Model } from '../aws/ec2-model.js';
import { allows } from '../aws/iam-policy.js';
import { describeRequest, iamRecorder, type IamRequest } from '../aws/iam-requests.js';

/**
 * The operator's move policy (infra/components/move-policy.ts, the unit stack's `movePolicyArn`) against
 * what `berth move` really sends: the move flows (a fresh move, one killed and resumed, an abort, a
 * restore from the latest snapshot) run over the SDK in front of the EC2 model; each call becomes the IAM
 * requests EC2 authorizes (test/aws/iam-requests.ts). Every request must be allowed, every EC2 action the
 * policy grants must be used, and the same flows on a volume of another cluster or environment must be
 * refused at their first change.
 */
const REGION = 'eu-west-1';
const ACCOUNT = '111122223333';
const k = tagKeys();
const FROM = `${REGION}a`;
const TO = `${REGION}b`;
const nodeTags = (cluster: string, environment = 'prod') => ({ [k.volume]: `${cluster}-db1`, [k.host]: `${cluster}-h1`, [k.cluster]: cluster, [k.environment]: environment, [k.managedBy]: 'berth', Name: `${cluster}-db1` });

let model: Ec2Model;
afterEach(() => model?.dispose());

class Crash extends Error {}

function world() {
  model = new Ec2Model({ region: REGION, accountId: ACCOUNT, throttling: false, snapshotLatencyMs: 4, createLatencyMs: 2 });
  const client = new EC2Client({ region: REGION, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' }, maxAttempts: 1 });
  model.installBehindSdkRetries(client);
  const seen = iamRecorder(model, client);
  return { seen, ec2: new SdkEc2(client) };
}

/** The port, "killed" once `method` was answered (its effect stays, the mover never learns it). */
function killedAfter(inner: Ec2Port, method: (typeof EC2_PORT_METHODS)[number]): Ec2Port {
  let dead = false;
  return Object.fromEntries(EC2_PORT_METHODS.map((m) => [m, async (input: unknown, signal: AbortSignal) => {
    if (dead) throw new Crash('the process is gone');
    const out = await (inner[m] as (i: unknown, s: AbortSignal) => Promise<unknown>)(input, signal);
    if (m === method) dead = true;
    return out;
  }])) as unknown as Ec2Port;
}

const moverOf = (ec2: Ec2Port, cluster = 'shop', environment = 'prod') => createZoneMover({ ec2, keys: k, cluster, environment, pollMs: 1, settleMs: 1 });
const policy = zoneMovePolicy({ region: REGION, accountId: ACCOUNT, environment: 'prod', cluster: 'shop' });
const denied = (seen: IamRequest[]) => seen.filter((r) => !allows([policy], r.action, r.resource, r.ctx)).map(describeRequest);

describe('the operator move policy against berth move\'s calls', () => {
  it('allows every call of a move, a move killed and resumed, an abort and a restore from the latest snapshot; grants no EC2 action they do not use', async () => {
    const all: IamRequest[] = [];
    // A fresh move.
    {
      const { seen, ec2 } = world();
      model.addVolume({ az: FROM, size: 20, type: 'gp3', tags: nodeTags('shop') });
      await moverOf(ec2).move({ name: 'shop-db1', zone: TO });
      expect(await moverOf(ec2).status('shop-db1')).toBeUndefined();
      all.push(...seen);
      model.dispose();
    }
    // Killed after the new volume was made, resumed by another process; then killed again and aborted.
    for (const then of ['resume', 'abort'] as const) {
      const { seen, ec2 } = world();
      model.addVolume({ az: FROM, size: 20, type: 'gp3', tags: nodeTags('shop') });
      await expect(moverOf(killedAfter(ec2, 'createVolume')).move({ name: 'shop-db1', zone: TO })).rejects.toThrow(Crash);
      await model.settled();
      if (then === 'resume') expect((await moverOf(ec2).move({ name: 'shop-db1', zone: TO })).already).toBe(false);
      else expect((await moverOf(ec2).abort('shop-db1')).retired).toMatch(/^vol-/);
      all.push(...seen);
      model.dispose();
    }
    // From a zone that is gone: the latest snapshot (DLM's, with the volume's tags), then the restore.
    {
      const { seen, ec2 } = world();
      const source = model.addVolume({ az: FROM, size: 20, type: 'gp3', tags: nodeTags('shop') });
      const snap = model.addSnapshot({ size: 20, volumeId: source, tags: { ...nodeTags('shop'), [k.snapshot]: 'dlm' } });
      const plan = await moverOf(ec2).planFromSnapshot('shop-db1');
      expect(plan.snapshotId).toBe(snap);
      await moverOf(ec2).move({ name: 'shop-db1', zone: TO, fromSnapshot: snap });
      all.push(...seen);
      model.dispose();
    }
    expect(denied(all)).toEqual([]);
    const granted = new Set(policy.Statement.flatMap((s) => s.Action).filter((a) => a.startsWith('ec2:')));
    const used = new Set(all.map((r) => r.action));
    expect([...granted].filter((a) => !used.has(a)).sort(), 'granted but never used').toEqual([]);
    expect([...used].filter((a) => !granted.has(a)).sort(), 'used but never granted').toEqual([]);
  });

  it('refuses the move of a volume of another cluster or environment, and a restore from another cluster\'s snapshot, at the first change', async () => {
    for (const [cluster, environment] of [['other', 'prod'], ['shop', 'staging']] as const) {
      const { seen, ec2 } = world();
      const source = model.addVolume({ az: FROM, size: 20, type: 'gp3', tags: nodeTags(cluster, environment) });
      await moverOf(ec2, cluster, environment).move({ name: `${cluster}-db1`, zone: TO });
      const changes = seen.filter((r) => r.resource !== '*');
      expect(changes.length, `${cluster}/${environment}`).toBeGreaterThan(5);
      expect(denied(changes), `${cluster}/${environment}`).toEqual(changes.map(describeRequest));
      // A restore of this cluster's node from that snapshot (a hand-made journal pointing at it) is refused on the snapshot.
      const foreign = model.snapshotList().find((s) => s.volumeId === source)!.snapshotId;
      const restore = seen.find((r) => r.action === 'ec2:CreateVolume' && r.resource.endsWith(foreign))!;
      expect(allows([policy], restore.action, restore.resource, restore.ctx)).toBe(false);
      // The cluster API's statements (no cluster): every cluster of its environment, no other environment.
      const api = zoneMovePolicy({ region: REGION, accountId: ACCOUNT, environment: 'prod', sidPrefix: 'ClusterApiMove' });
      const apiDenied = seen.filter((r) => !allows([api], r.action, r.resource, r.ctx)).map(describeRequest);
      expect(apiDenied, `${cluster}/${environment}`).toEqual(environment === 'prod' ? [] : changes.map(describeRequest));
      model.dispose();
    }
  });
});
