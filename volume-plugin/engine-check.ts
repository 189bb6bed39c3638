import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import { dict, held, type Dict, type PersistedVolume } from './state-store.js';

/**
 * The container engine's view of which volumes are in use. Docker's mount IDs
 * are opaque (the engine API never shows them), so a volume is held when a
 * container that may be using it (created, running, paused, restarting) lists
 * it among its mounts, whichever mount ID it used. agent/engine-references.ts
 * asks dockerd's API.
 */
export interface EngineReferences {
  /** Names of the volumes such containers mount; throws when the engine cannot be asked. */
  volumesInUse(signal?: AbortSignal): Promise<ReadonlySet<string>>;
}

/** A volume's references as they were when the engine was asked. */
export interface SeenReferences {
  mounts: Dict<number>;
  unknownRefs: boolean;
}

export function seenReferences(vol: PersistedVolume): SeenReferences {
  return { mounts: dict(Object.entries(vol.mounts)), unknownRefs: vol.unknownRefs === true };
}

/**
 * The engine reference check (docs/design.md §4): dockerd does not send every
 * Unmount (a dockerd killed while containers ran never sends theirs, §11), so
 * the references of a volume no live container mounts are dropped. Only what
 * was counted before the engine was asked is dropped: a Mount that completes
 * meanwhile keeps its reference. Without an engine, or when it does not
 * answer, nothing is dropped.
 */
export class EngineCheck {
  constructor(
    private readonly engine: EngineReferences | undefined,
    private readonly log: Logger,
  ) {}

  get configured(): boolean {
    return this.engine !== undefined;
  }

  /** The engine's answer, or undefined (logged) when there is no engine or it cannot be asked. */
  async inUse(signal: AbortSignal): Promise<ReadonlySet<string> | undefined> {
    if (!this.engine) return undefined;
    try {
      return await this.engine.volumesInUse(signal);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'the container engine did not answer; keeping every reference');
      return undefined;
    }
  }

  /**
   * Drops from `vol` the references `seen` when the engine lists no container
   * using `name`; true when it dropped any (the caller unmounts a volume that
   * is then unheld, and records the change).
   */
  drop(name: string, vol: PersistedVolume, inUse: ReadonlySet<string> | undefined, reason: string, seen: SeenReferences = seenReferences(vol)): boolean {
    if (!inUse || inUse.has(name) || !held(vol)) return false;
    const dropped: string[] = [];
    for (const [id, count] of Object.entries(seen.mounts)) {
      if (!Object.hasOwn(vol.mounts, id)) continue;
      const left = vol.mounts[id]! - count;
      if (left > 0) vol.mounts[id] = left;
      else delete vol.mounts[id];
      dropped.push(id);
    }
    if (seen.unknownRefs) delete vol.unknownRefs;
    this.log.warn({ name, reason, dropped: dropped.length, unknown: seen.unknownRefs }, 'dropped references no container holds (the engine lists none using the volume)');
    return true;
  }
}
