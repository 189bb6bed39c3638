import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBerthError } from '../lib/errors.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';
import { loopManager } from './helpers/manager.js';

const ID1 = 'a'.repeat(64);
const ID2 = 'b'.repeat(64);

/**
 * The state file is checked against its schema at start: anything else is
 * kept aside and the view rebuilt from the image sidecars and mountinfo; the
 * agent never stops on it (under systemd, that is a restart loop).
 */
describe.skipIf(noLoopReason)(`state file with a schema${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;
  const statePath = () => join(stateDir, 'state.json');
  const isMounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);
  const saved = () => JSON.parse(readFileSync(statePath(), 'utf8')) as { version: number; volumes: Record<string, { mounts: Record<string, number> }> };

  beforeEach(() => {
    dir = tempDir('berth-state');
    stateDir = join(dir.path, 'state');
  });
  afterEach(() => {
    dir.cleanup();
    detachLoopDevicesUnder(dir.path);
  });

  const wrongShapes: Array<[string, (existing: string) => void]> = [
    ['volumes as an array', () => writeFileSync(statePath(), '{"version":1,"volumes":[]}')],
    ['an entry {}', () => writeFileSync(statePath(), '{"version":1,"volumes":{"a":{}}}')],
    [
      'mounted:true without mounts',
      (existing) => {
        const s = JSON.parse(existing) as { volumes: Record<string, Record<string, unknown>> };
        s.volumes.a = { ...s.volumes.a, mounted: true };
        delete s.volumes.a!.mounts;
        writeFileSync(statePath(), JSON.stringify(s));
      },
    ],
    ['a negative reference count', (existing) => writeFileSync(statePath(), existing.replace(/"mounts":\{\}/, '"mounts":{"x":-1}'))],
    ['null', () => writeFileSync(statePath(), 'null')],
    [
      'a directory',
      () => {
        rmSync(statePath());
        mkdirSync(statePath());
        writeFileSync(join(statePath(), 'junk'), 'x');
      },
    ],
  ];

  it.each(wrongShapes)('starts with %s in the state file: kept aside, rebuilt from sidecars, written with real content again', async (_what, spoil) => {
    const first = await loopManager(stateDir);
    await first.manager.create('a', {});
    await first.manager.create('b', { onRemove: 'delete' });
    spoil(readFileSync(statePath(), 'utf8'));

    const { manager } = await loopManager(stateDir);
    expect((await manager.list()).map((v) => v.Name).sort()).toEqual(['a', 'b']);
    expect((await manager.get('b')).Status).toMatchObject({ onRemove: 'delete', mounted: false });
    expect(readdirSync(stateDir).filter((f) => f.startsWith('state.json.corrupt-'))).toHaveLength(1);
    const mp = await manager.mount('a', ID1);
    expect(saved().volumes.a!.mounts).toEqual({ [ID1]: 1 });
    // and the file it wrote is read back as is by the next start
    const again = await loopManager(stateDir);
    expect((await again.manager.get('a')).Status).toMatchObject({ mounted: true, containerMounts: 1 });
    await again.manager.unmount('a', ID1);
    expect(isMounted(mp)).toBe(false);
  });

  it('treats names and mount IDs that are Object.prototype keys like any other', async () => {
    const { manager } = await loopManager(stateDir);
    for (const name of ['constructor', 'toString', 'valueOf', 'hasOwnProperty']) {
      expect(isBerthError(await manager.path(name).catch((e: unknown) => e), 'NOT_FOUND')).toBe(true);
      expect(isBerthError(await manager.get(name).catch((e: unknown) => e), 'NOT_FOUND')).toBe(true);
    }
    await manager.create('constructor', {});
    await manager.create('toString', {});
    expect((await manager.list()).map((v) => v.Name).sort()).toEqual(['constructor', 'toString']);
    const mp = await manager.mount('constructor', '__proto__');
    await manager.mount('constructor', ID2);
    await manager.unmount('constructor', ID2);
    expect(isMounted(mp)).toBe(true); // '__proto__' still holds it
    expect(Object.entries(saved().volumes['constructor']!.mounts)).toEqual([['__proto__', 1]]);

    const { manager: restarted } = await loopManager(stateDir);
    expect((await restarted.get('constructor')).Status).toMatchObject({ mounted: true, containerMounts: 1 });
    await restarted.unmount('constructor', 'hasOwnProperty'); // unknown ID: nothing happens
    expect(isMounted(mp)).toBe(true);
    await restarted.unmount('constructor', '__proto__');
    expect(isMounted(mp)).toBe(false);
    await restarted.remove('constructor');
    await restarted.remove('toString');
    expect(await restarted.list()).toEqual([]);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
  });
});
