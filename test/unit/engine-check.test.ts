import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { EngineCheck, seenReferences } from '../../volume-plugin/engine-check.js';
import { dict, type PersistedVolume } from '../../volume-plugin/state-store.js';

/** The engine reference check (volume-plugin/engine-check.ts) on its own. */
const volume = (mounts: [string, number][], unknownRefs = false): PersistedVolume => ({
  record: { name: 'v', id: 'i', options: { sizeBytes: 1, fs: 'ext4', onRemove: 'retain' }, createdAt: '', status: {} },
  mounts: dict(mounts),
  mounted: true,
  ...(unknownRefs ? { unknownRefs } : {}),
});

describe('engine reference check', () => {
  it('drops only the references counted before the engine was asked; a Mount completed meanwhile keeps its own', () => {
    const check = new EngineCheck({ volumesInUse: async () => new Set() }, silentLogger);
    const vol = volume([['a', 2]], true);
    const seen = seenReferences(vol);
    vol.mounts.a = 3; // one more Mount of a while the engine was asked
    vol.mounts.b = 1;
    expect(check.drop('v', vol, new Set(), 'test', seen)).toBe(true);
    expect({ ...vol.mounts }).toEqual({ a: 1, b: 1 });
    expect(vol.unknownRefs).toBeUndefined();
  });

  it('drops nothing for a volume the engine lists, or without an answer', async () => {
    const vol = volume([['a', 1]]);
    const check = new EngineCheck({ volumesInUse: async () => new Set(['v']) }, silentLogger);
    expect(check.drop('v', vol, await check.inUse(AbortSignal.timeout(1000)), 'test')).toBe(false);
    expect(check.drop('v', vol, undefined, 'test')).toBe(false);
    expect({ ...vol.mounts }).toEqual({ a: 1 });
  });

  it('an engine that fails, or none at all, answers nothing', async () => {
    const failing = new EngineCheck({ volumesInUse: () => Promise.reject(new Error('connect ENOENT')) }, silentLogger);
    expect(failing.configured).toBe(true);
    expect(await failing.inUse(AbortSignal.timeout(1000))).toBeUndefined();
    const none = new EngineCheck(undefined, silentLogger);
    expect(none.configured).toBe(false);
    expect(await none.inUse(AbortSignal.timeout(1000))).toBeUndefined();
  });
});
