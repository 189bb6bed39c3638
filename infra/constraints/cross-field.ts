import { parseCidr, VPC_PREFIX } from '../components/cidr-map.js';
import type { ApiCall } from './resource-shapes.js';

/**
 * Rules AWS enforces across fields of one request, or across requests, that no single shape in
 * the models carries. Each is cited to where AWS states it. `names24` keeps "published names vs
 * the certificate" in a file of its own.
 */

/** An API call and the declared resource it comes from (`<type> <logical name>`). */
export interface DeclaredCall {
  readonly resource: string;
  /** The resource's logical name: other resources hold `<name>-id` under the mocks. */
  readonly name: string;
  readonly call: ApiCall;
}

const prefixOf = (cidr: string) => Number(cidr.split('/')[1]);

/**
 * VPC and subnet blocks: a VPC's IPv4 block and a subnet's are each between /16 and /28 (Amazon
 * VPC User Guide, "VPC CIDR blocks" and "Subnet CIDR blocks"), and a subnet's block lies inside
 * its VPC's ("Subnet CIDR blocks": a subnet's block is a subset of the VPC's).
 */
export function networkProblems(calls: readonly DeclaredCall[]): string[] {
  const problems: string[] = [];
  const vpcs = new Map<string, string>();
  for (const { resource, name, call } of calls) {
    if (call.service !== 'ec2' || (call.operation !== 'CreateVpc' && call.operation !== 'CreateSubnet')) continue;
    const cidr = call.input['CidrBlock'];
    if (typeof cidr !== 'string') continue;
    const prefix = prefixOf(cidr);
    const what = call.operation === 'CreateVpc' ? 'VPC' : 'subnet';
    if (prefix < VPC_PREFIX.largest || prefix > VPC_PREFIX.smallest) {
      problems.push(`${resource}: ${what} block ${cidr} is outside /${VPC_PREFIX.largest}–/${VPC_PREFIX.smallest} (${call.operation} refuses it)`);
    }
    if (call.operation === 'CreateVpc') vpcs.set(`${name}-id`, cidr);
  }
  for (const { resource, call } of calls) {
    if (call.service !== 'ec2' || call.operation !== 'CreateSubnet') continue;
    const vpcCidr = vpcs.get(String(call.input['VpcId']));
    const cidr = call.input['CidrBlock'];
    if (!vpcCidr || typeof cidr !== 'string') continue; // a VPC of another stack: its block is not known here
    const [v, sub] = [parseCidr(vpcCidr), parseCidr(cidr)];
    if (sub.start < v.start || sub.end > v.end) problems.push(`${resource}: subnet block ${cidr} is not inside its VPC's ${vpcCidr}`);
  }
  return problems;
}

/** The routing-policy fields of a ResourceRecordSet (Route 53 API Reference, ResourceRecordSet). */
export const ROUTING_POLICIES = ['Weight', 'Region', 'Failover', 'GeoLocation', 'MultiValueAnswer', 'GeoProximityLocation', 'CidrRoutingConfig'] as const;

interface RecordView { resource: string; zone: string; name: string; type: string; set: Record<string, unknown> }

const given = (v: unknown) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0);
const policiesOf = (set: Record<string, unknown>) => ROUTING_POLICIES.filter((p) => given(set[p]));

/**
 * Route 53 record sets (Route 53 API Reference, ResourceRecordSet; Developer Guide, "Choosing a
 * routing policy" and "Values specific for ... records"):
 * - at most one routing policy per record set, and `SetIdentifier` exactly when there is one;
 * - an alias has no TTL and no ResourceRecords; any other record set has both;
 * - record sets that share a name and type in one zone are all of one routing policy, each with
 *   its own SetIdentifier (a simple record set stands alone: "Tried to create resource record
 *   set ... but it already exists");
 * - a CNAME shares its name with no other record set (RFC 1034 §3.6.2; Route 53 refuses it).
 */
export function route53Problems(calls: readonly DeclaredCall[]): string[] {
  const problems: string[] = [];
  const views: RecordView[] = [];
  for (const { resource, call } of calls) {
    if (call.service !== 'route53' || call.operation !== 'ChangeResourceRecordSets') continue;
    const changes = ((call.input['ChangeBatch'] as { Changes?: Array<{ ResourceRecordSet?: Record<string, unknown> }> } | undefined)?.Changes) ?? [];
    for (const c of changes) {
      const set = c.ResourceRecordSet;
      if (!set) continue;
      views.push({ resource, zone: String(call.input['HostedZoneId']), name: `${String(set['Name']).toLowerCase().replace(/\.$/, '')}.`, type: String(set['Type']), set });
    }
  }
  for (const { resource, name, type, set } of views) {
    const at = `${resource}: record set ${name} ${type}`;
    const policies = policiesOf(set);
    if (policies.length > 1) problems.push(`${at} has ${policies.join(' and ')} routing at once; a record set takes one routing policy`);
    if (policies.length > 0 && !given(set['SetIdentifier'])) problems.push(`${at} has ${policies[0]} routing but no SetIdentifier`);
    if (policies.length === 0 && given(set['SetIdentifier'])) problems.push(`${at} has a SetIdentifier but no routing policy`);
    if (given(set['AliasTarget'])) {
      if (given(set['TTL']) || given(set['ResourceRecords'])) problems.push(`${at} is an alias and also has TTL or values; an alias takes neither`);
    } else {
      if (!given(set['TTL'])) problems.push(`${at} has no TTL (required unless it is an alias)`);
      if (!given(set['ResourceRecords'])) problems.push(`${at} has no values (required unless it is an alias)`);
    }
  }
  const byName = new Map<string, RecordView[]>();
  for (const v of views) byName.set(`${v.zone} ${v.name}`, [...(byName.get(`${v.zone} ${v.name}`) ?? []), v]);
  for (const group of byName.values()) {
    const cname = group.find((v) => v.type === 'CNAME');
    if (cname && group.length > 1 && group.some((v) => v.type !== 'CNAME')) {
      problems.push(`${cname.resource}: CNAME ${cname.name} shares its name with ${group.filter((v) => v.type !== 'CNAME').map((v) => `${v.type} (${v.resource})`).join(', ')}`);
    }
    const byType = new Map<string, RecordView[]>();
    for (const v of group) byType.set(v.type, [...(byType.get(v.type) ?? []), v]);
    for (const [type, sets] of byType) {
      if (sets.length < 2) continue;
      const where = `record sets ${sets[0]!.name} ${type} (${sets.map((v) => v.resource).join(', ')})`;
      const kinds = new Set(sets.map((v) => policiesOf(v.set).join('+') || 'simple'));
      if (kinds.has('simple')) problems.push(`${where}: a simple record set cannot share its name and type with another`);
      else if (kinds.size > 1) problems.push(`${where}: mix ${[...kinds].join(' and ')} routing; record sets of one name and type share one routing policy`);
      const ids = sets.map((v) => String(v.set['SetIdentifier']));
      const dup = ids.find((id, i) => ids.indexOf(id) !== i);
      if (dup !== undefined) problems.push(`${where}: SetIdentifier "${dup}" is used twice`);
    }
  }
  return problems;
}

/** Every cross-field rule above. */
export function crossFieldProblems(calls: readonly DeclaredCall[]): string[] {
  return [...networkProblems(calls), ...route53Problems(calls)];
}
