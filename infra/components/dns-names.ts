import { clusterHostLabel, clusterPublishedLabels, nodeHostLabelProblem, type PublishedLabel } from '../../lib/node-contract.js';

/**
 * The DNS names a cluster gets, each one label under the zone so the zone's wildcard
 * certificate `*.<zone>` covers it (RFC 6125 §6.4.3: a wildcard matches one label). Node names
 * are unique only within their cluster, and a node lives in one region, so a node's name
 * carries its cluster (`<node>-<cluster>`) and is a plain record: two clusters with a node `db1`
 * never share a name, and no other region can add an alternative to it. The cluster's own name
 * is latency-routed: each region's stack adds its record under its region as the set identifier.
 */

function checked(fqdn: string): string {
  const labels = fqdn.split('.');
  const bad = labels.find((l) => !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l));
  if (bad !== undefined) throw new Error(`DNS name ${fqdn}: label "${bad}" must be 1-63 lowercase letters, digits or "-", not starting or ending with "-"`);
  if (fqdn.length > 253) throw new Error(`DNS name ${fqdn} is ${fqdn.length} characters, over DNS's 253`);
  return fqdn;
}

/** Where clients reach one node (Traefik routes it by Host): the contract's name, checked for DNS. */
export function nodeHostName(node: string, cluster: string, zone: string): string {
  return publishedName(clusterPublishedLabels(cluster, [node])[1]!, zone);
}

/** `<cluster>.<zone>`: the cluster's latency-routed name. */
export function clusterHostName(cluster: string, zone: string): string {
  return checked(`${clusterHostLabel(cluster)}.${zone}`);
}

function publishedName(l: PublishedLabel, zone: string): string {
  if (l.node !== undefined) {
    const tooLong = nodeHostLabelProblem(l.node, l.cluster);
    if (tooLong) throw new Error(tooLong);
  }
  return checked(`${l.label}.${zone}`);
}

/**
 * Every name a cluster publishes, from the one label list the cluster API checks across
 * clusters (`clusterPublishedLabels`, lib/node-contract.ts): the cluster's own name first, then
 * one per node; `node` is undefined for the cluster's own.
 */
export function clusterPublishedNames(cluster: string, nodes: readonly string[], zone: string): Array<{ fqdn: string; node: string | undefined }> {
  return clusterPublishedLabels(cluster, nodes).map((l) => ({ fqdn: publishedName(l, zone), node: l.node }));
}
