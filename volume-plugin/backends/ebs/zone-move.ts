import { createHash, randomBytes } from 'node:crypto';
import type { Snapshot, Volume } from '@aws-sdk/client-ec2';
import { BerthError } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { MANAGED_BY, MOVE_RETENTION_DAYS, type TagKeys } from '../../../lib/node-contract.js';
import { isNotFound } from './ec2-errors.js';
import type { Ec2Port } from './ec2-port.js';
import { attachmentOf, tagsOf, type Tags } from './ec2-shapes.js';

/**
 * Moving a node's EBS volume to another availability zone (issue 22; docs/design.md §6, "Zone moves").
 *
 * From a cleanly detached volume: CreateSnapshot, wait until it is completed, CreateVolume in the
 * target zone from it with the same size, type, IOPS, throughput, encryption and KMS key and the
 * node's tags, verify the new volume, then cut over and retire the old one (tagged retired with the
 * date and kept until `retain-until`; never deleted).
 *
 * The move's progress is journalled on the source volume's `<prefix>move` tag, so a move cut short at
 * any point (the process killed, the host gone) is resumed by running it again anywhere, or rolled
 * back with `abort` before the cut-over. Which volume is the node's live one is decided by that one
 * tag on one resource, written by one CreateTags call: until the journal says `cutover` the source
 * is live and the new volume carries no name tag; from then on the new volume is live (`liveVolumes`
 * is the reader's side of the rule, used by the EBS backend's lookups). So no reader ever sees the
 * node forked into two live volumes, nor none.
 *
 * Idempotence of each step: CreateVolume carries a ClientToken derived from (source volume, move id);
 * CreateSnapshot has no ClientToken, so the snapshot is tagged `<prefix>move-of = <source> <move id>`
 * at creation (TagSpecifications) and a resumed move finds it by that tag before it would make another.
 */

export const MOVE_STEPS = ['snapshot', 'restore', 'cutover', 'retire', 'done'] as const;
export type MoveStep = (typeof MOVE_STEPS)[number];

/** The journal on the source volume's `<prefix>move` tag. */
export interface MoveJournal {
  step: MoveStep;
  /** Target zone. */
  to: string;
  /** The move's id (its start time, compact ISO): part of the ClientToken and of the move-of tags. */
  id: string;
  snapshotId?: string;
  newVolumeId?: string;
  /** Restored from an existing snapshot the operator chose (the source's zone is gone). */
  fromSnapshot?: boolean;
  /** Host tag the new volume gets (default: the source's). */
  host?: string;
}

export function formatJournal(j: MoveJournal): string {
  return [
    `step=${j.step}`,
    `to=${j.to}`,
    `id=${j.id}`,
    j.snapshotId ? `snap=${j.snapshotId}` : '',
    j.newVolumeId ? `new=${j.newVolumeId}` : '',
    j.fromSnapshot ? 'from-snapshot=1' : '',
    j.host ? `host=${j.host}` : '',
  ]
    .filter(Boolean)
    .join(' ');
}

