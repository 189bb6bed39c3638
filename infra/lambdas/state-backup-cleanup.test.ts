import { DeleteObjectsCommand, ListObjectsV2Command, S3Client, type DeleteObjectsCommandInput, type ListObjectsV2CommandInput } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { cleanupBackups } from './state-backup-cleanup.js';

const s3 = mockClient(S3Client);
const now = new Date('2026-06-01T00:00:00Z');
const daysAgo = (d: number) => new Date(now.getTime() - d * 86_400_000);
let objects: Map<string, Date>;

beforeEach(() => {
  objects = new Map();
  for (let d = 0; d < 50; d++) objects.set(`.pulumi/backups/unit-shop/unit-shop.${d}.json`, daysAgo(d));
  objects.set('.pulumi/backups/regional-eu/regional-eu.1.json', daysAgo(400));
  objects.set('.pulumi/stacks/unit-shop.json', daysAgo(400));
  s3.reset();
  s3.on(ListObjectsV2Command).callsFake((i: ListObjectsV2CommandInput) => ({
    Contents: [...objects].filter(([k]) => k.startsWith(i.Prefix ?? '')).map(([Key, LastModified]) => ({ Key, LastModified })),
  }));
  s3.on(DeleteObjectsCommand).callsFake((i: DeleteObjectsCommandInput) => {
    for (const o of i.Delete?.Objects ?? []) objects.delete(o.Key!);
    return { Deleted: i.Delete?.Objects };
  });
});

describe('cleanupBackups', () => {
  it('deletes only backups older than the limit, keeps the newest per stack and never touches live state', async () => {
    const deleted = await cleanupBackups(new S3Client({ region: 'eu-west-1' }), { bucket: 'state', prefix: '.pulumi/backups/', now });
    expect(deleted).toHaveLength(50 - 31);
    expect(objects.has('.pulumi/backups/unit-shop/unit-shop.30.json')).toBe(true);
    expect(objects.has('.pulumi/backups/unit-shop/unit-shop.31.json')).toBe(false);
    expect(objects.has('.pulumi/backups/regional-eu/regional-eu.1.json')).toBe(true);
    expect(objects.has('.pulumi/stacks/unit-shop.json')).toBe(true);
    expect(await cleanupBackups(new S3Client({ region: 'eu-west-1' }), { bucket: 'state', prefix: '.pulumi/backups/', now })).toEqual([]);
  });
});
