import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../lib/atomic-file.js';
import type { VolumeRecord } from './backends/backend.js';

/** What survives an agent restart: records and who has each volume mounted. */
export interface PersistedVolume {
  record: VolumeRecord;
  /** Docker mount ID → number of Mount calls not yet matched by an Unmount. */
  mounts: Record<string, number>;
  mounted: boolean;
  devicePath?: string;
  lastError?: string;
}

export interface PersistedState {
  version: 1;
  volumes: Record<string, PersistedVolume>;
}

// Volume names and mount IDs are user input: they key prototype-free objects only, so
// `constructor` or `__proto__` is a name like any other.
export function emptyState(): PersistedState {
  return { version: 1, volumes: Object.create(null) as Record<string, PersistedVolume> };
}

export function noMounts(): Record<string, number> {
  return Object.create(null) as Record<string, number>;
}

/** JSON.parse reviver: every object prototype-free, own keys (`__proto__` included) kept as data. */
function prototypeFree(_key: string, value: unknown): unknown {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? Object.assign(Object.create(null) as object, value) : value;
}

/**
 * The state file, replaced atomically on every change. A missing file starts
 * empty; a corrupt one is kept aside (state.json.corrupt-<time>) and the
 * caller rebuilds from the backend and mountinfo.
 */
export class StateStore {
  readonly path: string;

  constructor(
    stateDir: string,
    private readonly logger?: Logger,
  ) {
    this.path = join(stateDir, 'state.json');
  }

  async load(): Promise<{ state: PersistedState; rebuilt: boolean }> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.logger?.warn({ path: this.path }, 'no state file; rebuilding from the backend and mountinfo');
      return { state: emptyState(), rebuilt: true };
    }
    try {
      const parsed = JSON.parse(text, prototypeFree) as PersistedState;
      if (parsed.version !== 1 || typeof parsed.volumes !== 'object' || parsed.volumes === null) throw new Error('unknown layout');
      return { state: parsed, rebuilt: false };
    } catch (err) {
      const aside = `${this.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(this.path, aside);
      this.logger?.warn({ path: this.path, aside, err: (err as Error).message }, 'state file is corrupt; kept aside, rebuilding from the backend and mountinfo');
      return { state: emptyState(), rebuilt: true };
    }
  }

  async save(state: PersistedState): Promise<void> {
    await writeFileAtomic(this.path, JSON.stringify(state), 0o600);
  }
}
