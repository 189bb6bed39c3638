import { describe, expect, it } from 'vitest';
import { isBerthError } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { tagKeys } from '../../../lib/node-contract.js';
import { EC2_PORT_METHODS, type Ec2Port } from '../../../volume-plugin/backends/ebs/ec2-port.js';
import { createZoneMover, liveVolumes, parseJournal, type MoveResult } from '../../../volume-plugin/backends/ebs/zone-move.js';
import { Ec2Model } from '../../aws/ec2-model.js';

/**
 * Two movers of one volume (two operators, or an operator and the cluster API; docs/design.md §6, "Two
 * movers"), against the EC2 model with its tag lag (DescribeVolumes shows tags as they were TAG_LAG_MS
 * ago, to every reader): the second starts after each EC2 call of the first, and at moments within the
 * lag of the first's claim. Whatever the interleaving: exactly one live volume at every call either
 * makes, one live volume at the end, holding the data, the source retired if the move went through;
 * every other volume and snapshot either made is tagged for the retention (retired / retain-until);
 * and a run that did not win is told so in the words the operator needs.
 */
const k = tagKeys();
const FROM = 'eu-west-1a';
const TO = 'eu-west-1b';
const NAME = 'c1-db1';
const NODE_TAGS = { [k.volume]: NAME, [k.host]: 'h1', [k.cluster]: 'c1', [k.environment]: 'prod', [k.managedBy]: 'berth' };
/** EC2's tag read-after-write lag in the model, and the movers' settle time (above twice the lag plus a call). */
const TAG_LAG_MS = 15;
const SETTLE_MS = 80;

interface World { model: Ec2Model; source: string; violations: string[] }

function world(lagMs = TAG_LAG_MS): World {
  const model = new Ec2Model({ throttling: false, snapshotLatencyMs: 6, createLatencyMs: 3, tagLagMs: lagMs });
  const source = model.addVolume({ az: FROM, size: 50, type: 'gp3', tags: NODE_TAGS });
  model.writeContent(source, 'pgdata as of the stop');
  return { model, source, violations: [] };
}

/** The live volumes of the name as a reader (the EBS backend's lookup) sees them now. */
async function live(model: Ec2Model): Promise<string[]> {
  const port = model.port();
  const signal = new AbortController().signal;
  const named = (await port.describeVolumes({ Filters: [{ Name: `tag:${k.volume}`, Values: [NAME] }] }, signal)).Volumes ?? [];
  return (await liveVolumes(named, k, async (id) => (await port.describeVolumes({ VolumeIds: [id] }, signal)).Volumes?.[0])).map((v) => v.VolumeId!);
}

/** A mover's port: checks the single-live invariant before each call and calls `after(n)` once its n-th call was answered. */
function port(w: World, after?: (calls: number) => void): Ec2Port {
  const inner = w.model.port();
  let calls = 0;
  return Object.fromEntries(EC2_PORT_METHODS.map((m) => [m, async (input: unknown, signal: AbortSignal) => {
    const seen = await live(w.model);
    if (seen.length !== 1) w.violations.push(`${seen.length} live volumes before ${m}: ${seen.join(', ')}`);
    const out = await (inner[m] as (i: unknown, s: AbortSignal) => Promise<unknown>)(input, signal);
    after?.(++calls);
    return out;
  }])) as unknown as Ec2Port;
}

const mover = (ec2: Ec2Port) => createZoneMover({ ec2, keys: k, cluster: 'c1', environment: 'prod', pollMs: 2, settleMs: SETTLE_MS });

/** What the run that did not win may be told: never anything else. */
const LOSER = /another move of c1-db1 \(vol-\w+\) is in progress since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(to eu-west-1[bc], step \w+\); run it again to resume it \(berth move c1-db1 --zone eu-west-1[bc]\), or --abort/;
const ABORTED = /the move of c1-db1 \(vol-\w+\) was aborted while this run went on/;

/** Runs two contenders, the second started once the first has made `startAfter` calls (0: together). */
async function race<B>(w: World, startAfter: number, first: (ec2: Ec2Port) => Promise<MoveResult>, second: (ec2: Ec2Port) => Promise<B>) {
  let started: Promise<B> | undefined;
  let go!: () => void;
  const kicked = new Promise<void>((resolve) => (go = resolve));
  const start = () => {
    started ??= second(port(w)).finally(go);
    return started;
  };
  if (startAfter === 0) void start().catch(() => undefined);
  const a = first(port(w, (n) => n === startAfter && void start().catch(() => undefined)));
  const [ra] = await Promise.allSettled([a]);
  // A first that ended before its n-th call never started the second: start it now (it finds the move done).
  if (!started) void start().catch(() => undefined);
  await kicked;
  const [rb] = await Promise.allSettled([started!]);
  await w.model.settled();
  await sleep(TAG_LAG_MS * 2);
  return { a: ra!, b: rb! };
}

