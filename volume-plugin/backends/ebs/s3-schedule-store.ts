import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { errorMessage } from '../../../lib/errors.js';
import { ec2ScheduleCheckKey } from '../../../lib/ec2-schedule-object.js';
import { SCHEDULE } from './fleet-schedule.js';
import type { ScheduleDocument, ScheduleStore } from './schedule-store.js';

/**
 * The account's EC2 schedule in one S3 object (docs/design.md §6, "Sharing the account"), changed
 * only by compare-and-swap with S3's conditional writes (S3 User Guide, "How to prevent object
 * overwrites with conditional writes"; API reference, PutObject `If-None-Match` since 2024-08 and
 * `If-Match` since 2024-11; botocore's s3 model on this machine documents both headers):
 * - `read`: GetObject; the object's ETag is its version; 404 NoSuchKey is "no document yet", and so
 *   is 403 AccessDenied, which S3 answers for a missing key to a caller without s3:ListBucket (the
 *   host role has none), once the self-check read its own object under the same grant; a 403 after
 *   which a create is refused with 412 (the object exists) is a real denial and throws.
 * - `write(body, undefined)`: PutObject with `If-None-Match: *` (only if there is none);
 *   `write(body, version)`: PutObject with `If-Match: <ETag>`. 200 gives the new ETag. 412
 *   PreconditionFailed (another writer came first) and 409 ConditionalRequestConflict (S3: "a
 *   conflicting operation occurs during the upload") are answers, not faults: nothing was written,
 *   the caller reads again, so they are `undefined` (and the SDK does not retry them: its standard
 *   retry takes 5xx, throttling and timeouts only). An `If-Match` on a key that is gone answers 404
 *   NoSuchKey: the same lost race (someone removed it), also `undefined`.
 * - Anything else throws with a sentence naming `s3://bucket/key`, and the facade paces alone.
 * Every call is bounded by `callTimeoutMs` (2 s) and the caller's signal, both passed to the SDK
 * as `abortSignal`; the body is read under the same bound.
 *
 * A store that ignores the conditions would accept every write and lose every race silently (an
 * S3-compatible server without conditional writes, such as s3rver): worse than no store. So before
 * its first use the store checks itself once on `<key>.check`: a PutObject with `If-None-Match: *`
 * (creates it, or is refused because it exists), the same again (must be refused), and one with an
 * `If-Match` no object has (must be refused), then a GetObject of it (the grant reads). A store
 * that accepts either conditional write throws on every call
 * after ("… ignores conditional writes; berth paces this host alone"). A check that could not
 * finish (the store unreachable) is tried again at the next call.
 */
export interface S3ScheduleStoreOptions {
  readonly s3: Pick<S3Client, 'send'>;
  readonly bucket: string;
  /** `ec2ScheduleKey(prefix, region)` (lib/ec2-schedule-object.ts). */
  readonly key: string;
  /** Bound of each S3 call, body included; default `SCHEDULE.storeTimeoutMs` (fleet-schedule.ts: a schedule slow to read is no help). */
  readonly callTimeoutMs?: number;
}


/** An ETag no object has: S3's ETags are quoted hex digests (MD5, or MD5-parts). */
const NO_SUCH_ETAG = '"berth-self-check-no-object-has-this-etag"';
const CHECK_BODY = JSON.stringify({ berth: 'self-check of conditional writes on the EC2 schedule store' });

type Refusal = 'precondition' | 'conflict' | 'missing' | 'denied';

/** S3's answers by error code (botocore's model has shapes for none of 412/409 on PutObject; the SDK names the error by the body's Code). */
function refusalOf(err: unknown): Refusal | undefined {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode;
  if (status === 412 || e?.name === 'PreconditionFailed') return 'precondition';
  if (status === 409 || e?.name === 'ConditionalRequestConflict') return 'conflict';
  // Not NoSuchBucket (also 404): a missing bucket is a fault, not "no document yet".
  if (e?.name === 'NoSuchKey') return 'missing';
  if (status === 403 && e?.name === 'AccessDenied') return 'denied';
  return undefined;
}

export class ScheduleStoreError extends Error {
  override name = 'ScheduleStoreError';
}

export class S3ScheduleStore implements ScheduleStore {
  readonly where: string;
  private readonly s3: Pick<S3Client, 'send'>;
  private readonly bucket: string;
  private readonly key: string;
  private readonly callTimeoutMs: number;
  /** The self-check under way or passed; cleared when it could not finish. */
  private checked: Promise<void> | undefined;
  /** Set for good once the store was seen to ignore conditions. */
  private ignoresConditions: ScheduleStoreError | undefined;
  /** What the last 403 on read meant: 'absent' (taken for "none yet"), 'exists' (a create after it was refused: a real denial). */
  private deniedRead: 'no' | 'absent' | 'exists' = 'no';

  constructor(opts: S3ScheduleStoreOptions) {
    this.s3 = opts.s3;
    this.bucket = opts.bucket;
    this.key = opts.key;
    this.callTimeoutMs = opts.callTimeoutMs ?? SCHEDULE.storeTimeoutMs;
    this.where = `s3://${opts.bucket}/${opts.key}`;
  }

