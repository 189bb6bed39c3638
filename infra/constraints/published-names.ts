/**
 * Cross-field rule "published names vs the certificate": every DNS name berth publishes in
 * Route 53 must be covered by a name of the certificate Traefik serves (`berth:certDomains`),
 * since every router has `tls=true` and Traefik answers with its one default certificate.
 * Matching as RFC 6125 §6.4.3 and Node's `tls.checkServerIdentity` do: case-insensitive; a `*`
 * only as the whole left-most label, matching exactly one label (so `*.example.com` covers
 * `db1-shop.example.com`, not `db1.shop.example.com`, and not `example.com` itself).
 * No Pulumi here: the regional and unit programs and the tests all call it.
 */
import type { DeclaredCall } from './cross-field.js';

const lower = (s: string) => s.toLowerCase().replace(/\.$/, '');

/** Whether one certificate name covers one host name. */
export function certNameCovers(certName: string, host: string): boolean {
  const c = lower(certName).split('.');
  const h = lower(host).split('.');
  if (c.length !== h.length) return false;
  return c.every((label, i) => label === h[i] || (i === 0 && label === '*' && h[0] !== ''));
}

/** The published names no certificate name covers, each as a sentence naming the certificate's names. */
export function uncoveredNames(names: readonly string[], certDomains: readonly string[]): string[] {
  return names
    .filter((n) => !certDomains.some((c) => certNameCovers(c, n)))
    .map((n) => `${n} is published in DNS but the certificate (${certDomains.join(', ')}) does not cover it: a wildcard covers exactly one label (RFC 6125 §6.4.3)`);
}

/** The names the declared Route 53 changes publish (ChangeResourceRecordSets, every record set). */
export function publishedRecordNames(calls: readonly DeclaredCall[]): string[] {
  const names = new Set<string>();
  for (const { call } of calls) {
    if (call.service !== 'route53' || call.operation !== 'ChangeResourceRecordSets') continue;
    const changes = (call.input['ChangeBatch'] as { Changes?: Array<{ ResourceRecordSet?: { Name?: unknown } }> } | undefined)?.Changes ?? [];
    for (const c of changes) if (typeof c.ResourceRecordSet?.Name === 'string') names.add(c.ResourceRecordSet.Name);
  }
  return [...names];
}

/** The conformance rule over declared calls: every published name covered by `certDomains`. */
export function certificateProblems(calls: readonly DeclaredCall[], certDomains: readonly string[]): string[] {
  return uncoveredNames(publishedRecordNames(calls), certDomains);
}

/**
 * What the regional program can check before anything is declared: its own name, and that the
 * names the unit programs will publish under the zone — `<cluster>.<zone>` and
 * `<node>-<cluster>.<zone>`, one label each (lib/node-contract.ts) — are covered, i.e. the
 * certificate has `*.<zone>`.
 */
export function regionalCertificateProblems(zone: string, ownNames: readonly string[], certDomains: readonly string[]): string[] {
  const problems = uncoveredNames(ownNames, certDomains);
  if (!certDomains.some((c) => lower(c) === `*.${lower(zone)}`)) {
    problems.push(`berth publishes every cluster and node as one label under ${zone} (<cluster>.${zone}, <node>-<cluster>.${zone}); the certificate (${certDomains.join(', ')}) must include *.${zone}`);
  }
  return problems;
}
