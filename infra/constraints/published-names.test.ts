import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ClusterSpec } from '../cluster-api/invariants.js';
import { deploymentMocks, publishedNames, runUnit, type Deployment } from '../test/published-names.js';
import type { Declared } from '../test/pulumi-mocks.js';
import { certNameCovers, regionalCertificateProblems, uncoveredNames } from './published-names.js';

/** A certificate as Node's TLS sees it, with these subject alternative names. */
const certFor = (names: readonly string[]) => ({ subject: {}, subjectaltname: names.map((n) => `DNS:${n}`).join(', ') }) as unknown as PeerCertificate;

const clusters: ClusterSpec[] = [
  { name: 'shop', region: 'eu-west-1', hosts: ['shop-h1', 'shop-h2'], nodes: [{ name: 'db1', host: 'shop-h1' }, { name: 'db2', host: 'shop-h2' }] },
  // The longest node name cluster `blue` allows: its label is 63 characters.
  { name: 'blue', region: 'eu-west-1', hosts: ['h'.repeat(63)], nodes: [{ name: 'n'.repeat(58), host: 'h'.repeat(63) }] },
];
const deployment: Deployment = { zone: 'example.com', certDomains: ['example.com', '*.example.com'], region: 'eu-west-1', clusters };

let declared: Declared[] = [];
beforeAll(() => {
  declared = deploymentMocks(deployment);
});

describe('published names vs the certificate', () => {
  it('matches as Node\'s checkServerIdentity does: a wildcard covers one whole left-most label', () => {
    const cases: Array<[string[], string]> = [
      [['*.example.com'], 'db1-shop.example.com'], [['*.example.com'], 'db1.shop.example.com'], [['*.example.com'], 'example.com'],
      [['example.com'], 'example.com'], [['*.example.com'], 'DB1-Shop.Example.com'], [['*.shop.example.com'], 'db1.shop.example.com'],
      [['*.example.com'], 'a.b.example.com'], [['db1-shop.example.com'], 'db2-shop.example.com'], [['*.example.com'], 'example.org'],
    ];
    for (const [names, host] of cases) {
      expect(certNameCovers(names[0]!, host), `${names[0]} for ${host}`).toBe(checkServerIdentity(host, certFor(names)) === undefined);
    }
  });

  it('every name the regional and unit programs publish is covered by the configured certificate, as Node verifies it', async () => {
    const names = await publishedNames(declared, deployment);
    expect(names.sort()).toEqual([
      'blue.example.com', 'db1-shop.example.com', 'db2-shop.example.com', `${'n'.repeat(58)}-blue.example.com`, 'shop.example.com', 'traefik-eu-west-1.example.com',
    ]);
    expect(uncoveredNames(names, deployment.certDomains)).toEqual([]);
    for (const n of names) expect(checkServerIdentity(n, certFor(deployment.certDomains)), n).toBeUndefined();
    // The names of the earlier scheme, two labels under the zone, would fail every TLS client.
    expect(uncoveredNames(['db1.shop.example.com'], deployment.certDomains)).toEqual([expect.stringMatching(/db1\.shop\.example\.com is published in DNS but the certificate/)]);
  });

  it('a unit stack checks its names against the regional stack\'s certificate (uncoveredNames: its update fails with the sentence above)', async () => {
    const outputs = await runUnit(clusters[0]!, deployment);
    expect(outputs['certificateCovers']).toEqual(deployment.certDomains);
    expect(uncoveredNames(outputs['fqdns'] as string[], ['example.com', '*.shop.example.com'])).toEqual([
      expect.stringMatching(/^shop\.example\.com is published in DNS but the certificate \(example\.com, \*\.shop\.example\.com\) does not cover it/),
      expect.stringMatching(/^db1-shop\.example\.com /), expect.stringMatching(/^db2-shop\.example\.com /),
    ]);
  });

  it('the regional program refuses a certificate that would not cover the zone\'s names, before declaring anything', async () => {
    expect(regionalCertificateProblems('example.com', ['traefik-eu-west-1.example.com'], ['example.com', '*.example.com'])).toEqual([]);
    expect(regionalCertificateProblems('example.com', ['traefik-eu-west-1.example.com'], ['example.com'])).toEqual([
      expect.stringMatching(/traefik-eu-west-1\.example\.com is published in DNS but the certificate \(example\.com\) does not cover it/),
      expect.stringMatching(/must include \*\.example\.com/),
    ]);
    pulumi.runtime.setAllConfig({
      'aws:region': 'eu-west-1', 'berth:globalStack': 'acme/berth-global/prod', 'berth:regions': '["eu-west-1"]', 'berth:cidrs': '{"eu-west-1":"10.1.0.0/16"}',
      'berth:zone': 'example.com', 'berth:zoneId': 'Z0EXAMPLE', 'berth:release': 'src-0123456789abcdef', 'berth:certDomains': '["example.com","*.shop.example.com"]',
    });
    const { regionalProgram } = await import('../programs/regional/index.js');
    expect(() => regionalProgram()).toThrow(/berth:certDomains: .*must include \*\.example\.com/);
  });
});