const reason = (r: PromiseSettledResult<unknown>) => (r.status === 'rejected' ? String((r.reason as Error).message) : 'ok');

/** The end state every interleaving must reach. */
async function expectOneLiveVolume(w: World, moved: boolean, zones = [TO]) {
  const { model, source } = w;
  expect(w.violations).toEqual([]);
  const ids = await live(model);
  expect(ids).toHaveLength(1);
  const node = model.volume(ids[0]!);
  expect(model.content(node.volumeId)).toBe('pgdata as of the stop');
  if (moved) {
    expect(zones).toContain(node.az);
    expect(node.volumeId).not.toBe(source);
    expect(model.volume(source).tags[k.retired]).toBeDefined();
    expect(parseJournal(model.volume(source).tags[k.move])?.step).toBe('done');
  } else {
    expect(node.volumeId).toBe(source);
    expect(model.volume(source).tags[k.move]).toBeUndefined();
  }
  // Nothing leaked untagged: every other volume is retired and kept until a date; every snapshot carries its move and date.
  for (const v of model.volumes().filter((x) => x.volumeId !== node.volumeId)) {
    expect(v.tags[k.retired], `${v.volumeId} retired`).toBeDefined();
    expect(v.tags[k.retainUntil], `${v.volumeId} retain-until`).toMatch(/^\d{4}-\d\d-\d\d$/);
  }
  for (const s of model.snapshotList()) expect(s.tags, s.snapshotId).toMatchObject({ [k.moveOf]: expect.stringMatching(/^vol-/), [k.retainUntil]: expect.stringMatching(/^\d{4}-/) });
  // Never deleted.
  expect(model.hasVolume(source)).toBe(true);
}

/** Runs `each(i)` for i in [from, to], four at a time (each interleaving has a model of its own). */
async function pooled(from: number, to: number, each: (i: number) => Promise<void>): Promise<void> {
  let next = from;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next <= to) await each(next++);
  }));
}

/** How many EC2 calls one uncontended move makes (the points the second mover starts after). */
async function callsOfOneMove(): Promise<number> {
  const w = world(0);
  let calls = 0;
  await mover(port(w, (n) => (calls = n))).move({ name: NAME, zone: TO });
  w.model.dispose();
  return calls;
}

