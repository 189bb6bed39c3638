import { X509Certificate } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import * as acme from 'acme-client';
import type { Logger } from 'pino';

/**
 * Issues and renews the wildcard certificate with ACME DNS-01 and uploads it
 * where every Traefik host's berth refresher looks (docs/design.md §7). Runs on a
 * schedule (traefik/renewer/handler.ts); does nothing while the stored
 * certificate has more than renewBeforeDays left.
 */

/** Publishes and removes `_acme-challenge` TXT values (Route 53 in production). */
export interface Dns01Provider {
  setTxt(fqdn: string, value: string): Promise<void>;
  /** Removes every value this provider set on the name. */
  clearTxt(fqdn: string): Promise<void>;
}

export interface RenewerDeps {
  s3: Pick<S3Client, 'send'>;
  bucket: string;
  certObject: string;
  keyObject: string;
  accountKeyObject: string;
  /** KMS key for the private key and the account key at rest (SSE-KMS); the bucket default when unset. */
  kmsKeyId?: string;
  domains: readonly string[];
  email: string;
  directoryUrl: string;
  dns: Dns01Provider;
  renewBeforeDays?: number;
  now?: () => Date;
  logger: Logger;
}

export interface RenewResult {
  action: 'renewed' | 'not_due';
  validTo: Date;
  daysLeft: number;
}

const DAY_MS = 86_400_000;

/**
 * An object's text, or undefined when the key does not exist. S3 answers a missing key with 404
 * NoSuchKey only to a caller allowed s3:ListBucket on the bucket, and with 403 AccessDenied to
 * everyone else (S3 API reference, GetObject, "Permissions"). The renewer's role may list only
 * under its own prefix, so a 403 is settled by listing exactly that key: absent means "not there
 * yet"; present means the read itself was denied (a policy or KMS problem), which is an error and
 * never a reason to issue a new certificate or account key.
 */
export async function readIfExists(s3: Pick<S3Client, 'send'>, bucket: string, key: string): Promise<string | undefined> {
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return await res.Body?.transformToString('utf8');
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'NoSuchKey') return undefined;
    if (name !== 'AccessDenied') throw err;
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key, MaxKeys: 1 })).catch((listErr: unknown) => {
      throw new Error(
        `s3://${bucket}/${key}: GetObject was denied and listing the key to tell "missing" from "denied" failed too (${(listErr as Error).name}); the renewer needs s3:ListBucket on the bucket for the prefix of its objects`,
        { cause: listErr },
      );
    });
    if (!(listed.Contents ?? []).some((o) => o.Key === key)) return undefined;
    throw err;
  }
}

const readObject = (deps: RenewerDeps, key: string) => readIfExists(deps.s3, deps.bucket, key);

async function putSecret(deps: RenewerDeps, key: string, body: string): Promise<void> {
  await deps.s3.send(
    new PutObjectCommand({
      Bucket: deps.bucket,
      Key: key,
      Body: body,
      ServerSideEncryption: 'aws:kms',
      ...(deps.kmsKeyId ? { SSEKMSKeyId: deps.kmsKeyId } : {}),
    }),
  );
}

/** The challenge name of a domain: a wildcard and its base share one. */
export function challengeName(domain: string): string {
  return `_acme-challenge.${domain.replace(/^\*\./, '')}`;
}

export async function renewIfDue(deps: RenewerDeps): Promise<RenewResult> {
  const now = deps.now?.() ?? new Date();
  const renewBefore = (deps.renewBeforeDays ?? 30) * DAY_MS;
  const log = deps.logger;

  const current = await readObject(deps, deps.certObject);
  if (current) {
    const cert = new X509Certificate(current);
    const validTo = new Date(cert.validTo);
    const coversAll = deps.domains.every((d) => (cert.subjectAltName ?? '').toLowerCase().split(', ').includes(`dns:${d.toLowerCase()}`));
    if (coversAll && validTo.getTime() - now.getTime() > renewBefore) {
      const daysLeft = Math.floor((validTo.getTime() - now.getTime()) / DAY_MS);
      log.info({ validTo: validTo.toISOString(), daysLeft }, 'certificate is not due for renewal');
      return { action: 'not_due', validTo, daysLeft };
    }
    log.info({ validTo: validTo.toISOString(), coversAll }, 'renewing the certificate');
  } else {
    log.info('no certificate stored yet; issuing one');
  }

  let accountKey = await readObject(deps, deps.accountKeyObject);
  if (!accountKey) {
    accountKey = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
    await putSecret(deps, deps.accountKeyObject, accountKey);
    log.info('created a new ACME account key');
  }

  const client = new acme.Client({ directoryUrl: deps.directoryUrl, accountKey });
  const [key, csr] = await acme.crypto.createCsr({ commonName: deps.domains[0], altNames: [...deps.domains] }, await acme.crypto.createPrivateEcdsaKey('P-256'));
  const names = new Set<string>();
  let certPem: string;
  try {
    certPem = await client.auto({
      csr,
      email: deps.email,
      termsOfServiceAgreed: true,
      challengePriority: ['dns-01'],
      // Our DNS provider confirms its own changes; the client's own lookup would ask the system resolver.
      skipChallengeVerification: true,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        if (challenge.type !== 'dns-01') throw new Error(`unexpected ${challenge.type} challenge`);
        const fqdn = challengeName(authz.identifier.value);
        names.add(fqdn);
        await deps.dns.setTxt(fqdn, keyAuthorization);
      },
      // A wildcard and its base share one TXT name: clear only once every challenge is valid (below).
      challengeRemoveFn: async () => undefined,
    });
  } finally {
    for (const fqdn of names) await deps.dns.clearTxt(fqdn).catch((err: unknown) => log.warn({ fqdn, err: (err as Error).message }, 'could not clear a TXT record'));
  }

  const issued = new X509Certificate(certPem);
  const validTo = new Date(issued.validTo);
  // Key first: a refresher that sees the new certificate must find its key.
  await putSecret(deps, deps.keyObject, key.toString());
  await deps.s3.send(new PutObjectCommand({ Bucket: deps.bucket, Key: deps.certObject, Body: certPem, ContentType: 'application/x-pem-file' }));
  const daysLeft = Math.floor((validTo.getTime() - now.getTime()) / DAY_MS);
  log.info({ validTo: validTo.toISOString(), serial: issued.serialNumber, names: issued.subjectAltName }, 'uploaded a renewed certificate');
  return { action: 'renewed', validTo, daysLeft };
}
