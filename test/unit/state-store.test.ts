import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { dict, StateStore, type PersistedState } from '../../volume-plugin/state-store.js';

/** The state file's writes (volume-plugin/state-store.ts): atomic, coalesced, failures said plainly. */
let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const record = (name: string) => ({ name, id: `id-${name}`, options: { sizeBytes: 2 ** 20, fs: 'ext4' as const, onRemove: 'retain' as const }, createdAt: '', status: {} });

describe('state store', () => {
  it('saves asked for while a write is under way share the next write, which holds every change', async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-store-'));
    const state: PersistedState = { version: 1, volumes: dict() };
    const add = (name: string) => (state.volumes[name] = { record: record(name), mounts: dict(), mounted: false });
    const saves: Promise<void>[] = [];
    let writes = 0;
    const store = new StateStore(dir, silentLogger, undefined, () => {
      // While the first write is under way, four more changes ask to be saved.
      if (++writes === 1) for (const name of ['b', 'c', 'd', 'e']) saves.push((add(name), store.save(state)));
    });
    add('a');
    await store.save(state);
    await Promise.all(saves);
    expect(writes).toBe(2);
    expect(Object.keys((JSON.parse(readFileSync(store.path, 'utf8')) as PersistedState).volumes)).toEqual(['a', 'b', 'c', 'd', 'e']);

    await store.save(state);
    expect(writes).toBe(3); // alone: one write of its own
  });

  it('a failed write is a sentence that names the file and what happened anyway', async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-store-'));
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, '');
    const store = new StateStore(file, silentLogger);
    await expect(store.save({ version: 1, volumes: dict() }, 'the volume is unmounted all the same')).rejects.toMatchObject({
      code: 'INTERNAL',
      message: expect.stringMatching(/could not record the change in .*not-a-dir\/state\.json \(ENOTDIR\); the volume is unmounted all the same/),
    });
  });
});
