import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Volume } from '@aws-sdk/client-ec2';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../../../lib/atomic-file.js';
import { BerthError, errorMessage, isBerthError, StillWaiting } from '../../../lib/errors.js';
import { MANAGED_BY, tagKeys, type TagKeys } from '../../../lib/node-contract.js';
import type { DeviceResolver } from '../../devices/nvme.js';
import type { OptionDefaults } from '../../options.js';
import type { AttachedDevice, Backend, VolumeRecord } from '../backend.js';
import type { HostSurvey, SurveyingBackend, VolumeFacts } from '../../reconcile/ports.js';
import { AttachNotSent, ClientTokenSpent, FailedVolumeDeleted } from './ec2-errors.js';
import type { Ec2Facade } from './ec2-facade.js';
import { attachmentOf, tagsOf, type Tags } from './ec2-shapes.js';
import { createParamsOf, EBS_OPTIONS, optionsOf, tagValueOf, validateEbsOptions } from './ebs-options.js';
import { modifyEbsVolume } from './modify-volume.js';
import { liveVolumes, moveInProgress, parseJournal, pastCutover, type MoveJournal } from './zone-move.js';

/**
 * EBS backend (docs/design.md §6). A volume is found by its tags, never by a name
 * or device guess: `<prefix>volume` is its name, `<prefix>host` the logical
 * host it belongs to. Attaching moves it here from a host that is gone, and
 * claims it from a running one by retagging, then waits for the agent there
 * to let go. The block device is the NVMe namespace whose serial is the
 * volume id.
 */

export interface HostIdentity {
  instanceId: string;
  az: string;
  region: string;
  /** Stable across instance replacement (the host's ASG or its `<prefix>host` tag). */
  hostId: string;
}

export interface EbsBackendDeps {
  ec2: Ec2Facade;
  devices: DeviceResolver;
  identity: HostIdentity;
  defaults: OptionDefaults;
  /** Tag prefix, `berth:` by default. */
  tagPrefix: string;
  /** Lookups and new volumes are scoped to this cluster when set. */
  cluster?: string;
  /** ...and to this environment (`<prefix>environment`) when set: two environments may share cluster names. */
  environment?: string;
  /** How long a volume no container uses stays attached, for a quick restart. */
  idleDetachMs: number;
  /** How long Mount waits for another running host to release a volume claimed from it. */
  moveWaitMs: number;
  /** How long after EC2 reports an attachment its block device may take to appear. */
  deviceWaitMs: number;
  /** How long `berth resize` waits for the modification to reach `optimizing` before answering `modifying`; default MODIFY_WAIT_MS. */
  modifyWaitMs?: number;
  /** How often that wait asks DescribeVolumesModifications; default 1 s. */
  modifyPollMs?: number;
  /** How long find() remembers that a name is not berth's (dockerd asks every driver about names it does not know). */
  notFoundCacheMs?: number;
  /**
   * The agent's state directory (HostPaths.stateDir): the ClientToken generations are kept in
   * CLIENT_TOKENS_FILE there, so a restarted agent does not rediscover each spent token (up to
   * unknownAfterCreateMs, 60 s, each). Without it they live in memory only.
   */
  stateDir?: string;
  logger?: Logger;
  /** Told the zone moves of this host's volumes under way, at each survey (move-metrics.ts, observedMoveMetrics). */
  moves?: { observe(journals: readonly MoveJournal[]): void };
}

// The survey's shapes are reconcile's port (volume-plugin/reconcile/ports.ts); the backend fills them.
export type { DuplicateName, HostSurvey, VolumeFacts } from '../../reconcile/ports.js';

/** A device of a volume that is not berth's (the root volume, say) is looked up again after this long. */
const FOREIGN_RECHECK_MS = 600_000;
/**
 * How long the answer of a lookup by name serves the next attaches of a volume whose attach EC2's
 * budget turned away (nothing changed; docs/design.md §6, "A host waiting for the budget"). Each
 * survey refreshes the volume's own facts meanwhile; only the check that no second volume in the
 * scope carries the name is this old at most.
 */
