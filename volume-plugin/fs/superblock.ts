import { open } from 'node:fs/promises';
import { BerthError } from '../../lib/errors.js';
import type { Filesystem } from '../options.js';

/**
 * The size a filesystem says it has, read from its on-disk superblock: the
 * grow check on every Mount of an existing volume needs only this number, and
 * a read of 4 KiB costs less than the dumpe2fs or xfs_info spawn that prints
 * it (docs/operations.md "Where it stands"). The layouts are the kernel's:
 *
 * - ext4 (fs/ext4/ext4.h, struct ext4_super_block, at byte 1024, little
 *   endian): s_blocks_count_lo at 0x04, s_log_block_size at 0x18 (block size
 *   1024 << it), s_magic 0xEF53 at 0x38, s_feature_incompat at 0x60 (0x80 =
 *   64bit, then s_blocks_count_hi at 0x150 holds the high 32 bits). The same
 *   "Block count" and "Block size" dumpe2fs -h prints.
 * - xfs (fs/xfs/libxfs/xfs_format.h, struct xfs_dsb, at byte 0, big endian):
 *   sb_magicnum "XFSB", sb_blocksize at 4, sb_dblocks at 8. The same
 *   "data bsize=… blocks=…" xfs_info prints.
 *
 * A read through the block device's cache can be older than what a mounted
 * xfs has written since (xfs writes around that cache): the worst it does is
 * a grow that finds nothing to grow, once per device size.
 */
export async function filesystemBytes(devicePath: string, fs: Filesystem): Promise<number> {
  const buf = Buffer.alloc(4096);
  const file = await open(devicePath, 'r');
  try {
    const { bytesRead } = await file.read(buf, 0, buf.length, 0);
    if (bytesRead < buf.length) throw new BerthError('INTERNAL', `could not read the superblock of ${devicePath}: the device is shorter than 4 KiB`);
  } finally {
    await file.close();
  }
  return fs === 'ext4' ? ext4Bytes(buf, devicePath) : xfsBytes(buf, devicePath);
}

const EXT4_SUPERBLOCK = 1024;
const EXT4_MAGIC = 0xef53;
const EXT4_INCOMPAT_64BIT = 0x80;

function ext4Bytes(disk: Buffer, devicePath: string): number {
  const sb = disk.subarray(EXT4_SUPERBLOCK, EXT4_SUPERBLOCK + 1024);
  if (sb.readUInt16LE(0x38) !== EXT4_MAGIC) throw new BerthError('INTERNAL', `no ext4 superblock on ${devicePath}`);
  const logBlockSize = sb.readUInt32LE(0x18);
  // ext4 allows 1 KiB to 64 KiB blocks; anything else is not a superblock to trust.
  if (logBlockSize > 6) throw new BerthError('INTERNAL', `the ext4 superblock on ${devicePath} names an impossible block size`);
  const high = sb.readUInt32LE(0x60) & EXT4_INCOMPAT_64BIT ? sb.readUInt32LE(0x150) : 0;
  return (high * 2 ** 32 + sb.readUInt32LE(0x04)) * (1024 << logBlockSize);
}

const XFS_MAGIC = 0x58465342; // "XFSB"

function xfsBytes(sb: Buffer, devicePath: string): number {
  if (sb.readUInt32BE(0) !== XFS_MAGIC) throw new BerthError('INTERNAL', `no xfs superblock on ${devicePath}`);
  const blockSize = sb.readUInt32BE(4);
  // xfs blocks are 512 B to 64 KiB, a power of two.
  if (blockSize < 512 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) {
    throw new BerthError('INTERNAL', `the xfs superblock on ${devicePath} names an impossible block size`);
  }
  return Number(sb.readBigUInt64BE(8)) * blockSize;
}