  async read(signal?: AbortSignal): Promise<ScheduleDocument | undefined> {
    await this.selfCheck(signal);
    try {
      const doc = await this.bounded(signal, async (s) => {
        const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key }), { abortSignal: s });
        const body = await out.Body!.transformToString();
        if (!out.ETag) throw new Error('S3 answered without an ETag');
        return { body, version: out.ETag };
      });
      this.deniedRead = 'no';
      return doc;
    } catch (err) {
      const refusal = refusalOf(err);
      if (refusal === 'missing') return undefined;
      // Without s3:ListBucket (the host role has none) S3 answers a missing key with 403 AccessDenied, not 404
      // (S3 API reference, GetObject, "Permissions"). The self-check read its own object under the same grant,
      // so a 403 here is "none yet", unless a create that followed it was refused because the object exists.
      if (refusal === 'denied' && this.deniedRead !== 'exists') {
        this.deniedRead = 'absent';
        return undefined;
      }
      if (refusal === 'denied') {
        throw this.failure('read', err, 'it exists (a create was refused with 412) but S3 denies reading it: the host role needs s3:GetObject on it, and kms:Decrypt when the bucket uses SSE-KMS');
      }
      throw this.failure('read', err);
    }
  }

  async write(body: string, version: string | undefined, signal?: AbortSignal): Promise<string | undefined> {
    await this.selfCheck(signal);
    try {
      const etag = await this.put(this.key, body, version, signal);
      this.deniedRead = 'no';
      return etag;
    } catch (err) {
      const refusal = refusalOf(err);
      if (refusal === 'precondition' && version === undefined && this.deniedRead === 'absent') this.deniedRead = 'exists';
      // 404 NoSuchKey answers If-Match when the object is gone: the same lost race (someone removed it).
      if (refusal === 'precondition' || refusal === 'conflict' || (refusal === 'missing' && version !== undefined)) return undefined;
      throw this.failure('write', err);
    }
  }

  private async put(key: string, body: string, version: string | undefined, signal: AbortSignal | undefined): Promise<string> {
    return this.bounded(signal, async (s) => {
      const out = await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/json',
          ...(version === undefined ? { IfNoneMatch: '*' } : { IfMatch: version }),
        }),
        { abortSignal: s },
      );
      if (!out.ETag) throw new Error('S3 answered without an ETag');
      return out.ETag;
    });
  }

  /** Runs `work` under the call bound and the caller's signal; whichever ends first ends it. */
  private async bounded<T>(signal: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const timer = AbortSignal.timeout(this.callTimeoutMs);
    const s = signal ? AbortSignal.any([signal, timer]) : timer;
    s.throwIfAborted();
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(timer.aborted && !signal?.aborted ? new Error(`no answer within ${this.callTimeoutMs} ms`) : s.reason);
      s.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([work(s), aborted]);
    } finally {
      s.removeEventListener('abort', onAbort!);
    }
  }

  private failure(what: 'read' | 'write' | 'check', err: unknown, why?: string): ScheduleStoreError {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    const status = e?.$metadata?.httpStatusCode;
    const code = e?.name && e.name !== 'Error' ? `${e.name}${status ? ` (${status})` : ''}: ` : '';
    const where = what === 'check' ? `s3://${this.bucket}/${ec2ScheduleCheckKey(this.key)}` : this.where;
    return new ScheduleStoreError(`cannot ${what === 'check' ? 'self-check' : what} the EC2 schedule store ${where}: ${code}${errorMessage(err)}${why ? ` (${why})` : ''}`, { cause: err });
  }

  private async selfCheck(signal: AbortSignal | undefined): Promise<void> {
    if (this.ignoresConditions) throw this.ignoresConditions;
    this.checked ??= this.runSelfCheck().catch((err: unknown) => {
      this.checked = undefined;
      throw err;
    });
    // The check is shared by every caller; each waits only as long as its own signal allows.
    if (!signal) return this.checked;
    signal.throwIfAborted();
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([this.checked, new Promise<never>((_, reject) => signal.addEventListener('abort', (onAbort = () => reject(signal.reason)), { once: true }))]);
    } finally {
      signal.removeEventListener('abort', onAbort!);
    }
  }

  private async runSelfCheck(): Promise<void> {
    const checkKey = ec2ScheduleCheckKey(this.key);
    const attempt = async (version: string | undefined): Promise<'written' | Refusal> => {
      try {
        await this.put(checkKey, CHECK_BODY, version, undefined);
        return 'written';
      } catch (err) {
        const refusal = refusalOf(err);
        if (refusal === 'precondition' || refusal === 'conflict' || (refusal === 'missing' && version !== undefined)) return refusal;
        throw this.failure('check', err);
      }
    };
    await attempt(undefined); // creates the check object, or is refused because it is there: either is fine
    const again = await attempt(undefined);
    const stale = await attempt(NO_SUCH_ETAG);
    if (again === 'written' || stale === 'written') {
      const ignored = [again === 'written' ? 'If-None-Match' : '', stale === 'written' ? 'If-Match' : ''].filter(Boolean).join(' and ');
      this.ignoresConditions = new ScheduleStoreError(
        `the EC2 schedule store s3://${this.bucket}/${checkKey} ignores conditional writes (${ignored} accepted where S3 refuses with 412); berth paces this host alone`,
      );
      throw this.ignoresConditions;
    }
    // The check object exists now: reading it back proves the grant reads (s3:GetObject, and kms:Decrypt under
    // SSE-KMS), which is what lets read() take a 403 on the schedule for "none yet".
    try {
      await this.bounded(undefined, async (s) => {
        const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: checkKey }), { abortSignal: s });
        await out.Body!.transformToString();
      });
    } catch (err) {
      throw this.failure('check', err, refusalOf(err) === 'denied' ? 'the host role needs s3:GetObject on it, and kms:Decrypt when the bucket uses SSE-KMS' : undefined);
    }
  }
}
