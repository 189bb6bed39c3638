import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOOP_TOOLS } from '../volume-plugin/backends/loop.js';
import { FILESYSTEM_TOOLS } from '../volume-plugin/fs/filesystem.js';
import { missingTools, toolsFor } from './preflight.js';

const repo = join(import.meta.dirname, '..');
/** The programs a module really runs: every runner('name', …) call, with mkfs.${fs} expanded. */
function programsRun(file: string): string[] {
  const text = readFileSync(join(repo, file), 'utf8');
  const names = [...text.matchAll(/runner\(\s*(['`])([^'`]+)\1/g)].map((m) => m[2]!);
  return [...new Set(names.flatMap((n) => (n === 'mkfs.${fs}' ? ['mkfs.ext4', 'mkfs.xfs'] : [n])))].sort();
}

describe('the tools berth checks for are the tools it runs', () => {
  it('FILESYSTEM_TOOLS lists every program fs/filesystem.ts runs, and LOOP_TOOLS every one loop.ts runs', () => {
    expect(programsRun('volume-plugin/fs/filesystem.ts')).toEqual([...FILESYSTEM_TOOLS.all, ...FILESYSTEM_TOOLS.ext4, ...FILESYSTEM_TOOLS.xfs].sort());
    expect(programsRun('volume-plugin/backends/loop.ts')).toEqual([...LOOP_TOOLS].sort());
  });

  it('the agent images carry every one of them: Dockerfile.agent checks for them, the local base image copies them in', () => {
    const runs = [...FILESYSTEM_TOOLS.all, ...FILESYSTEM_TOOLS.ext4, ...FILESYSTEM_TOOLS.xfs, ...LOOP_TOOLS];
    const checked = /tools='([^']+)'/.exec(readFileSync(join(repo, 'Dockerfile.agent'), 'utf8'))?.[1]?.split(/\s+/) ?? [];
    const copied = /^TOOLS=\(([^)]+)\)/m.exec(readFileSync(join(repo, 'scripts/local-base-image.sh'), 'utf8'))?.[1]?.split(/\s+/) ?? [];
    // A tool missing there resolves to busybox's applet in the local image, or fails the first Mount in production.
    expect(runs.filter((t) => !checked.includes(t))).toEqual([]);
    expect(runs.filter((t) => !copied.includes(t))).toEqual([]);
  });

  it('requires the loop tools only on the loop backend, and the xfs tools only when xfs is the default', () => {
    expect(toolsFor('loop', 'ext4').required).toEqual(expect.arrayContaining(['losetup', 'resize2fs', 'e2fsck', 'blockdev']));
    expect(toolsFor('loop', 'ext4').required).not.toContain('findmnt');
    expect(toolsFor('ebs', 'ext4').required).not.toContain('losetup');
    expect(toolsFor('ebs', 'ext4').optional).toEqual(['mkfs.xfs', 'xfs_growfs']);
    expect(toolsFor('ebs', 'xfs').required).toContain('xfs_growfs');
  });

  it('finds executables on PATH without a shell', () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-tools-'));
    writeFileSync(join(dir, 'berth-tool-x'), '#!/bin/sh\n');
    chmodSync(join(dir, 'berth-tool-x'), 0o755);
    writeFileSync(join(dir, 'berth-tool-y'), 'not executable');
    expect(missingTools(['berth-tool-x', 'berth-tool-y', 'sh'], dir)).toEqual(['berth-tool-y']);
  });
});