describe('two movers of one volume (unit, EC2 model with tag lag)', () => {
  it('a second mover started after each EC2 call of the first, or together: one live volume at every call and at the end, the source retired, leftovers tagged, a loser told', async () => {
    const points = await callsOfOneMove();
    expect(points).toBeGreaterThan(10);
    const outcomes = new Set<string>();
    await pooled(0, points, async (after) => {
      const w = world();
      const { a, b } = await race(w, after, (ec2) => mover(ec2).move({ name: NAME, zone: TO }), (ec2) => mover(ec2).move({ name: NAME, zone: TO }));
      const at = `second mover after call ${after}: ${reason(a)} / ${reason(b)}`;
      for (const r of [a, b]) if (r.status === 'rejected') expect(reason(r), at).toMatch(LOSER);
      expect([a, b].some((r) => r.status === 'fulfilled'), at).toBe(true);
      await expectOneLiveVolume(w, true);
      // The move's one new volume: the winner's, or the one both runs of the same move share (its ClientToken).
      expect(w.model.volumes().filter((v) => !v.tags[k.retired]).length, at).toBe(1);
      outcomes.add(a.status === 'rejected' || b.status === 'rejected' ? 'a claim lost' : 'both drove the one move');
      w.model.dispose();
    });
    // Both kinds of interleaving happened: the claim race (within the lag), and the one move driven by both.
    expect([...outcomes].sort()).toEqual(['a claim lost', 'both drove the one move']);
  });

  it('two movers starting within the tag lag of each other, also to different zones: one claim wins, the other is told and makes nothing', async () => {
    let claimsLost = 0;
    for (const offset of [0, 2, 5, 10]) {
      for (const zoneB of [TO, 'eu-west-1c']) {
        const w = world();
        const a = mover(port(w)).move({ name: NAME, zone: TO });
        await sleep(offset);
        const b = mover(port(w)).move({ name: NAME, zone: zoneB });
        const [ra, rb] = await Promise.allSettled([a, b]);
        await w.model.settled();
        await sleep(TAG_LAG_MS * 2);
        const at = `offset ${offset} ms, to ${zoneB}: ${reason(ra!)} / ${reason(rb!)}`;
        const lost = [ra, rb].filter((r) => r!.status === 'rejected');
        if (lost.length === 0) {
          // The second read the first's claim after all (a loaded machine): it ran the same move.
          expect(zoneB, at).toBe(TO);
        } else {
          expect(lost, at).toHaveLength(1);
          expect(isBerthError((lost[0] as PromiseRejectedResult).reason, 'CONFLICT'), at).toBe(true);
          if (LOSER.test(reason(lost[0]!))) {
            // Lost at its claim (the design's case): it made nothing, one snapshot and one new volume in
            // all. (Later, on a machine too loaded for the settle time, it names what it made, kept and tagged.)
            if (!/made by this run/.test(reason(lost[0]!))) {
              claimsLost += 1;
              expect(w.model.snapshotList(), at).toHaveLength(1);
              expect(w.model.volumes(), at).toHaveLength(2);
            }
          } else {
            expect(reason(lost[0]!), at).toMatch(/already moving to zone eu-west-1b/);
          }
        }
        await expectOneLiveVolume(w, true, [TO, zoneB]);
        w.model.dispose();
      }
    }
    expect(claimsLost, 'two claims within the lag met').toBeGreaterThan(0);
  });

  it('an abort started after each EC2 call of a move: one live volume at every call; either the move went through or the source stays the node, with everything made retired', async () => {
    const points = await callsOfOneMove();
    const outcomes = new Set<string>();
    await pooled(1, points, async (after) => {
      const w = world();
      const { a, b } = await race(w, after, (ec2) => mover(ec2).move({ name: NAME, zone: TO }), (ec2) => mover(ec2).abort(NAME));
      const at = `abort after call ${after}: ${reason(a)} / ${reason(b)}`;
      const moved = a.status === 'fulfilled';
      if (!moved) expect(reason(a), at).toMatch(ABORTED);
      if (b.status === 'rejected') expect(reason(b), at).toMatch(/is not moving|past its cut-over|reached its cut-over while it was being aborted/);
      // Exactly one of them got its way.
      expect(moved !== (b.status === 'fulfilled'), at).toBe(true);
      await expectOneLiveVolume(w, moved);
      outcomes.add(moved ? 'moved' : 'aborted');
      w.model.dispose();
    });
    expect([...outcomes].sort()).toEqual(['aborted', 'moved']);
  });

  it('beyond the settle bound (an abort retired the new volume after its cut-over): the source is live, not none, the mover stops, --abort clears it and a new move works', async () => {
    const w = world(0);
    // The mover cut over, then an abort that read the journal before it retired the new volume.
    let cut = false;
    const ec2 = port(w);
    const racing: Ec2Port = {
      ...ec2,
      createTags: async (input, signal) => {
        const out = await ec2.createTags(input, signal);
        const journal = input.Tags?.find((t) => t.Key === k.move)?.Value;
        if (!cut && parseJournal(journal)?.step === 'cutover') {
          cut = true;
          const made = parseJournal(journal)!.newVolumeId!;
          await w.model.port().createTags({ Resources: [made], Tags: [{ Key: k.retired, Value: new Date().toISOString() }] }, signal);
        }
        return out;
      },
    };
    await expect(mover(racing).move({ name: NAME, zone: TO })).rejects.toThrow(/was retired by an abort during the cut-over; vol-\w+ stays its volume: run berth move c1-db1 --abort/);
    expect(w.violations).toEqual([]);
    expect(await live(w.model)).toEqual([w.source]);
    expect(w.model.volume(w.source).tags[k.retired]).toBeUndefined();
    await mover(port(w)).abort(NAME);
    expect(w.model.volume(w.source).tags[k.move]).toBeUndefined();
    const again = await mover(port(w)).move({ name: NAME, zone: TO });
    expect(await live(w.model)).toEqual([again.to.volumeId]);
    expect(w.model.content(again.to.volumeId)).toBe('pgdata as of the stop');
    expect(w.violations).toEqual([]);
    w.model.dispose();
  });
});
