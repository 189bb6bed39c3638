/** Region→CIDR map for the regional VPCs; peering requires that no two ranges overlap. */
export type CidrMap = Readonly<Record<string, string>>;

interface Range { readonly start: number; readonly end: number }

export function parseCidr(cidr: string): Range {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!m) throw new Error(`"${cidr}" is not an IPv4 CIDR such as 10.1.0.0/16`);
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) throw new Error(`"${cidr}" is not a valid IPv4 CIDR`);
  const base = octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - bits);
  if (base % size !== 0) throw new Error(`"${cidr}" has host bits set; use ${cidr.split('/')[0]} aligned to /${bits}`);
  return { start: base, end: base + size - 1 };
}

/** The block sizes CreateVpc accepts: a netmask from /16 to /28 (Amazon VPC User Guide, "VPC CIDR blocks"). */
export const VPC_PREFIX = { largest: 16, smallest: 28 } as const;

/**
 * Refuses a VPC block CreateVpc would refuse (larger than /16 or smaller than /28), before any
 * resource is declared. The range itself is checked by parseCidr.
 */
export function assertVpcCidr(cidr: string, owner = 'VPC'): void {
  parseCidr(cidr);
  const prefix = Number(cidr.split('/')[1]);
  if (prefix < VPC_PREFIX.largest) {
    throw new Error(`${owner} CIDR ${cidr} is larger than /${VPC_PREFIX.largest}, the largest block a VPC may have (AWS allows /${VPC_PREFIX.largest} to /${VPC_PREFIX.smallest}); split it or use a /${VPC_PREFIX.largest}`);
  }
  if (prefix > VPC_PREFIX.smallest) {
    throw new Error(`${owner} CIDR ${cidr} is smaller than /${VPC_PREFIX.smallest}, the smallest block a VPC may have (AWS allows /${VPC_PREFIX.largest} to /${VPC_PREFIX.smallest})`);
  }
}

/** Refuses a map that misses a designated region, overlaps, leaves 10.0.0.0/8 (the internal SG range), or holds a block no VPC may have. */
export function validateCidrMap(map: CidrMap, regions: readonly string[]): void {
  const missing = regions.filter((r) => !(r in map));
  if (missing.length > 0) throw new Error(`CIDR map has no entry for region(s): ${missing.join(', ')}`);
  for (const r of regions) assertVpcCidr(map[r]!, `the VPC of ${r}:`);
  const internal = parseCidr('10.0.0.0/8');
  const entries = regions.map((r) => [r, map[r]!, parseCidr(map[r]!)] as const);
  for (const [region, cidr, range] of entries) {
    if (range.start < internal.start || range.end > internal.end) {
      throw new Error(`CIDR ${cidr} of ${region} is outside 10.0.0.0/8, which the internal security group trusts`);
    }
  }
  for (let i = 0; i < entries.length; i++) {
    for (let j = i + 1; j < entries.length; j++) {
      const [ra, ca, a] = entries[i]!;
      const [rb, cb, b] = entries[j]!;
      if (a.start <= b.end && b.start <= a.end) throw new Error(`CIDR ${ca} of ${ra} overlaps ${cb} of ${rb}`);
    }
  }
}

/** Every unordered pair of regions once: the N·(N−1)/2 peering connections of a full mesh. */
export function peeringPairs(regions: readonly string[]): Array<readonly [string, string]> {
  const sorted = [...new Set(regions)].sort();
  const pairs: Array<readonly [string, string]> = [];
  for (let i = 0; i < sorted.length; i++) for (let j = i + 1; j < sorted.length; j++) pairs.push([sorted[i]!, sorted[j]!]);
  return pairs;
}
