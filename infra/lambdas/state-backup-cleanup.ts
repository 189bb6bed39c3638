import { DeleteObjectsCommand, S3Client, paginateListObjectsV2 } from '@aws-sdk/client-s3';

export interface CleanupArgs {
  readonly bucket: string;
  readonly prefix: string;
  readonly maxAgeDays?: number;
  /** Newest backups kept whatever their age, so a quiet stack never loses its last backups. */
  readonly keepNewest?: number;
  readonly now?: Date;
}

/** Deletes Pulumi state backups (`.pulumi/backups/…`) older than maxAgeDays, keeping the newest few per stack. */
export async function cleanupBackups(s3: S3Client, args: CleanupArgs): Promise<string[]> {
  const maxAgeDays = args.maxAgeDays ?? 30;
  const keepNewest = args.keepNewest ?? 10;
  const cutoff = (args.now ?? new Date()).getTime() - maxAgeDays * 86_400_000;
  const byStack = new Map<string, { key: string; at: number }[]>();
  for await (const page of paginateListObjectsV2({ client: s3 }, { Bucket: args.bucket, Prefix: args.prefix })) {
    for (const o of page.Contents ?? []) {
      if (!o.Key || !o.LastModified) continue;
      const stack = o.Key.slice(0, o.Key.lastIndexOf('/'));
      const list = byStack.get(stack) ?? [];
      list.push({ key: o.Key, at: o.LastModified.getTime() });
      byStack.set(stack, list);
    }
  }
  const doomed = [...byStack.values()].flatMap((list) =>
    list.sort((a, b) => b.at - a.at).slice(keepNewest).filter((o) => o.at < cutoff).map((o) => o.key));
  for (let i = 0; i < doomed.length; i += 1000) {
    const res = await s3.send(new DeleteObjectsCommand({ Bucket: args.bucket, Delete: { Objects: doomed.slice(i, i + 1000).map((Key) => ({ Key })) } }));
    if (res.Errors && res.Errors.length > 0) throw new Error(`could not delete ${res.Errors.length} backup(s), first: ${res.Errors[0]!.Key ?? '?'} ${res.Errors[0]!.Message ?? ''}`);
  }
  return doomed;
}

/**
 * The scheduled entry point. The client is built for the bucket's region (`STATE_BUCKET_REGION`),
 * not the function's: S3 answers a request signed for another region with 301 PermanentRedirect,
 * and the state bucket is the operator's, often in another region than the global stack.
 * `followRegionRedirects` lets a wrong setting cost one extra round trip instead of every run.
 */
export async function handler(): Promise<{ deleted: number }> {
  const bucket = process.env['STATE_BUCKET'];
  if (!bucket) throw new Error('STATE_BUCKET is not set');
  const region = process.env['STATE_BUCKET_REGION'];
  if (!region) throw new Error('STATE_BUCKET_REGION is not set (the state bucket\'s region)');
  const s3 = new S3Client({ region, followRegionRedirects: true });
  const deleted = await cleanupBackups(s3, { bucket, prefix: process.env['BACKUP_PREFIX'] ?? '.pulumi/backups/' });
  console.log(JSON.stringify({ msg: 'pulumi backup cleanup', deleted: deleted.length }));
  return { deleted: deleted.length };
}