export const LOOKUP_REUSE_MS = 300_000;

/** The ClientToken generation of each name whose token berth spent, in the state directory. */
export const CLIENT_TOKENS_FILE = 'ebs-client-tokens.json';
/**
 * A resize waits this long for `optimizing` (usually seconds), well inside the call's 120 s deadline
 * (budgets.ts); past it the answer is `modifying` and the agent's online grow check finishes the job.
 */
export const MODIFY_WAIT_MS = 60_000;

/** How many times one Create rotates a spent ClientToken before it gives up. */
const MAX_TOKEN_ROTATIONS = 8;

const GONE = new Set(['stopping', 'stopped', 'shutting-down', 'terminated', 'unknown']);

export interface EbsBackend extends Backend, SurveyingBackend {
  readonly identity: HostIdentity;
  /**
   * The volumes tagged to this host (duplicates apart: of two volumes with one name, the one
   * attached here is kept and the other reported; when neither is, both are reported), and the
   * strays. One tag-filtered DescribeVolumes; the strays are found from this host's own NVMe
   * namespaces (serial = volume id), and described by id only when a namespace is of a volume not
   * in that list (and not known to be foreign). On Xen, where devices do not say which volume they
   * are, a second DescribeVolumes (attachment.instance-id) finds them.
   */
  survey(): Promise<HostSurvey>;
  /** Readiness as tags: on the instance, and per volume. */
  publishReadiness(instance: Tags, volumes: { id: string; tags: Tags }[]): Promise<void>;
  readonly tagKeys: TagKeys;
  /** Stops idle-detach timers (agent stop). */
  close(): void;
}

