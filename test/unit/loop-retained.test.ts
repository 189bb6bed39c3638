import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Runner } from '../../lib/exec.js';
import { createLoopBackend } from '../../volume-plugin/backends/loop.js';

/**
 * The loop backend's retained volumes (what `berth retained` lists and purges,
 * through the backend): no tool runs, so no root; the kernel's loop devices
 * are a sysfs tree made in a temp dir.
 */
let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const noTools: Runner = () => Promise.reject(new Error('no tool may run'));

function setUp() {
  dir = mkdtempSync(join(tmpdir(), 'berth-retained-'));
  const stateDir = join(dir, 'state');
  const sysfsRoot = join(dir, 'sys');
  mkdirSync(join(stateDir, 'images'), { recursive: true });
  mkdirSync(join(sysfsRoot, 'block'), { recursive: true });
  const image = join(stateDir, 'images', 'kept.img');
  writeFileSync(image, '');
  const side = (retained: boolean) => ({ version: 1, name: 'kept', options: { sizeBytes: 2 ** 25, fs: 'ext4', onRemove: 'retain' }, createdAt: '2026-12-06T00:00:00.000Z', retained });
  writeFileSync(join(stateDir, 'images', 'kept.json'), JSON.stringify(side(true)));
  writeFileSync(join(stateDir, 'images', 'live.json'), JSON.stringify({ ...side(false), name: 'live' }));
  const backend = createLoopBackend({ stateDir, paths: { sysfsRoot, mountinfoPath: join(dir, 'mountinfo'), procRoot: join(dir, 'proc') }, runner: noTools });
  const attach = () => {
    mkdirSync(join(sysfsRoot, 'block', 'loop7', 'loop'), { recursive: true });
    writeFileSync(join(sysfsRoot, 'block', 'loop7', 'loop', 'backing_file'), `${image}\n`);
  };
  const detach = () => rmSync(join(sysfsRoot, 'block', 'loop7'), { recursive: true });
  return { backend, image, attach, detach, stateDir };
}

describe('loop backend: retained volumes', () => {
  it('lists only retained volumes, with the loop devices still backed by their image', async () => {
    const t = setUp();
    expect(await t.backend.retained!()).toEqual([expect.objectContaining({ name: 'kept', image: t.image, sizeBytes: 2 ** 25, devices: [] })]);
    t.attach();
    expect((await t.backend.retained!())[0]!.devices).toEqual(['/dev/loop7']);
  });

  it('purges a retained volume only while no device uses its image, and never a live one', async () => {
    const t = setUp();
    t.attach();
    await expect(t.backend.purgeRetained!('kept')).rejects.toMatchObject({ code: 'CONFLICT', message: expect.stringContaining('attached to /dev/loop7') });
    expect(existsSync(t.image)).toBe(true);
    await expect(t.backend.purgeRetained!('live')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(existsSync(join(t.stateDir, 'images', 'live.json'))).toBe(true);

    t.detach();
    expect(await t.backend.purgeRetained!('kept')).toMatchObject({ name: 'kept', image: t.image });
    expect(existsSync(t.image)).toBe(false);
    expect(existsSync(join(t.stateDir, 'images', 'kept.json'))).toBe(false);
    expect(await t.backend.retained!()).toEqual([]);
  });
});
