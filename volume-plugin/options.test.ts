import { describe, expect, it } from 'vitest';
import { conflictingOptions, formatSize, parseGivenOptions, parseSize, resolveOptions } from './options.js';

describe('parseSize', () => {
  it.each([
    ['10GiB', 10 * 2 ** 30],
    ['512MiB', 512 * 2 ** 20],
    ['1G', 1e9],
    ['1.5GiB', 1.5 * 2 ** 30],
    ['4096', 4096],
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['abc', '', '-1GiB', '0', '10 parsecs', '1e9'])('refuses %j', (text) => {
    expect(() => parseSize(text)).toThrow(/invalid size/);
  });

  it('formats sizes back in the largest whole binary unit', () => {
    expect(formatSize(10 * 2 ** 30)).toBe('10GiB');
    expect(formatSize(1536 * 2 ** 20)).toBe('1536MiB');
    expect(formatSize(1000)).toBe('1000');
  });
});

describe('parseGivenOptions', () => {
  it('types what it is given and leaves the rest absent', () => {
    expect(parseGivenOptions({ size: '1GiB', iops: '3000', encrypted: 'true' })).toEqual({ size: 2 ** 30, iops: 3000, encrypted: true });
    expect(parseGivenOptions(undefined)).toEqual({});
  });

  it('names every problem in one message', () => {
    expect(() => parseGivenOptions({ size: 'abc', fs: 'ntfs', iops: '-1', color: 'x' })).toThrow(
      /unknown option\(s\) color.*|size: invalid size/,
    );
    try {
      parseGivenOptions({ size: 'abc', fs: 'ntfs', iops: '-1' });
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toContain('size: invalid size "abc"');
      expect(msg).toContain('fs:');
      expect(msg).toContain('iops must be a positive whole number');
    }
  });

  it('refuses malformed snapshot ids and mount options that could smuggle arguments', () => {
    expect(() => parseGivenOptions({ snapshotId: 'snap-xyz' })).toThrow(/snapshotId/);
    expect(() => parseGivenOptions({ mountOptions: 'noatime --bind /' })).toThrow(/mountOptions/);
  });
});

describe('conflictingOptions', () => {
  const stored = resolveOptions({ size: 2 ** 30 }, { sizeBytes: 10 * 2 ** 30, fs: 'ext4' });
  it('compares only the keys given, against the stored effective values', () => {
    expect(conflictingOptions({}, stored)).toEqual([]);
    expect(conflictingOptions({ size: 2 ** 30, fs: 'ext4', onRemove: 'retain' }, stored)).toEqual([]);
    expect(conflictingOptions({ size: 2 ** 31, fs: 'xfs' }, stored)).toEqual([
      'size (asked 2GiB, volume has 1GiB)',
      'fs (asked xfs, volume has ext4)',
    ]);
  });
});
