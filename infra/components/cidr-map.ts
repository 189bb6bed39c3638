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

/** Refuses a map that misses a designated region, overlaps, or leaves 10.0.0.0/8 (the internal SG range). */
export function validateCidrMap(map: CidrMap, regions: readonly string[]): void {
  const missing = regions.filter((r) => !(r in map));
  if (missing.length > 0) throw new Error(`CIDR map has no entry for region(s): ${missing.join(', ')}`);
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
