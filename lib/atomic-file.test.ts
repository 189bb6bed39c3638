import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { writeFileAtomic } from './atomic-file.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-atomic-'));
afterEach(() => {
  vi.restoreAllMocks();
  for (const f of readdirSync(dir)) rmSync(join(dir, f), { force: true, recursive: true });
});

describe('writeFileAtomic', () => {
  it('replaces the file with the new content and mode, leaving no temp file', async () => {
    const path = join(dir, 'state.json');
    writeFileSync(path, 'old');
    await writeFileAtomic(path, 'new', 0o600);
    expect(readFileSync(path, 'utf8')).toBe('new');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it('takes another temp name when one is already there, and leaves that file alone', async () => {
    const random = vi.spyOn(Math, 'random');
    random.mockReturnValueOnce(0.5).mockReturnValueOnce(0.5).mockReturnValueOnce(0.25);
    const taken = `.tmp-${(0.5).toString(36).slice(2, 12)}`;
    writeFileSync(join(dir, taken), 'someone else');
    await writeFileAtomic(join(dir, 'a'), 'data');
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('data');
    expect(readFileSync(join(dir, taken), 'utf8')).toBe('someone else');
    expect(readdirSync(dir).sort()).toEqual([taken, 'a'].sort());
  });

  it('removes its temp file when the rename fails, and leaves what was there', async () => {
    const path = join(dir, 'target');
    mkdirSync(path);
    writeFileSync(join(path, 'inside'), 'kept');
    await expect(writeFileAtomic(path, 'new')).rejects.toThrow(/EISDIR/);
    expect(readFileSync(join(path, 'inside'), 'utf8')).toBe('kept');
    expect(readdirSync(dir)).toEqual(['target']);
  });
});
