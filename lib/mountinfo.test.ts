import { describe, expect, it } from 'vitest';
import { majorMinorOf, mountAt, parseMountinfo } from './mountinfo.js';

const sample = [
  '22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard',
  '98 22 7:3 / /var/lib/berth/mounts/pg\\040data rw,relatime shared:50 - ext4 /dev/loop3 rw',
  '99 22 7:4 / /var/lib/berth/mounts/x rw,relatime - xfs /dev/loop4 rw,nouuid',
  '100 99 7:5 / /var/lib/berth/mounts/x rw,relatime - ext4 /dev/loop5 rw',
].join('\n');

describe('parseMountinfo', () => {
  it('reads device numbers, unescapes mountpoints and finds the optional-field separator', () => {
    const entries = parseMountinfo(sample);
    expect(entries).toHaveLength(4);
    expect(entries[1]).toMatchObject({ majorMinor: '7:3', mountpoint: '/var/lib/berth/mounts/pg data', fstype: 'ext4', source: '/dev/loop3' });
    expect(entries[2]).toMatchObject({ fstype: 'xfs', source: '/dev/loop4' });
  });

  it('returns the topmost of stacked mounts', () => {
    expect(mountAt(parseMountinfo(sample), '/var/lib/berth/mounts/x')?.source).toBe('/dev/loop5');
    expect(mountAt(parseMountinfo(sample), '/nowhere')).toBeUndefined();
  });
});

describe('majorMinorOf', () => {
  it('decodes Linux dev_t the way the kernel encodes it', () => {
    expect(majorMinorOf((7 << 8) | 3)).toBe('7:3');
    // major 259 (blkext, NVMe partitions), minor 300: minor's high bits go above the major
    const rdev = (300 & 0xff) | (259 << 8) | ((300 & ~0xff) << 12);
    expect(majorMinorOf(rdev)).toBe('259:300');
  });
});