export function createEbsBackend(deps: EbsBackendDeps): EbsBackend {
  const { ec2, devices, identity, tagPrefix: p, logger: log } = deps;
  const keys = tagKeys(p);
  const scope: Tags = {
    [keys.managedBy]: MANAGED_BY,
    ...(deps.cluster ? { [keys.cluster]: deps.cluster } : {}),
    ...(deps.environment ? { [keys.environment]: deps.environment } : {}),
  };
  /** Volumes a Mount holds; the idle timer never detaches these. */
  const inUse = new Set<string>();
  const idleTimers = new Map<string, NodeJS.Timeout>();
  /** Names EC2 recently said are not berth's, with when (short-lived: find() is dockerd's probe). */
  const notBerths = new Map<string, number>();
  const notFoundCacheMs = deps.notFoundCacheMs ?? 5_000;
  /**
   * ClientToken generation per name. The token is derived from (name, host, generation): racing or
   * retried Creates send the same one, and once berth deleted a volume of that name (or EC2 says the
   * token is spent) the next Create moves to a new generation instead of getting the old volume back.
   */
  const tokenGeneration = new Map<string, number>();
  const tokenOf = (name: string, generation: number) =>
    createHash('sha256').update(`${name}\0${identity.hostId}${generation ? `\0${generation}` : ''}`).digest('hex').slice(0, 64);
  /**
   * Generations survive a restart in the state directory (issue 24: in memory only, each spent
   * token cost a restarted agent up to unknownAfterCreateMs to rediscover). Read once, before the
   * first Create or Remove; written (atomically, in order) each time a token is spent. A file
   * that cannot be read or written costs only that rediscovery: EC2's answers still say a token is spent.
   */
  const tokensFile = deps.stateDir === undefined ? undefined : join(deps.stateDir, CLIENT_TOKENS_FILE);
  let tokensLoaded: Promise<void> | undefined;
  let tokensSaved: Promise<void> = Promise.resolve();
  const loadTokens = () =>
    (tokensLoaded ??= (async () => {
      if (!tokensFile) return;
      const text = await readFile(tokensFile, 'utf8').catch(() => undefined);
      if (text === undefined) return;
      try {
        const saved = (JSON.parse(text) as { generations?: Record<string, unknown> }).generations ?? {};
        for (const [name, generation] of Object.entries(saved)) {
          if (Number.isSafeInteger(generation) && (generation as number) > (tokenGeneration.get(name) ?? 0)) tokenGeneration.set(name, generation as number);
        }
      } catch (err) {
        log?.warn({ file: tokensFile, err: errorMessage(err) }, 'ClientToken generations unreadable; spent tokens are rediscovered from EC2');
      }
    })());
  async function spendToken(name: string): Promise<void> {
    await loadTokens();
    tokenGeneration.set(name, (tokenGeneration.get(name) ?? 0) + 1);
    if (!tokensFile) return;
    const text = JSON.stringify({ version: 1, generations: Object.fromEntries(tokenGeneration) });
    tokensSaved = tokensSaved.then(() =>
      writeFileAtomic(tokensFile, text, 0o600).catch((err: unknown) =>
        log?.warn({ file: tokensFile, err: errorMessage(err) }, 'could not keep the ClientToken generations; after a restart spent tokens are rediscovered from EC2'),
      ),
    );
    await tokensSaved;
  }

  /** Volume ids of NVMe namespaces that are not berth's, with when EC2 said so. */
  const foreignDevices = new Map<string, number>();

  /**
   * A host waiting for the account's budget asks EC2 no more for it (docs/design.md §6): per name,
   * what the last lookup by name said, kept while attaches of it end as StillWaiting having
   * changed nothing (the task's next Mount and the reconciler's next try start from it instead of
   * a DescribeVolumes each), refreshed by every survey, at most LOOKUP_REUSE_MS old. Any attach
   * that changed something, or failed otherwise, or succeeded, drops it.
   */
  const waiting = new Map<string, { volume: Volume; at: number }>();

  /** lookup() for an attach: a waiting name's last answer, else EC2, asking in the same call for the other waiting names half their age. */
  async function lookupForAttach(name: string, signal?: AbortSignal): Promise<Volume | undefined> {
    const now = Date.now();
    const known = waiting.get(name);
    if (known && now - known.at < LOOKUP_REUSE_MS) return known.volume;
    // Lookups made together share one DescribeVolumes (ec2.volumesNamed): one call for the host's waiting names, not one each as they expire.
    for (const [other, entry] of waiting) {
      if (other === name || now - entry.at < LOOKUP_REUSE_MS / 2) continue;
      lookup(other).then(
        (v) => {
          if (v && waiting.has(other)) waiting.set(other, { volume: v, at: now });
          else waiting.delete(other);
        },
        () => waiting.delete(other),
      );
    }
    const v = await lookup(name, signal);
    if (v) waiting.set(name, { volume: v, at: now });
    else waiting.delete(name);
    return v;
  }

  function factsOf(v: Volume): VolumeFacts {
    const record = toRecord(v);
    return { name: record.name, volumeId: record.id, hostTag: tagsOf(v)[keys.host] ?? '', attachment: attachmentOf(v), record };
  }

  const isStray = (v: Volume) => {
    const tags = tagsOf(v);
    return tags[keys.managedBy] === MANAGED_BY && tags[keys.host] !== identity.hostId && attachmentOf(v)?.instanceId === identity.instanceId;
  };

  /** berth's volumes attached here but tagged elsewhere, given the volume ids the tagged list already holds. */
  async function strays(listed: ReadonlySet<string>): Promise<Volume[]> {
    const onDevices = await devices.attachedVolumeIds();
    if (!onDevices) return ec2.volumesByTags({ [keys.managedBy]: MANAGED_BY }, [{ Name: 'attachment.instance-id', Values: [identity.instanceId] }]).then((vs) => vs.filter(isStray));
    const now = Date.now();
    for (const [id, at] of foreignDevices) if (!onDevices.has(id) || now - at >= FOREIGN_RECHECK_MS) foreignDevices.delete(id);
    const unknown = [...onDevices].filter((id) => !listed.has(id) && !foreignDevices.has(id));
    if (unknown.length === 0) return [];
    const found = (await Promise.all(unknown.map((id) => ec2.volume(id)))).filter((v): v is Volume => v !== undefined);
    for (const v of found) if (tagsOf(v)[keys.managedBy] !== MANAGED_BY) foreignDevices.set(v.VolumeId!, now);
    return found.filter(isStray);
  }

  function toRecord(v: Volume): VolumeRecord {
    const tags = tagsOf(v);
    const a = attachmentOf(v);
    return {
      name: tags[keys.volume] ?? v.VolumeId!,
      id: v.VolumeId!,
      options: optionsOf(v, tags[keys.options], deps.defaults),
      createdAt: (v.CreateTime ?? new Date(0)).toISOString(),
      status: {
        backend: 'ebs',
        volumeId: v.VolumeId!,
        az: v.AvailabilityZone ?? '',
        type: v.VolumeType ?? '',
        sizeGiB: String(v.Size ?? ''),
        state: v.State ?? '',
        host: tags[keys.host] ?? '',
        ...(a ? { attachedTo: a.instanceId, attachment: a.state, ec2Device: a.device } : {}),
      },
    };
  }

  /**
   * Live (not deleted) volumes with this name in berth's scope; two is an error, never a guess. A zone
   * move's journal decides between its source and its new volume (zone-move.ts, liveVolumes): retired
   * volumes are never live, and past the cut-over the new volume is, found by id before it carries the name.
   */
  async function lookup(name: string, signal?: AbortSignal): Promise<Volume | undefined> {
    const named = (await ec2.volumesNamed(scope, keys.volume, name, signal)).filter((v) => v.State !== 'deleting' && v.State !== 'deleted');
    const found = await liveVolumes(named, keys, (id) => ec2.volume(id, signal));
    if (found.length > 1) {
      throw new BerthError(
        'CONFLICT',
        `${found.length} EBS volumes are tagged ${keys.volume}=${name} (${found.map((v) => `${v.VolumeId} in ${v.AvailabilityZone}`).join(', ')}); berth will not guess which one holds the data: untag or delete the wrong one`,
      );
    }
    return found[0];
  }

  /** Detaches the volume after the idle period unless something uses it again meanwhile. */
  function armIdleDetach(volumeId: string): void {
    cancelIdle(volumeId);
    const timer = setTimeout(() => {
      idleTimers.delete(volumeId);
      if (inUse.has(volumeId)) return;
      detachIfHere(volumeId, `unused for ${deps.idleDetachMs / 1000} s`).catch((err: unknown) =>
        log?.warn({ volumeId, err: errorMessage(err) }, 'idle detach failed; the next reconcile tries again'),
      );
    }, deps.idleDetachMs);
    timer.unref();
    idleTimers.set(volumeId, timer);
  }

  function cancelIdle(volumeId: string): void {
    clearTimeout(idleTimers.get(volumeId));
    idleTimers.delete(volumeId);
  }

  /** Detaches the volume if it is attached to this instance; true when it was. */
  async function detachIfHere(volumeId: string, why: string, known?: Volume, signal?: AbortSignal): Promise<boolean> {
    cancelIdle(volumeId);
    const v = known ?? (await ec2.volume(volumeId, signal));
    const a = v && attachmentOf(v);
    if (!a || a.instanceId !== identity.instanceId) return false;
    await ec2.detach(volumeId, v, signal);
    log?.info({ volumeId, why }, 'volume detached');
    return true;
  }

  /** One record per name; names carried by several volumes apart, keeping the one attached here. */
  function byName(volumes: Volume[]): Omit<HostSurvey, 'strays'> {
    const groups = new Map<string, Volume[]>();
    for (const v of volumes) {
      if (v.State === 'deleting' || v.State === 'deleted') continue;
      // Retired by a zone move, or a move's source past its cut-over: not the node's volume (zone-move.ts).
      if (tagsOf(v)[keys.retired] || pastCutover(parseJournal(tagsOf(v)[keys.move]))) continue;
      const name = tagsOf(v)[keys.volume];
      if (!name) continue;
      groups.set(name, [...(groups.get(name) ?? []), v]);
    }
    const out: Omit<HostSurvey, 'strays'> = { tagged: [], duplicates: [] };
    for (const [name, group] of groups) {
      if (group.length === 1) {
        out.tagged.push(factsOf(group[0]!));
        continue;
      }
      const here = group.filter((v) => attachmentOf(v)?.instanceId === identity.instanceId);
      const kept = here.length === 1 ? here[0] : undefined;
      if (kept) out.tagged.push(factsOf(kept));
      out.duplicates.push({ name, kept: kept?.VolumeId, volumeIds: [...(kept ? [kept] : []), ...group.filter((v) => v !== kept)].map((v) => v.VolumeId!) });
    }
    return out;
  }

  /** Frees a volume held by another instance: at once if that instance is gone, else by claim and wait. */
  async function takeOver(name: string, v: Volume, holder: string, signal?: AbortSignal): Promise<Volume> {
    const info = (await ec2.instances([holder], signal)).get(holder);
    const state = info?.state ?? 'terminated';
    if (GONE.has(state)) {
      log?.info({ name, volumeId: v.VolumeId, from: holder, state }, 'moving the volume from an instance that is no longer running');
      await ec2.detach(v.VolumeId!, undefined, signal);
      return (await ec2.volume(v.VolumeId!, signal)) ?? v;
    }
    const owner = tagsOf(v)[keys.host];
    if (owner !== identity.hostId) await ec2.tag([v.VolumeId!], { [keys.host]: identity.hostId }, signal);
    log?.warn(
      { name, volumeId: v.VolumeId, holder, holderHost: info?.tags[keys.host], waitS: deps.moveWaitMs / 1000 },
      'volume attached to a running instance: claimed it by tag and waiting for the agent there to release it (never force-detached)',
    );
    try {
      return await ec2.waitAvailable(v.VolumeId!, Date.now() + deps.moveWaitMs, signal);
    } catch (err) {
      if (err instanceof BerthError && err.code === 'TIMEOUT') {
        throw new BerthError(
          'CONFLICT',
          `volume ${name} (${v.VolumeId}) is attached to running instance ${holder}${info?.tags[keys.host] ? ` (host ${info.tags[keys.host]})` : ''}; it is now tagged to this host, but berth there did not release it within ${deps.moveWaitMs / 1000} s. Stop the container using it there, or check that berth runs on ${holder}; berth never force-detaches a volume from a running instance`,
        );
      }
      throw err;
    }
  }

  async function hostTagged(): Promise<Volume[]> {
    const volumes = await ec2.volumesByTags({ ...scope, [keys.host]: identity.hostId });
    for (const v of volumes) notBerths.delete(tagsOf(v)[keys.volume] ?? '');
    deps.moves?.observe(volumes.map((v) => moveInProgress(v, keys)).filter((j): j is MoveJournal => j !== undefined));
    return volumes;
  }

  const backend: EbsBackend = {
    scope: 'global',
    options: EBS_OPTIONS,
    identity,
    tagKeys: keys,

    validate(name, options) {
      validateEbsOptions(name, options);
    },

    async create(name, options, call = {}) {
      const { signal } = call;
      notBerths.delete(name);
      waiting.delete(name);
      const existing = await lookup(name, signal);
      if (existing) {
        // The caller may refuse it (conflicting options) before anything is tagged.
        call.accept?.(toRecord(existing), !tagsOf(existing)[keys.host]);
        // A retained volume (no host tag) is adopted by this host.
        if (!tagsOf(existing)[keys.host]) {
          await ec2.tag([existing.VolumeId!], { [keys.host]: identity.hostId }, signal);
          log?.info({ name, volumeId: existing.VolumeId }, 'adopted a retained volume');
          return toRecord((await ec2.volume(existing.VolumeId!, signal)) ?? existing);
        }
        return toRecord(existing);
      }
      const tags: Tags = { ...scope, [keys.volume]: name, [keys.host]: identity.hostId, [keys.options]: tagValueOf(options), Name: name };
      await loadTokens();
      for (let rotation = 0; ; rotation++) {
        const generation = tokenGeneration.get(name) ?? 0;
        try {
          const volume = await ec2.createVolume(
            {
              AvailabilityZone: identity.az,
              ...createParamsOf(options),
              ClientToken: tokenOf(name, generation),
              TagSpecifications: [{ ResourceType: 'volume', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }],
            },
            `volume ${name}`,
            signal,
          );
          return toRecord(volume);
        } catch (err) {
          if (err instanceof ClientTokenSpent && rotation < MAX_TOKEN_ROTATIONS) {
            // A racing Create (another agent of this host, with other options) may own the token: its volume wins.
            const raced = await lookup(name, signal);
            if (raced) return toRecord(raced);
            log?.info({ name, generation, why: err.message }, 'ClientToken spent; creating with the next one');
            await spendToken(name);
            continue;
          }
          // A volume EC2 failed and berth deleted spends its token too: the next Create must not get it back.
          if (err instanceof FailedVolumeDeleted) await spendToken(name);
          throw err;
        }
      }
    },

    async find(name) {
      const at = notBerths.get(name);
      if (at !== undefined && Date.now() - at < notFoundCacheMs) return undefined;
      notBerths.delete(name);
      const v = await lookup(name);
      if (!v) {
        notBerths.set(name, Date.now());
        // Bounded: names of other drivers' volumes come and go.
        if (notBerths.size > 1_000) notBerths.delete(notBerths.keys().next().value!);
      }
      // Retained volumes belong to no host: they are adopted by create(), not found.
      return v && tagsOf(v)[keys.host] ? toRecord(v) : undefined;
    },

    async list() {
      return byName(await hostTagged()).tagged.map((f) => f.record);
    },

    async survey() {
      const volumes = await hostTagged();
      const tagged = byName(volumes);
      // A waiting name's facts as EC2 says them now (its attachment, tags, a move's journal); gone from here, or another volume now: looked up again.
      const idOf = new Map(tagged.tagged.map((f) => [f.name, f.volumeId]));
      const byId = new Map(volumes.map((v) => [v.VolumeId, v]));
      for (const [name, entry] of waiting) {
        const fresh = idOf.get(name) === entry.volume.VolumeId ? byId.get(entry.volume.VolumeId) : undefined;
        if (fresh) entry.volume = fresh;
        else waiting.delete(name);
      }
      return { ...tagged, strays: (await strays(new Set(volumes.map((v) => v.VolumeId!)))).map(factsOf) };
    },

    async attach(record, call = {}): Promise<AttachedDevice> {
      const { signal } = call;
      const { name } = record;
      cancelIdle(record.id);
      inUse.add(record.id);
      /** Set once an attachment here is made or under way: a failure after that detaches it again. */
      let attachedHere = false;
      /** Set once this attach changed something at EC2 or waited for a change: what it looked up is stale then. */
      let changed = false;
      try {
        // By name, not by the remembered id: a second volume with this name must stop us here.
        let v = await lookupForAttach(name, signal);
        if (!v) throw new BerthError('NOT_FOUND', `volume ${name}: no EBS volume is tagged ${keys.volume}=${name} any more (was ${record.id})`);
        if (v.VolumeId !== record.id) {
          throw new BerthError('CONFLICT', `volume ${name} is now EBS volume ${v.VolumeId}, not ${record.id} as recorded here; remove it from Docker and create it again to adopt the new one`);
        }
        // Never attach a volume mid-move (docs/design.md §6, "Zone moves"): the move needs it detached.
        const moving = moveInProgress(v, keys);
        if (moving) {
          throw new BerthError(
            'UNAVAILABLE',
            `volume ${name} (${record.id}) is moving to zone ${moving.to}, step ${moving.step}; it cannot be mounted until the move ends (berth move ${name} --zone ${moving.to} resumes it, berth move ${name} --abort rolls it back)`,
          );
        }
        if (v.AvailabilityZone !== identity.az) {
          throw new BerthError(
            'CONFLICT',
            `volume ${name} (${record.id}) is in ${v.AvailabilityZone}, this host in ${identity.az}; EBS volumes cannot attach across zones: stop the node and move its volume (berth move ${name} --zone ${identity.az}), or run the node in ${v.AvailabilityZone}`,
          );
        }
        if (v.State === 'error') throw new BerthError('UNAVAILABLE', `volume ${name} (${record.id}) is in state "error" at EC2`);
        if (tagsOf(v)[keys.host] !== identity.hostId) {
          changed = true;
          await ec2.tag([record.id], { [keys.host]: identity.hostId }, signal);
        }
        let a = attachmentOf(v);
        if (a && a.instanceId !== identity.instanceId) {
          changed = true;
          v = await takeOver(name, v, a.instanceId, signal);
          a = attachmentOf(v);
        }
        if (a?.state === 'detaching') {
          changed = true;
          v = await ec2.waitAvailable(record.id, Date.now() + ec2.timing.detachTimeoutMs, signal);
          a = attachmentOf(v);
        }
        let device: string;
        signal?.throwIfAborted();
        attachedHere = true;
        if (a && a.instanceId === identity.instanceId && a.state === 'attached') {
          device = a.device;
        } else if (a && a.instanceId === identity.instanceId) {
          // Attaching here already (e.g. the agent was restarted mid-attach): let it finish.
          device = await ec2.attach(record.id, a.device, signal);
        } else {
          device = await ec2.attach(record.id, undefined, signal);
        }
        waiting.delete(name);
        const found = await devices.waitFor(record.id, device, deps.deviceWaitMs, { signal });
        const attached = toRecord(v);
        Object.assign(attached.status, { host: identity.hostId, attachedTo: identity.instanceId, attachment: 'attached', ec2Device: device, device: found.path });
        return { devicePath: found.path, record: attached };
      } catch (caught) {
        inUse.delete(record.id);
        let err = caught;
        // EC2 never took the AttachVolume (its budget, a brownout, the caller gone while it waited for a turn): nothing to undo.
        if (err instanceof AttachNotSent) attachedHere = false;
        // The caller's deadline passed while this attach still waited for EC2 (a lookup) with nothing sent or
        // changed: a wait, not a fault (StillWaiting), with the caller's own code and sentence.
        else if (signal?.aborted && err === signal.reason && !changed && !attachedHere) {
          err = new StillWaiting(isBerthError(err) ? err.code : 'TIMEOUT', errorMessage(err), { cause: err });
        }
        // Turned away having changed nothing: the next try starts from the same answer.
        if (changed || attachedHere || !(err instanceof StillWaiting)) waiting.delete(name);
        // A caller that gave up (a Mount past dockerd's deadline while the account's budget was slow)
        // leaves an attachment EC2 has accepted in place, for the idle period: the task's next Mount or
        // the next reconcile pass uses it, instead of one more DetachVolume and AttachVolume on the
        // account's shared bucket (docs/design.md §6). Nothing uses it meanwhile; the idle detach ends it.
        if (attachedHere && signal?.aborted) {
          armIdleDetach(record.id);
          throw err;
        }
        // Nothing uses a volume whose device could not be verified: it must not stay attached.
        if (attachedHere) {
          await detachIfHere(record.id, `the attach did not complete: ${errorMessage(err)}`).catch((e: unknown) =>
            log?.error({ volumeId: record.id, err: errorMessage(e) }, 'could not detach after a failed attach; the next reconcile tries again'),
          );
        }
        throw err;
      }
    },

    async release(record) {
      inUse.delete(record.id);
      waiting.delete(record.name);
      const v = await ec2.volume(record.id).catch(() => undefined);
      if (v && tagsOf(v)[keys.host] !== identity.hostId) {
        await detachIfHere(record.id, 'its host tag names another host');
        return;
      }
      armIdleDetach(record.id);
    },

    async detach(record) {
      inUse.delete(record.id);
      waiting.delete(record.name);
      await detachIfHere(record.id, 'released');
    },

    async remove(record, call = {}) {
      const { signal } = call;
      const { name, id } = record;
      inUse.delete(id);
      waiting.delete(name);
      const v = await ec2.volume(id, signal);
      if (!v || v.State === 'deleting' || v.State === 'deleted') {
        log?.info({ name, volumeId: id }, 'volume already gone at EC2; forgotten here');
        return;
      }
      const owner = tagsOf(v)[keys.host];
      // Another host's volume: this host may let go of it (detach, if it holds it), never change its tags or data.
      const foreign = owner !== undefined && owner !== '' && owner !== identity.hostId;
      if (foreign && record.options.onRemove === 'delete') {
        throw new BerthError(
          'CONFLICT',
          `volume ${name} (${id}) belongs to host ${owner} (${keys.host}), not this host (${identity.hostId}); berth deletes a volume only on its own host: remove it there. Nothing was changed`,
        );
      }
      const detached = await detachIfHere(id, 'removed', v, signal);
      if (foreign) {
        log?.warn({ name, volumeId: id, owner, detached }, `volume forgotten on this host only: it belongs to host ${owner}, whose tags and data are left as they are`);
      } else if (record.options.onRemove === 'delete') {
        await ec2.deleteVolume(id, signal);
        await spendToken(name);
        log?.info({ name, volumeId: id }, 'volume deleted (onRemove=delete)');
      } else {
        await ec2.untag([id], [keys.host, keys.attachedTo, keys.state], signal);
        log?.info({ name, volumeId: id, detached }, detached ? 'volume retained: detached and untagged from this host' : 'volume retained: untagged from this host (it was not attached here)');
      }
    },

    // Online grow (docs/design.md §6): ModifyVolume under EBS's rules (modify-volume.ts), then the wait for `optimizing`.
    async resize(record, options, call = {}) {
      const signal = call.signal ?? AbortSignal.timeout(deps.modifyWaitMs ?? MODIFY_WAIT_MS);
      const v = await ec2.volume(record.id, signal);
      if (!v) throw new BerthError('NOT_FOUND', `volume ${record.name} (${record.id}) is not at EC2 any more`);
      const owner = tagsOf(v)[keys.host];
      if (owner && owner !== identity.hostId) {
        throw new BerthError('CONFLICT', `volume ${record.name} (${record.id}) belongs to host ${owner}; resize it there. Nothing was changed`);
      }
      const outcome = await modifyEbsVolume(ec2.port, { name: record.name, volume: v, current: toRecord(v).options, options, signal, waitMs: deps.modifyWaitMs ?? MODIFY_WAIT_MS, ...(deps.modifyPollMs ? { pollMs: deps.modifyPollMs } : {}) });
      const after = toRecord((await ec2.volume(record.id, signal).catch(() => undefined)) ?? v);
      log?.info({ name: record.name, volumeId: record.id, state: outcome.state }, `volume modified: ${outcome.detail}`);
      return { record: { ...after, status: { ...record.status, ...after.status } }, state: outcome.state, detail: outcome.detail };
    },

    async verifyDevice(record, devicePath) {
      const found = await devices.find(record.id);
      if (found?.path !== devicePath) {
        throw new BerthError('UNSAFE_DEVICE', `${devicePath} is not the device of ${record.id} (${found ? `that is ${found.path}` : 'no device shows that volume'}); not grown`);
      }
    },

    async publishReadiness(instance, volumes) {
      await ec2.tag([identity.instanceId], instance);
      // Volumes with the same tag values share one CreateTags call.
      const groups = new Map<string, { tags: Tags; ids: string[] }>();
      for (const v of volumes) {
        const key = JSON.stringify(v.tags);
        const g = groups.get(key) ?? { tags: v.tags, ids: [] };
        g.ids.push(v.id);
        groups.set(key, g);
      }
      for (const g of groups.values()) await ec2.tag(g.ids, g.tags);
    },

    close() {
      for (const t of idleTimers.values()) clearTimeout(t);
      idleTimers.clear();
    },
  };
  return backend;
}

