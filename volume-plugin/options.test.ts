import { EBS_OPTIONS } from './backends/ebs/ebs-options.js';
import { describe, expect, it } from 'vitest';
import { assertVolumeName, conflictingOptions, DriverOptsSchema, formatSize, mountOptionArgument, parseGivenOptions, parseSize, resolveOptions } from './options.js';

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
    expect(parseGivenOptions({ size: '1GiB', iops: '3000', encrypted: 'true' }, EBS_OPTIONS)).toEqual({ size: 2 ** 30, iops: 3000, encrypted: true });
    expect(parseGivenOptions(undefined)).toEqual({});
  });

  it('names every problem in one message', () => {
    expect(() => parseGivenOptions({ size: 'abc', fs: 'ntfs', iops: '-1', color: 'x' }, EBS_OPTIONS)).toThrow(
      /unknown option\(s\) color.*|size: invalid size/,
    );
    try {
      parseGivenOptions({ size: 'abc', fs: 'ntfs', iops: '-1' }, EBS_OPTIONS);
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toContain('size: invalid size "abc"');
      expect(msg).toContain('fs:');
      expect(msg).toContain('iops must be a positive whole number');
    }
  });

  it('refuses malformed snapshot ids and mount options that could smuggle arguments', () => {
    expect(() => parseGivenOptions({ snapshotId: 'snap-xyz' }, EBS_OPTIONS)).toThrow(/snapshotId/);
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

describe('hostile option keys', () => {
  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'])('refuses %s as an unknown option, even with valid options beside it', (key) => {
    const opts = JSON.parse(`{"size":"1GiB",${JSON.stringify(key)}:"10GiB"}`) as Record<string, string>;
    expect(() => parseGivenOptions(opts)).toThrow(new RegExp(`unknown option\\(s\\) ${key} \\(known`));
  });

  it('keeps __proto__ in Opts as decoded from JSON, so that it can be refused', () => {
    const decoded = DriverOptsSchema.parse(JSON.parse('{"__proto__":"x","size":"1GiB"}'));
    expect(Object.getPrototypeOf(decoded)).toBeNull();
    expect(Object.keys(decoded)).toEqual(['__proto__', 'size']);
    expect(DriverOptsSchema.safeParse({ size: 5 }).error?.issues[0]).toMatchObject({ message: 'must be a string, got a number 5', path: ['size'] });
  });

  it('takes no size unit from the prototype', () => {
    expect(() => parseSize('1constructor')).toThrow(/use a number with a unit/);
  });
});

describe('user input in error messages is cut short', () => {
  const huge = 'x'.repeat(2 ** 20);
  it.each([
    ['an unknown key', () => parseGivenOptions({ [huge]: 'v' })],
    ['a size', () => parseGivenOptions({ size: huge })],
    ['a volume name', () => assertVolumeName(`-${huge}`)],
    ['a non-string Opts value', () => {
      throw new Error(DriverOptsSchema.safeParse({ [huge]: { deep: huge } }).error?.issues[0]?.message);
    }],
  ])('%s of 1 MiB makes a message under 2 KB that says how long it was', (_what, call) => {
    let message = '';
    try {
      call();
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.length).toBeGreaterThan(0);
    expect(message.length).toBeLessThan(2048);
    expect(message).toMatch(/… \(10485\d\d characters\)/);
  });
});

describe('mountOptions allow-list', () => {
  it.each(['noatime', 'noatime,nodiratime,discard', 'lazytime,commit=30,data=journal,errors=remount-ro', 'noexec,nosuid,nodev'])('accepts %s for ext4', (mountOptions) => {
    expect(resolveOptions(parseGivenOptions({ mountOptions }), { sizeBytes: 2 ** 30, fs: 'ext4' }).mountOptions).toBe(mountOptions);
  });

  it('accepts xfs tuning for xfs only', () => {
    expect(parseGivenOptions({ fs: 'xfs', mountOptions: 'logbufs=8,logbsize=256k,largeio' }).mountOptions).toBe('logbufs=8,logbsize=256k,largeio');
    expect(() => parseGivenOptions({ fs: 'ext4', mountOptions: 'logbufs=8' })).toThrow(/"logbufs=8" is not allowed/);
    // Without fs the default decides: ext4 here.
    expect(() => resolveOptions(parseGivenOptions({ mountOptions: 'logbufs=8' }), { sizeBytes: 2 ** 30, fs: 'ext4' })).toThrow(/"logbufs=8" is not allowed/);
  });

  it.each([
    ['bind', /changes what is mounted where/],
    ['remount', /changes what is mounted where/],
    ['noatime,suid', /"suid" is not allowed \(berth mounts every volume nosuid\)/],
    ['dev', /nodev/],
    ['exec', /only noexec/],
    ['errors=panic', /crash the whole host/],
    ['ro', /docker run -v NAME:\/path:ro/],
    ['rw', /read-write already/],
    ['nobarrier', /power loss/],
    ['data=writeback', /old data/],
    ['commit=0', /"commit=0" is not allowed/],
    ['x-gvfs-show', /"x-gvfs-show" is not allowed/],
    ['noatime,,discard', /an empty option/],
  ])('refuses %s, listing what is allowed', (mountOptions, why) => {
    let message = '';
    try {
      resolveOptions(parseGivenOptions({ mountOptions }), { sizeBytes: 2 ** 30, fs: 'ext4' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(why);
    expect(message).toContain('Allowed for ext4: noatime, nodiratime');
    expect(message).toContain('commit=<1-300 seconds>');
  });

  it('puts nosuid,nodev before the volume\'s own options on every mount, and refuses a stored option off the list', () => {
    expect(mountOptionArgument('ext4', undefined)).toBe('nosuid,nodev');
    expect(mountOptionArgument('xfs', 'noatime')).toBe('nosuid,nodev,nouuid,noatime');
    expect(() => mountOptionArgument('ext4', 'suid')).toThrow(/the volume's mountOptions: "suid" is not allowed/);
  });
});