export function parseJournal(text: string | undefined): MoveJournal | undefined {
  if (!text) return undefined;
  const f = Object.fromEntries(text.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  const step = f.step as MoveStep;
  if (!MOVE_STEPS.includes(step) || !f.to || !f.id) return undefined;
  return { step, to: f.to, id: f.id, snapshotId: f.snap, newVolumeId: f.new, fromSnapshot: f['from-snapshot'] === '1', host: f.host };
}

/** Of two journals of one move, the one further on (its fields over the other's). */
function further(mine: MoveJournal, seen: MoveJournal): MoveJournal {
  if (MOVE_STEPS.indexOf(seen.step) <= MOVE_STEPS.indexOf(mine.step)) return mine;
  return { ...mine, ...Object.fromEntries(Object.entries(seen).filter(([, v]) => v !== undefined && v !== false)) } as MoveJournal;
}

/** Whether a source volume's journal has passed the cut-over (its successor is live, not it). */
export const pastCutover = (j: MoveJournal | undefined) => j !== undefined && MOVE_STEPS.indexOf(j.step) >= MOVE_STEPS.indexOf('cutover');

/**
 * The reader's side of the rule: of the volumes tagged with a name, those that are live. A retired
 * volume never is; a source whose journal has passed the cut-over is not, and its successor (named in
 * the journal) is, even before the successor carries the name tag (`describe` fetches it by id).
 */
export async function liveVolumes(named: Volume[], keys: TagKeys, describe: (volumeId: string) => Promise<Volume | undefined>): Promise<Volume[]> {
  const live: Volume[] = [];
  const ids = new Set(named.map((v) => v.VolumeId));
  for (const v of named) {
    const tags = tagsOf(v);
    if (tags[keys.retired]) continue;
    const journal = parseJournal(tags[keys.move]);
    const successorId = pastCutover(journal) ? journal!.newVolumeId : undefined;
    const successor = successorId ? (named.find((x) => x.VolumeId === successorId) ?? (await describe(successorId))) : undefined;
    // Before the cut-over the source is live; after it, its successor, unless that one was retired (an
    // abort that raced the cut-over: docs/design.md §6, "Two movers") or is gone: then still the source.
    if (!successor || tagsOf(successor)[keys.retired]) {
      live.push(v);
      continue;
    }
    // Shown with the name it is about to carry (the mover's next step tags it so).
    if (!ids.has(successorId)) live.push({ ...successor, Tags: [...(successor.Tags ?? []).filter((t) => t.Key !== keys.volume), { Key: keys.volume, Value: tags[keys.volume] }] });
  }
  return live;
}

/** A volume's move in progress, as a sentence for a refused Mount; undefined when it is not moving. */
export function moveInProgress(v: Volume, keys: TagKeys): MoveJournal | undefined {
  const j = parseJournal(tagsOf(v)[keys.move]);
  return j && j.step !== 'done' ? j : undefined;
}

/** Progress of one move run (move-metrics.ts gives the agent's; tests may give their own). */
export interface MoveRun {
  step(step: MoveStep | 'wait-snapshot' | 'wait-volume'): void;
  failed(step: string): void;
  end(): void;
}
export interface MoveMetrics {
  begin(): MoveRun;
}

export interface ZoneMoveDeps {
  ec2: Ec2Port;
  keys: TagKeys;
  /** Lookups are scoped to berth's volumes of this cluster when set. */
  cluster?: string;
  /** ...and of this environment (`<prefix>environment`) when set, as the EBS backend's are. */
  environment?: string;
  /** Zones of the region (target checked against it); default: not checked here (EC2 refuses an unknown one). */
  zones?: readonly string[];
  /** Poll interval while waiting for the snapshot and the new volume. Default 5 s. */
  pollMs?: number;
  /**
   * How long a mover waits after its claim, its cut-over (and an abort after removing the journal)
   * before it reads the journal back; must exceed twice EC2's tag read-after-write lag (docs/design.md
   * §6, "Two movers"). Default MOVE_SETTLE_MS.
   */
  settleMs?: number;
  now?: () => number;
  /** Told each step as it starts (the CLI prints it). */
  progress?: (line: string) => void;
  metrics?: MoveMetrics;
}

export interface MoveRequest {
  name: string;
  zone: string;
  /** Host tag for the new volume (the node's host in the target zone); default: the source's. */
  host?: string;
  /**
   * Restore from this existing snapshot of the volume instead of taking one (the source's zone is
   * gone). Only from `planFromSnapshot`'s answer, which the operator has been shown.
   */
  fromSnapshot?: string;
  signal?: AbortSignal;
}

export interface MoveResult {
  name: string;
  from: { volumeId: string; zone: string };
  to: { volumeId: string; zone: string };
  snapshotId: string;
  retainUntil: string;
  /** True when the move had already been done (nothing was changed). */
  already: boolean;
}

export interface SnapshotPlan {
  volumeId: string;
  zone: string;
  snapshotId: string;
  startTime: Date;
  /** How old the snapshot is: the data written since is lost by a restore from it. */
  ageMs: number;
}

const DAY_MS = 86_400_000;

/**
 * The default settle time of a claim and a cut-over (ZoneMoveDeps.settleMs). EC2 states no bound on
 * its eventual consistency (EC2 Developer Guide, "Eventual consistency in the Amazon EC2 API", advises
 * waits "starting with a couple of seconds"); 20 s keeps two movers apart while the lag is under ~8 s,
 * and costs a move 40 s of its minutes.
 */
export const MOVE_SETTLE_MS = 20_000;

/** The start of a move from its id (`20261206T215043123Z-…`), ISO; the id itself when it is not one. */
export function moveSince(id: string): string {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\d{3})Z/.exec(id);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z` : id;
}

export function createZoneMover(deps: ZoneMoveDeps) {
  const { ec2, keys: k } = deps;
  const now = deps.now ?? Date.now;
  const pollMs = deps.pollMs ?? 5_000;
  const settleMs = deps.settleMs ?? MOVE_SETTLE_MS;
  const say = (line: string) => deps.progress?.(line);
  const scopeFilters = [
    { Name: `tag:${k.managedBy}`, Values: [MANAGED_BY] },
    ...(deps.cluster ? [{ Name: `tag:${k.cluster}`, Values: [deps.cluster] }] : []),
    ...(deps.environment ? [{ Name: `tag:${k.environment}`, Values: [deps.environment] }] : []),
  ];

  const signalOf = (s?: AbortSignal) => s ?? new AbortController().signal;

  async function volume(id: string, signal?: AbortSignal): Promise<Volume | undefined> {
    try {
      return (await ec2.describeVolumes({ VolumeIds: [id] }, signalOf(signal))).Volumes?.[0];
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async function volumesTagged(key: string, value: string, signal?: AbortSignal): Promise<Volume[]> {
    const out: Volume[] = [];
    let NextToken: string | undefined;
    do {
      const page = await ec2.describeVolumes({ Filters: [...scopeFilters, { Name: `tag:${key}`, Values: [value] }], NextToken }, signalOf(signal));
      out.push(...(page.Volumes ?? []).filter((v) => v.State !== 'deleting' && v.State !== 'deleted'));
      NextToken = page.NextToken;
    } while (NextToken);
    return out;
  }

  const tag = (id: string, tags: Tags, signal?: AbortSignal) =>
    ec2.createTags({ Resources: [id], Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }, signalOf(signal));

  /** The move's source and its journal, from the name: the volume carrying the journal, found directly or through its successor's move-of tag. */
  async function locate(name: string, signal?: AbortSignal): Promise<{ source?: Volume; journal?: MoveJournal; live: Volume[] }> {
    const named = await volumesTagged(k.volume, name, signal);
    for (const v of named) {
      const j = moveInProgress(v, k);
      if (j) return { source: v, journal: j, live: await liveVolumes(named, k, (id) => volume(id, signal)) };
    }
    // A source whose name tag is already gone (crash during the retirement): its successor names it.
    for (const v of named) {
      const of = tagsOf(v)[k.moveOf];
      if (!of) continue;
      const source = await volume(of.split(' ')[0]!, signal);
      const j = source && moveInProgress(source, k);
      if (source && j) return { source, journal: j, live: await liveVolumes(named, k, (id) => volume(id, signal)) };
    }
    return { live: await liveVolumes(named, k, (id) => volume(id, signal)) };
  }

  async function findSnapshot(sourceId: string, moveId: string, signal?: AbortSignal): Promise<Snapshot | undefined> {
    const out = await ec2.describeSnapshots({ OwnerIds: ['self'], Filters: [{ Name: `tag:${k.moveOf}`, Values: [`${sourceId} ${moveId}`] }] }, signalOf(signal));
    // Newest first; one that failed is not the move's snapshot (a later attempt makes another).
    return (out.Snapshots ?? []).filter((s) => s.State !== 'error').sort((a, b) => (b.StartTime?.getTime() ?? 0) - (a.StartTime?.getTime() ?? 0))[0];
  }

  async function waitSnapshot(snapshotId: string, signal?: AbortSignal): Promise<Snapshot> {
    mark('wait-snapshot');
    let last = '';
    for (;;) {
      signal?.throwIfAborted();
      const s = (await ec2.describeSnapshots({ SnapshotIds: [snapshotId] }, signalOf(signal))).Snapshots?.[0];
      if (!s) throw new BerthError('NOT_FOUND', `snapshot ${snapshotId} is gone`);
      if (s.State === 'completed') return s;
      if (s.State === 'error') throw new BerthError('UNAVAILABLE', `snapshot ${snapshotId} failed at EC2 (${s.StateMessage ?? 'state "error"'})`);
      if (s.Progress !== last) say(`  snapshot ${snapshotId}: ${s.Progress ?? '?'}`);
      last = s.Progress ?? '';
      await sleep(pollMs, signal);
    }
  }

  async function waitVolume(volumeId: string, signal?: AbortSignal): Promise<Volume> {
    mark('wait-volume');
    for (;;) {
      signal?.throwIfAborted();
      const v = await volume(volumeId, signal);
      if (!v) throw new BerthError('NOT_FOUND', `the new volume ${volumeId} is gone`);
      if (v.State === 'available') return v;
      if (v.State === 'error') throw new BerthError('UNAVAILABLE', `the new volume ${volumeId} failed at EC2 (state "error"; a KMS key the account cannot use?)`);
      await sleep(pollMs, signal);
    }
  }

  /** The source's journal as EC2 answers now (by id: nothing cached). */
  async function journalNow(sourceId: string, signal?: AbortSignal): Promise<MoveJournal | undefined> {
    const v = await volume(sourceId, signal);
    return v ? parseJournal(tagsOf(v)[k.move]) : undefined;
  }

  /** What this run made (a snapshot, a volume): named to the operator when the run stops. */
  let madeHere: string[] = [];

  /** What the loser of two movers is told: the move that holds the journal, or that it is gone. */
  function lost(name: string, sourceId: string, holder: MoveJournal | undefined): BerthError {
    const made = madeHere.length ? `; ${madeHere.join(' and ')}, made by this run, ${madeHere.length > 1 ? 'are' : 'is'} kept and tagged until its retain-until, not deleted` : '';
    if (!holder) return new BerthError('CONFLICT', `the move of ${name} (${sourceId}) was aborted while this run went on; ${sourceId} stays its volume; run berth move again to start a new one${made}`);
    return new BerthError(
      'CONFLICT',
      `another move of ${name} (${sourceId}) is in progress since ${moveSince(holder.id)} (to ${holder.to}, step ${holder.step}); run it again to resume it (berth move ${name} --zone ${holder.to}), or --abort (berth move ${name} --abort)${made}`,
    );
  }

  /**
   * Before an irreversible step: the journal must still be this move's (another mover's claim, or an
   * abort, ends this run). A journal of this move that is further on (another run of the same move got
   * there first) is adopted. A read that took longer than a quarter of the settle time is read again (up
   * to three times), so the write that follows lands within that of what it saw.
   */
  async function fence(name: string, sourceId: string, j: MoveJournal, signal?: AbortSignal, made?: string): Promise<MoveJournal> {
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      const fresh = await journalNow(sourceId, signal);
      if (!fresh || fresh.id !== j.id) {
        // The volume this run made is not the node's (another move holds the journal, or none does): retired, kept.
        if (made && fresh?.newVolumeId !== made) await retireLeftover(made, name, signal);
        throw lost(name, sourceId, fresh);
      }
      if (performance.now() - started > settleMs / 4 && attempt < 3) continue;
      return further(j, fresh);
    }
  }

  /** A volume this run made that the journal does not name: retired (kept, never deleted) so the retention finds it. */
  async function retireLeftover(volumeId: string, name: string, signal?: AbortSignal): Promise<void> {
    const retainUntil = new Date(now() + MOVE_RETENTION_DAYS * DAY_MS).toISOString().slice(0, 10);
    await tag(volumeId, { [k.retired]: new Date(now()).toISOString(), [k.retiredVolume]: name, [k.retainUntil]: retainUntil }, signal);
  }

  const tokenOf = (sourceId: string, moveId: string) => createHash('sha256').update(`move\0${sourceId}\0${moveId}`).digest('hex').slice(0, 64);

  /** The new volume must be what the source was, in the target zone, from the move's snapshot; anything else stops the move before the cut-over. */
  function verify(source: Volume, fresh: Volume, j: MoveJournal): void {
    const wrong: string[] = [];
    const same = (what: string, a: unknown, b: unknown) => a !== b && wrong.push(`${what} ${String(b)} (expected ${String(a)})`);
    same('zone', j.to, fresh.AvailabilityZone);
    if (tagsOf(fresh)[k.retired]) wrong.push('it is retired');
    same('snapshot', j.snapshotId, fresh.SnapshotId);
    same('type', source.VolumeType, fresh.VolumeType);
    if ((fresh.Size ?? 0) < (source.Size ?? 0)) wrong.push(`size ${fresh.Size} GiB (expected ${source.Size})`);
    if (source.VolumeType === 'gp3' || source.VolumeType === 'io1' || source.VolumeType === 'io2') same('IOPS', source.Iops, fresh.Iops);
    if (source.VolumeType === 'gp3') same('throughput', source.Throughput, fresh.Throughput);
    same('encryption', Boolean(source.Encrypted), Boolean(fresh.Encrypted));
    if (source.Encrypted) same('KMS key', source.KmsKeyId, fresh.KmsKeyId);
    if (wrong.length) throw new BerthError('CONFLICT', `the new volume ${fresh.VolumeId} is not a copy of ${source.VolumeId}: ${wrong.join(', ')}; the move stopped before the cut-over (the source is still the node's volume)`);
  }

  /** Tags the new volume starts with: the node's (the source's, berth's per-volume state and the name apart), and move-of. */
  function newVolumeTags(source: Volume, j: MoveJournal): Tags {
    const drop = new Set([k.volume, k.attachedTo, k.state, k.move, k.retired, k.retiredVolume, k.retainUntil, k.moveOf]);
    const tags = Object.fromEntries(Object.entries(tagsOf(source)).filter(([key]) => !drop.has(key) && !key.startsWith('aws:')));
    if (j.host) tags[k.host] = j.host;
    tags[k.moveOf] = `${source.VolumeId} ${j.id}`;
    return tags;
  }

  async function journal(source: Volume, j: MoveJournal, signal?: AbortSignal): Promise<void> {
    await tag(source.VolumeId!, { [k.move]: formatJournal(j) }, signal);
    mark(j.step);
    say(`step ${j.step}: ${source.VolumeId}${j.snapshotId ? `, snapshot ${j.snapshotId}` : ''}${j.newVolumeId ? `, new volume ${j.newVolumeId}` : ''}`);
  }

  const assertDetached = (v: Volume, name: string) => {
    const a = attachmentOf(v);
    if (a || v.State === 'in-use') {
      throw new BerthError(
        'CONFLICT',
        `volume ${name} (${v.VolumeId}) is attached to ${a?.instanceId ?? 'an instance'}; a move starts only from a cleanly detached volume: stop the node (its ECS service to 0 tasks) and wait until berth there has detached it`,
      );
    }
  };

  /**
   * Snapshot, restore, verify, cut over: from a journal before the cut-over to one at it (or past it,
   * when another run of the same move got there first). The snapshot is not journalled (a resumed move
   * finds it by its move-of tag), so no write of this run can put the journal back before a cut-over
   * another run made; the cut-over is written after a fence and read back after the settle time.
   */
  async function toCutover(name: string, source: Volume, j: MoveJournal, signal?: AbortSignal): Promise<MoveJournal> {
    const sourceId = source.VolumeId!;
    let snapshotId = j.snapshotId ?? (await findSnapshot(sourceId, j.id, signal))?.SnapshotId;
    if (!snapshotId) {
      const ahead = await fence(name, sourceId, j, signal);
      if (pastCutover(ahead)) return ahead;
      assertDetached((await volume(sourceId, signal)) ?? source, name);
      const retainUntil = new Date(now() + MOVE_RETENTION_DAYS * DAY_MS).toISOString().slice(0, 10);
      const sourceTags = tagsOf(source);
      const snap = await ec2.createSnapshot(
        {
          VolumeId: sourceId,
          Description: `berth: ${name} moving to ${j.to}`,
          TagSpecifications: [
            {
              ResourceType: 'snapshot',
              Tags: [
                { Key: k.moveOf, Value: `${sourceId} ${j.id}` },
                { Key: k.retiredVolume, Value: name },
                { Key: k.managedBy, Value: MANAGED_BY },
                { Key: k.retainUntil, Value: retainUntil },
                // The source's cluster and environment: what the move policy scopes CreateSnapshot and a restore from it by.
                ...[k.cluster, k.environment].filter((key) => sourceTags[key] !== undefined).map((Key) => ({ Key, Value: sourceTags[Key]! })),
              ],
            },
          ],
        },
        signalOf(signal),
      );
      snapshotId = snap.SnapshotId!;
      madeHere.push(snapshotId);
    }
    await waitSnapshot(snapshotId, signal);
    mark('restore');
    say(`step restore: ${sourceId}, snapshot ${snapshotId}`);
    const ahead = await fence(name, sourceId, j, signal);
    if (pastCutover(ahead)) return ahead;
    const params = (snap: string) => ({
      AvailabilityZone: j.to,
      SnapshotId: snap,
      Size: source.Size,
      VolumeType: source.VolumeType,
      ...(source.VolumeType === 'gp3' || source.VolumeType === 'io1' || source.VolumeType === 'io2' ? { Iops: source.Iops } : {}),
      ...(source.VolumeType === 'gp3' ? { Throughput: source.Throughput } : {}),
      ...(source.Encrypted ? { Encrypted: true, KmsKeyId: source.KmsKeyId } : {}),
      ClientToken: tokenOf(sourceId, j.id),
      TagSpecifications: [{ ResourceType: 'volume' as const, Tags: Object.entries(newVolumeTags(source, j)).map(([Key, Value]) => ({ Key, Value })) }],
    });
    let made: Volume;
    try {
      made = await ec2.createVolume(params(snapshotId), signalOf(signal));
      madeHere.push(made.VolumeId!);
    } catch (err) {
      if ((err as { name?: string }).name !== 'IdempotentParameterMismatch') throw err;
      // The move's token already made a volume from another snapshot of this move: another run of the
      // same move got there first (its snapshot was not yet visible to this one). That volume is the move's.
      const theirs = await madeBy(sourceId, j.id, signal);
      if (!theirs) throw lost(name, sourceId, await journalNow(sourceId, signal));
      say(`  another run of this move made ${theirs.VolumeId} from ${theirs.SnapshotId}; continuing with it (${snapshotId} is kept, tagged until its retain-until)`);
      made = theirs;
      snapshotId = theirs.SnapshotId!;
    }
    const ready = await waitVolume(made.VolumeId!, signal);
    // Retired meanwhile: an abort took the move back (the fence says so); anything else is verify's.
    if (tagsOf(ready)[k.retired]) await fence(name, sourceId, j, signal, ready.VolumeId);
    verify(source, ready, { ...j, snapshotId });
    // The source must still be detached: nothing may have written to it after the snapshot.
    if (!j.fromSnapshot) assertDetached((await volume(sourceId, signal)) ?? source, name);
    const before = await fence(name, sourceId, j, signal, ready.VolumeId);
    if (pastCutover(before)) return before;
    const cut: MoveJournal = { ...j, step: 'cutover', snapshotId, newVolumeId: ready.VolumeId };
    // The cut-over: one tag on one resource; from this write on the new volume is the node's.
    await journal(source, cut, signal);
    await sleep(settleMs, signal);
    const back = await journalNow(sourceId, signal);
    if (!back || back.id !== j.id || back.newVolumeId !== ready.VolumeId) {
      if (back?.newVolumeId !== ready.VolumeId) await retireLeftover(ready.VolumeId!, name, signal);
      throw lost(name, sourceId, back);
    }
    return further(cut, back);
  }

  /** The volume a move's ClientToken made, by its move-of tag (given at creation), waiting out the settle time for it to show. */
  async function madeBy(sourceId: string, moveId: string, signal?: AbortSignal): Promise<Volume | undefined> {
    const until = performance.now() + settleMs;
    for (;;) {
      const found = (await volumesTagged(k.moveOf, `${sourceId} ${moveId}`, signal)).find((v) => !tagsOf(v)[k.retired]);
      if (found || performance.now() >= until) return found;
      await sleep(Math.min(pollMs, settleMs), signal);
    }
  }

  /** Runs (or resumes) the journalled steps from the journal's step to the end. */
  async function drive(name: string, source: Volume, j: MoveJournal, signal?: AbortSignal): Promise<MoveResult> {
    if (!pastCutover(j)) j = await toCutover(name, source, j, signal);
    const retainUntil = new Date(now() + MOVE_RETENTION_DAYS * DAY_MS).toISOString().slice(0, 10);
    if (j.step === 'cutover') {
      await tag(j.newVolumeId!, { [k.volume]: name, ...(j.host ? { [k.host]: j.host } : {}) }, signal);
      // An abort that raced the cut-over retired the new volume: the source stays the node (liveVolumes).
      const successor = await volume(j.newVolumeId!, signal);
      if (!successor || tagsOf(successor)[k.retired]) {
        throw new BerthError('CONFLICT', `the new volume ${j.newVolumeId} of ${name} was retired by an abort during the cut-over; ${source.VolumeId} stays its volume: run berth move ${name} --abort, then move it again`);
      }
      // Retired first (readers skip it from here on), then its name and host tags go.
      await tag(source.VolumeId!, { [k.retired]: new Date(now()).toISOString(), [k.retiredVolume]: name, [k.retainUntil]: retainUntil }, signal);
      j = { ...j, step: 'retire' };
      await journal(source, j, signal);
    }
    if (j.step === 'retire') {
      await ec2.deleteTags({ Resources: [source.VolumeId!], Tags: [k.volume, k.host, k.attachedTo, k.state].map((Key) => ({ Key })) }, signalOf(signal));
      j = { ...j, step: 'done' };
      await journal(source, j, signal);
    }
    const retired = await volume(source.VolumeId!, signal);
    return {
      name,
      from: { volumeId: source.VolumeId!, zone: source.AvailabilityZone! },
      to: { volumeId: j.newVolumeId!, zone: j.to },
      snapshotId: j.snapshotId!,
      retainUntil: (retired && tagsOf(retired)[k.retainUntil]) ?? retainUntil,
      already: false,
    };
  }

  /** The run under way (a mover runs one move at a time; the CLI and the agent make one per move). */
  let run: MoveRun | undefined;
  /** The step the run is at (a failure is counted against it). */
  let at = 'locate';
  const mark = (step: MoveStep | 'wait-snapshot' | 'wait-volume') => {
    at = step === 'wait-snapshot' ? 'snapshot' : step === 'wait-volume' ? 'restore' : step;
    run?.step(step);
  };
  async function measured<T>(work: () => Promise<T>, step: () => string): Promise<T> {
    run = deps.metrics?.begin();
    try {
      return await work();
    } catch (err) {
      run?.failed(step());
      throw err;
    } finally {
      run?.end();
      run = undefined;
    }
  }

  return {
    /**
     * Moves (or resumes the move of) volume `name` to `zone`. Safe to run again after a crash at any
     * point, from any host: it continues from the journal. Refuses a move to another zone than the
     * one under way, and a move of an attached volume.
     */
    async move(req: MoveRequest): Promise<MoveResult> {
      const { name, zone, signal } = req;
      if (deps.zones && !deps.zones.includes(zone)) throw new BerthError('INVALID_ARGUMENT', `zone ${zone} is not one of this region's: ${deps.zones.join(', ')}`);
      at = 'locate';
      madeHere = [];
      return measured(async () => {
        const found = await locate(name, signal);
        if (found.source && found.journal) {
          if (found.journal.to !== zone) {
            throw new BerthError('CONFLICT', `volume ${name} is already moving to zone ${found.journal.to} (step ${found.journal.step}); finish that move (berth move ${name} --zone ${found.journal.to}) or abort it first (berth move ${name} --abort)`);
          }
          if (req.fromSnapshot && found.journal.snapshotId && req.fromSnapshot !== found.journal.snapshotId) {
            throw new BerthError('CONFLICT', `volume ${name} is already being restored from ${found.journal.snapshotId}, not ${req.fromSnapshot}; finish or abort that move first`);
          }
          say(`resuming the move of ${name} (${found.source.VolumeId}) to ${zone} at step ${found.journal.step}`);
          at = found.journal.step;
          return drive(name, found.source, found.journal, signal);
        }
        if (found.live.length === 0) throw new BerthError('NOT_FOUND', `no EBS volume is tagged ${k.volume}=${name}`);
        if (found.live.length > 1) throw new BerthError('CONFLICT', `${found.live.length} EBS volumes are tagged ${k.volume}=${name} (${found.live.map((v) => v.VolumeId).join(', ')}); berth will not guess which one to move`);
        const source = found.live[0]!;
        if (source.AvailabilityZone === zone) {
          const of = tagsOf(source)[k.moveOf]?.split(' ')[0];
          return { name, from: { volumeId: of ?? source.VolumeId!, zone }, to: { volumeId: source.VolumeId!, zone }, snapshotId: source.SnapshotId ?? '', retainUntil: '', already: true };
        }
        if (source.State !== 'available' && source.State !== 'in-use') throw new BerthError('UNAVAILABLE', `volume ${name} (${source.VolumeId}) is "${source.State}" at EC2`);
        if (!req.fromSnapshot) assertDetached(source, name);
        let snapshotId: string | undefined;
        if (req.fromSnapshot) {
          const plan = await planFromSnapshot(name, signal);
          if (plan.snapshotId !== req.fromSnapshot) throw new BerthError('CONFLICT', `the latest completed snapshot of ${name} is now ${plan.snapshotId}, not ${req.fromSnapshot}; look again (berth move ${name} --zone ${zone} --from-snapshot latest)`);
          snapshotId = plan.snapshotId;
        }
        const j: MoveJournal = {
          step: 'snapshot',
          to: zone,
          // Unique per move (an aborted move's ClientToken must never answer a later one).
          id: `${new Date(now()).toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`,
          ...(snapshotId ? { snapshotId, fromSnapshot: true } : {}),
          ...(req.host ? { host: req.host } : {}),
        };
        at = 'snapshot';
        say(`moving ${name} (${source.VolumeId}, ${source.AvailabilityZone}) to ${zone}`);
        // The claim: EC2 has no conditional tag write, so the journal is written, left to settle, and read
        // back; of two movers that both wrote one, the one whose write came last reads its own back, the
        // other is told and stops before it made anything (docs/design.md §6, "Two movers").
        await journal(source, j, signal);
        await sleep(settleMs, signal);
        const back = await journalNow(source.VolumeId!, signal);
        if (back?.id !== j.id) throw lost(name, source.VolumeId!, back);
        return drive(name, source, j, signal);
      }, () => at);
    },

    /**
     * Rolls back a move that has not reached the cut-over: the new volume (if one was made) is retired,
     * the journal removed; the source stays the node's volume, untouched. After the cut-over a move
     * cannot be rolled back (the new volume may have been written to): move it back instead.
     */
    async abort(name: string, signal?: AbortSignal): Promise<{ volumeId: string; retired?: string }> {
      madeHere = [];
      const found = await locate(name, signal);
      if (!found.source || !found.journal) throw new BerthError('NOT_FOUND', `volume ${name} is not moving`);
      const { source, journal: j } = found;
      if (pastCutover(j)) {
        // A cut-over whose new volume an abort retired (the race "Two movers" bounds) is undone: the source is live, only its journal goes.
        const successor = j.newVolumeId ? await volume(j.newVolumeId, signal) : undefined;
        if (successor && !tagsOf(successor)[k.retired]) {
          throw new BerthError('CONFLICT', `the move of ${name} to ${j.to} is past its cut-over (${j.newVolumeId} is the node's volume now); finish it (berth move ${name} --zone ${j.to}), then move it back if you must`);
        }
        if (tagsOf(source)[k.retired]) throw new BerthError('CONFLICT', `volume ${name}: both ${source.VolumeId} and ${j.newVolumeId} are retired; untag one by hand (docs/operations.md, "Move a node to another zone")`);
        await ec2.deleteTags({ Resources: [source.VolumeId!], Tags: [{ Key: k.move }] }, signalOf(signal));
        say(`move of ${name}: its new volume ${j.newVolumeId} had been retired; ${source.VolumeId} stays its volume`);
        return { volumeId: source.VolumeId! };
      }
      // The journal goes first, then, once that settled, what the move made is retired: a mover still
      // running finds its journal gone at its next fence and stops; one that cut over meanwhile wins.
      await ec2.deleteTags({ Resources: [source.VolumeId!], Tags: [{ Key: k.move }] }, signalOf(signal));
      await sleep(settleMs, signal);
      const back = await journalNow(source.VolumeId!, signal);
      if (back && pastCutover(back) && back.id === j.id) {
        throw new BerthError('CONFLICT', `the move of ${name} reached its cut-over while it was being aborted (another berth move of it is running): ${back.newVolumeId} is the node's volume now; let it finish (berth move ${name} --zone ${back.to}), then move it back if you must`);
      }
      if (back) throw lost(name, source.VolumeId!, back);
      const made = (await volumesTagged(k.moveOf, `${source.VolumeId} ${j.id}`, signal)).filter((v) => !tagsOf(v)[k.retired]);
      for (const v of made) await retireLeftover(v.VolumeId!, name, signal);
      say(`move of ${name} aborted at step ${j.step}; ${source.VolumeId} stays its volume${made.length ? `, ${made.map((v) => v.VolumeId).join(', ')} retired` : ''}`);
      return { volumeId: source.VolumeId!, ...(made.length ? { retired: made[0]!.VolumeId! } : {}) };
    },

    /** The latest completed snapshot of the node's live volume and its age; changes nothing. */
    planFromSnapshot,

    /** The move of `name` under way, if any. */
    async status(name: string, signal?: AbortSignal): Promise<{ volumeId: string; journal: MoveJournal } | undefined> {
      const found = await locate(name, signal);
      return found.source && found.journal ? { volumeId: found.source.VolumeId!, journal: found.journal } : undefined;
    },
  };

  async function planFromSnapshot(name: string, signal?: AbortSignal): Promise<SnapshotPlan> {
    const { live } = await locate(name, signal);
    if (live.length !== 1) throw new BerthError(live.length ? 'CONFLICT' : 'NOT_FOUND', `volume ${name}: ${live.length} live EBS volumes carry its name`);
    const v = live[0]!;
    const out = await ec2.describeSnapshots({ OwnerIds: ['self'], Filters: [{ Name: 'volume-id', Values: [v.VolumeId!] }, { Name: 'status', Values: ['completed'] }] }, signalOf(signal));
    const latest = (out.Snapshots ?? []).sort((a, b) => (b.StartTime?.getTime() ?? 0) - (a.StartTime?.getTime() ?? 0))[0];
    if (!latest) throw new BerthError('NOT_FOUND', `volume ${name} (${v.VolumeId}) has no completed snapshot to restore from`);
    return { volumeId: v.VolumeId!, zone: v.AvailabilityZone!, snapshotId: latest.SnapshotId!, startTime: latest.StartTime!, ageMs: now() - latest.StartTime!.getTime() };
  }
}

export type ZoneMover = ReturnType<typeof createZoneMover>;

/** "3 h 12 min", "2 d 4 h": a snapshot's age for the operator. */
export function formatAge(ms: number): string {
  const min = Math.floor(ms / 60_000);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${min % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
