import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { filesystemBytes } from './superblock.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-superblock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function image(name: string, bytes: number): string {
  const path = join(dir, name);
  truncateSync((closeSync(openSync(path, 'w')), path), bytes);
  return path;
}

/** What the filesystem's own tools print as its size (what the grow check read before). */
function dumpe2fsBytes(path: string): number {
  const out = execFileSync('dumpe2fs', ['-h', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return Number(/^Block count:\s+(\d+)/m.exec(out)![1]) * Number(/^Block size:\s+(\d+)/m.exec(out)![1]);
}

function xfsDbBytes(path: string): number {
  const out = execFileSync('xfs_db', ['-r', '-c', 'sb 0', '-c', 'p blocksize dblocks', path], { encoding: 'utf8' });
  return Number(/^blocksize = (\d+)/m.exec(out)![1]) * Number(/^dblocks = (\d+)/m.exec(out)![1]);
}

describe('filesystemBytes', () => {
  it.each([
    ['ext4, 4 KiB blocks, 64bit', 1024, ['-b', '4096', '-O', '64bit']],
    ['ext4, 1 KiB blocks, without 64bit', 64, ['-b', '1024', '-O', '^64bit']],
    ['ext4, 2 KiB blocks, an odd size', 77, ['-b', '2048']],
  ])('reads the size dumpe2fs prints: %s', async (_label, mib, args) => {
    const path = image(`e-${mib}.img`, mib * 2 ** 20 + 12_288);
    execFileSync('mkfs.ext4', ['-q', '-F', ...args, path]);
    const bytes = await filesystemBytes(path, 'ext4');
    expect(bytes).toBe(dumpe2fsBytes(path));
    expect(bytes).toBeGreaterThan(0);
  });

  it('reads the size xfs reports', async () => {
    const path = image('x.img', 320 * 2 ** 20);
    execFileSync('mkfs.xfs', ['-q', '-f', path]);
    expect(await filesystemBytes(path, 'xfs')).toBe(xfsDbBytes(path));
  });

  it('counts the high 32 bits of a 64bit ext4 block count', async () => {
    const path = image('hi.img', 64 * 2 ** 20);
    execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-O', '64bit', path]);
    const before = await filesystemBytes(path, 'ext4');
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.from([1, 0, 0, 0]), 0, 4, 1024 + 0x150);
    closeSync(fd);
    expect(await filesystemBytes(path, 'ext4')).toBe(before + 2 ** 32 * 4096);
  });

  it('refuses what is not the filesystem it was asked about', async () => {
    const blank = image('blank.img', 2 ** 20);
    await expect(filesystemBytes(blank, 'ext4')).rejects.toThrow(/no ext4 superblock/);
    await expect(filesystemBytes(blank, 'xfs')).rejects.toThrow(/no xfs superblock/);
    const ext4 = image('other.img', 32 * 2 ** 20);
    execFileSync('mkfs.ext4', ['-q', '-F', ext4]);
    await expect(filesystemBytes(ext4, 'xfs')).rejects.toThrow(/no xfs superblock/);
    const fd = openSync(ext4, 'r+');
    writeSync(fd, Buffer.from([0xff, 0, 0, 0]), 0, 4, 1024 + 0x18);
    closeSync(fd);
    await expect(filesystemBytes(ext4, 'ext4')).rejects.toThrow(/impossible block size/);
    await expect(filesystemBytes(image('tiny.img', 100), 'ext4')).rejects.toThrow(/shorter than 4 KiB/);
  });
});
