import { describe, expect, it } from 'vitest';
import { mayPublishLabel } from '../../lib/node-contract.js';
import { checkPublishedLabels, checkTransition, publishedLabels, withMovedVolumes, withNodeMoved, withNodeStopped, type ClusterSpec } from './invariants.js';

const regions = ['eu-west-1', 'us-east-1'];
const base: ClusterSpec = { name: 'shop', region: 'eu-west-1', hosts: ['h1', 'h2'], nodes: [{ name: 'n1', host: 'h1' }, { name: 'n2', host: 'h2' }] };

describe('checkTransition', () => {
  it('accepts create, extend and shrink that keep nodes on live hosts', () => {
    expect(() => checkTransition(undefined, base, regions)).not.toThrow();
    const extended = { ...base, hosts: [...base.hosts, 'h3'], nodes: [...base.nodes, { name: 'n3', host: 'h3' }] };
    expect(() => checkTransition(base, extended, regions)).not.toThrow();
    expect(() => checkTransition(extended, base, regions)).not.toThrow();
  });
  it('refuses placing a node on a host the change removes', () => {
    const next = { ...base, hosts: ['h1'] };
    expect(() => checkTransition(base, next, regions)).toThrow(/n2 is placed on host h2, which this change removes/);
  });
  it("grows a node's volume, never shrinks it (EBS ModifyVolume only grows)", () => {
    const sized = { ...base, nodes: [{ name: 'n1', host: 'h1', sizeGiB: 20 }, base.nodes[1]!] };
    expect(() => checkTransition(sized, { ...sized, nodes: [{ name: 'n1', host: 'h1', sizeGiB: 40 }, base.nodes[1]!] }, regions)).not.toThrow();
    expect(() => checkTransition(sized, { ...sized, nodes: [{ name: 'n1', host: 'h1', sizeGiB: 10 }, base.nodes[1]!] }, regions)).toThrow(
      /^node n1 has a 20 GiB volume; EBS volumes only grow, not shrink to 10 GiB$/,
    );
  });
  it('moves a node to another host only with the volume a zone move made; never drops or swaps a moved volume in place', () => {
    expect(() => checkTransition(base, { ...base, nodes: [{ name: 'n1', host: 'h2' }, base.nodes[1]!] }, regions)).toThrow(/node n1 is on host h1; moving it to h2 .* use the cluster API's moveNode/);
    const vol = { id: 'vol-0123456789abcdef0', snapshotId: 'snap-0123456789abcdef0', iops: 3000, throughput: 125 };
    const moved = withNodeMoved(withNodeStopped(base, 'n1'), 'n1', 'h3', vol, 8);
    expect(moved).toEqual({ ...base, hosts: ['h2', 'h3'], nodes: [{ name: 'n1', host: 'h3', volume: vol, sizeGiB: 8 }, base.nodes[1]!] });
    expect(() => checkTransition(base, moved, regions)).not.toThrow();
    // A later spec that leaves the volume out gets it back; one that drops or swaps it is refused.
    const later = { ...moved, nodes: [{ name: 'n1', host: 'h3', sizeGiB: 16 }, base.nodes[1]!] };
    expect(withMovedVolumes(moved, later).nodes[0]).toEqual({ name: 'n1', host: 'h3', sizeGiB: 16, volume: vol });
    expect(() => checkTransition(moved, later, regions)).toThrow(/node n1 has volume vol-0123456789abcdef0 since its zone move; a spec without it would make Pulumi create a blank one/);
    expect(() => checkTransition(moved, { ...moved, nodes: [{ ...moved.nodes[0]!, volume: { ...vol, id: 'vol-00000000000000001' } }, base.nodes[1]!] }, regions)).toThrow(/would make Pulumi adopt another volume/);
    expect(() => checkTransition(base, { ...moved, nodes: [{ ...moved.nodes[0]!, volume: { ...vol, id: 'vol-x' } }, base.nodes[1]!] }, regions)).toThrow(/volume id "vol-x" is not an EBS volume id/);
  });
  it('refuses a host left without nodes', () => {
    expect(() => checkTransition(base, { ...base, nodes: [base.nodes[0]!] }, regions)).toThrow(/h2 would carry no node/);
  });
  it('refuses shrinking below one node; deletes a whole cluster only when every node is on one of its hosts', () => {
    expect(() => checkTransition(base, { ...base, hosts: [], nodes: [] }, regions)).toThrow(/at least one node/);
    expect(() => checkTransition(base, undefined, regions)).not.toThrow();
    expect(() => checkTransition({ ...base, nodes: [{ name: 'n1', host: 'h9' }] }, undefined, regions)).toThrow(/n1 on h9 outside its hosts/);
  });
  it('refuses unknown regions and names invalid for DNS or tags', () => {
    expect(() => checkTransition(undefined, { ...base, region: 'mars-1' }, regions)).toThrow(/mars-1 is not a designated region/);
    expect(() => checkTransition(undefined, { ...base, name: 'Shop_1' }, regions)).toThrow(/cluster name "Shop_1"/);
    expect(() => checkTransition(undefined, { ...base, nodes: [{ name: '-n', host: 'h1' }, base.nodes[1]!] }, regions)).toThrow(/node name "-n"/);
  });
  it('refuses a node whose DNS label <node>-<cluster> would be over 63 characters, and takes one of exactly 63', () => {
    const longest = 'n'.repeat(63 - '-shop'.length);
    expect(() => checkTransition(undefined, { ...base, nodes: [{ name: longest, host: 'h1' }, base.nodes[1]!] }, regions)).not.toThrow();
    expect(() => checkTransition(undefined, { ...base, nodes: [{ name: `${longest}x`, host: 'h1' }, base.nodes[1]!] }, regions))
      .toThrow(/its DNS label "n+x-shop" \(<node>-<cluster>\) is 64 characters, over DNS's 63/);
  });
  it('refuses a cluster or host named like a region\'s Traefik host (traefik-<region>), whatever the region', () => {
    expect(() => checkTransition(undefined, { ...base, name: 'traefik-eu-west-1' }, regions)).toThrow(/cluster name "traefik-eu-west-1" is reserved: traefik-<region> names a region's Traefik host/);
    // A region added later would collide too.
    expect(() => checkTransition(undefined, { ...base, name: 'traefik-ap-southeast-2' }, regions)).toThrow(/is reserved/);
    expect(() => checkTransition(undefined, { ...base, hosts: ['traefik-us-gov-west-1', 'h2'], nodes: [{ name: 'n1', host: 'traefik-us-gov-west-1' }, base.nodes[1]!] }, regions))
      .toThrow(/host name "traefik-us-gov-west-1" is reserved/);
    expect(() => checkTransition(base, undefined, regions)).not.toThrow();
    expect(() => checkTransition(undefined, { ...base, name: 'traefik-lab' }, regions)).not.toThrow();
    expect(() => checkTransition(undefined, { ...base, nodes: [{ name: 'traefik-eu-west-1', host: 'h1' }, base.nodes[1]!] }, regions)).not.toThrow();
    // A node's DNS label is <node>-<cluster>: node `traefik` of cluster `eu-west-1` would be the Traefik host's name.
    expect(() => checkTransition(undefined, { ...base, name: 'eu-west-1', nodes: [{ name: 'traefik', host: 'h1' }, base.nodes[1]!] }, regions))
      .toThrow(/node traefik of cluster eu-west-1: its DNS name would be traefik-eu-west-1\.<zone>, a region's Traefik host's/);
  });
  it('refuses moving a node between hosts', () => {
    const next = { ...base, nodes: [{ name: 'n1', host: 'h2' }, { name: 'n2', host: 'h1' }] };
    expect(() => checkTransition(base, next, regions)).toThrow(/n1 is on host h1/);
  });
});

/** One cluster in eu-west-1, one host per node. */
const cluster = (name: string, ...nodes: string[]): ClusterSpec => ({ name, region: 'eu-west-1', hosts: nodes.map((n) => `h-${n}`), nodes: nodes.map((n) => ({ name: n, host: `h-${n}` })) });

describe('checkPublishedLabels: the names two clusters of one zone publish', () => {
  it('publishes the cluster\'s own label and <node>-<cluster> per node; only a cluster named like a label\'s tail can publish it', () => {
    const shop = cluster('shop', 'db1', 'db2', 'a-b');
    expect(publishedLabels(shop).map((l) => l.label)).toEqual(['shop', 'db1-shop', 'db2-shop', 'a-b-shop']);
    // The cluster API reads only the stacks mayPublishLabel names: it must name every cluster that does publish a label.
    for (const l of publishedLabels(shop)) expect(mayPublishLabel('shop', l.label), l.label).toBe(true);
    expect(['b-shop', 'a-b-shop', 'shop'].every((c) => mayPublishLabel(c, 'a-b-shop'))).toBe(true);
    expect(['hop', 'b-sho', 'a-b', 'a', 'db2-shop', 'ab-shop'].some((c) => mayPublishLabel(c, 'a-b-shop'))).toBe(false);
  });
  it('refuses node a-b of cluster c beside node a of cluster b-c (both a-b-c), naming both owners', () => {
    expect(() => checkPublishedLabels(undefined, cluster('c', 'a-b'), [cluster('b-c', 'a')]))
      .toThrow('node a-b of cluster c would publish a-b-c.<zone>, which node a of cluster b-c publishes (<node>-<cluster> joins names that may contain "-"); rename the node or the cluster');
    expect(() => checkPublishedLabels(undefined, cluster('b-c', 'a'), [cluster('c', 'a-b')])).toThrow(/^node a of cluster b-c would publish a-b-c\.<zone>, which node a-b of cluster c publishes/);
  });
  it('refuses a cluster named like another cluster\'s node label, and that node beside such a cluster', () => {
    expect(() => checkPublishedLabels(undefined, cluster('db1-shop', 'n1'), [cluster('shop', 'db1')]))
      .toThrow(/^cluster db1-shop would publish db1-shop\.<zone>, which node db1 of cluster shop publishes .*; rename the cluster$/);
    const shop = cluster('shop', 'db2');
    expect(() => checkPublishedLabels(shop, cluster('shop', 'db2', 'db1'), [cluster('db1-shop', 'n1')]))
      .toThrow(/^node db1 of cluster shop would publish db1-shop\.<zone>, which cluster db1-shop publishes/);
  });
  it('accepts clusters whose names share parts but no label, and checks only the labels a change adds', () => {
    expect(() => checkPublishedLabels(undefined, cluster('blue', 'db1'), [cluster('shop', 'db1'), cluster('shop-eu', 'db1-blue-x')])).not.toThrow();
    // What is deployed already holds its records: a change that keeps them is not refused for them.
    const held = cluster('c', 'a-b');
    expect(() => checkPublishedLabels(held, cluster('c', 'a-b', 'x'), [cluster('b-c', 'a')])).not.toThrow();
    // The cluster's own earlier specs are not another cluster's.
    expect(() => checkPublishedLabels(undefined, cluster('c', 'a-b'), [cluster('c', 'a-b')])).not.toThrow();
  });
  it('refuses any label of a cluster that is a region\'s Traefik record, traefik-<region>', () => {
    // Node `traefik-eu` of cluster `west-1` would be traefik-eu-west-1.<zone>, the regional stack's record.
    expect(() => checkTransition(undefined, cluster('west-1', 'traefik-eu'), regions))
      .toThrow(/^node traefik-eu of cluster west-1: its DNS name would be traefik-eu-west-1\.<zone>, a region's Traefik host's/);
    expect(() => checkTransition(undefined, cluster('southeast-2', 'traefik-ap'), regions)).toThrow(/traefik-ap-southeast-2\.<zone>, a region's Traefik host's/);
    expect(() => checkTransition(undefined, cluster('west-1', 'traefik'), regions)).not.toThrow();
  });
});
