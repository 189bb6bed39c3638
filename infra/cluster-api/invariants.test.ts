import { describe, expect, it } from 'vitest';
import { checkTransition, type ClusterSpec } from './invariants.js';

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
  it('refuses a cluster or host named like a region\'s Traefik host (traefik-<region>), whatever the region', () => {
    expect(() => checkTransition(undefined, { ...base, name: 'traefik-eu-west-1' }, regions)).toThrow(/cluster name "traefik-eu-west-1" is reserved: traefik-<region> names a region's Traefik host/);
    // A region added later would collide too.
    expect(() => checkTransition(undefined, { ...base, name: 'traefik-ap-southeast-2' }, regions)).toThrow(/is reserved/);
    expect(() => checkTransition(undefined, { ...base, hosts: ['traefik-us-gov-west-1', 'h2'], nodes: [{ name: 'n1', host: 'traefik-us-gov-west-1' }, base.nodes[1]!] }, regions))
      .toThrow(/host name "traefik-us-gov-west-1" is reserved/);
    expect(() => checkTransition(base, undefined, regions)).not.toThrow();
    expect(() => checkTransition(undefined, { ...base, name: 'traefik-lab' }, regions)).not.toThrow();
    expect(() => checkTransition(undefined, { ...base, nodes: [{ name: 'traefik-eu-west-1', host: 'h1' }, base.nodes[1]!] }, regions)).not.toThrow();
  });
  it('refuses moving a node between hosts', () => {
    const next = { ...base, nodes: [{ name: 'n1', host: 'h2' }, { name: 'n2', host: 'h1' }] };
    expect(() => checkTransition(base, next, regions)).toThrow(/n1 is on host h1/);
  });
});
