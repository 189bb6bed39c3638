import { describe, expect, it } from 'vitest';
import { peeringPairs, validateCidrMap } from './cidr-map.js';

const regions = ['eu-west-1', 'us-east-1', 'ap-southeast-2'];
const map = { 'eu-west-1': '10.1.0.0/16', 'us-east-1': '10.2.0.0/16', 'ap-southeast-2': '10.3.0.0/16' };

describe('validateCidrMap', () => {
  it('accepts disjoint ranges covering every designated region', () => {
    expect(() => validateCidrMap(map, regions)).not.toThrow();
  });
  it('refuses a missing region, naming it', () => {
    expect(() => validateCidrMap(map, [...regions, 'sa-east-1'])).toThrow(/sa-east-1/);
  });
  it('refuses overlapping ranges, naming both regions', () => {
    expect(() => validateCidrMap({ ...map, 'us-east-1': '10.1.128.0/17' }, regions)).toThrow(/10\.1\.128\.0\/17 of us-east-1 overlaps|overlaps 10\.1\.128\.0\/17 of us-east-1/);
  });
  it('refuses malformed, misaligned and non-10/8 ranges', () => {
    expect(() => validateCidrMap({ ...map, 'eu-west-1': '10.1.0.0' }, regions)).toThrow(/not an IPv4 CIDR/);
    expect(() => validateCidrMap({ ...map, 'eu-west-1': '10.1.0.1/16' }, regions)).toThrow(/host bits/);
    expect(() => validateCidrMap({ ...map, 'eu-west-1': '172.16.0.0/16' }, regions)).toThrow(/outside 10\.0\.0\.0\/8/);
  });
  it('refuses a block CreateVpc would refuse (larger than /16, smaller than /28), naming the region', () => {
    expect(() => validateCidrMap({ ...map, 'eu-west-1': '10.0.0.0/15' }, ['eu-west-1'])).toThrow(/the VPC of eu-west-1: CIDR 10\.0\.0\.0\/15 is larger than \/16/);
    expect(() => validateCidrMap({ ...map, 'eu-west-1': '10.1.0.0/29' }, ['eu-west-1'])).toThrow(/10\.1\.0\.0\/29 is smaller than \/28/);
    expect(() => validateCidrMap({ ...map, 'eu-west-1': '10.1.0.0/28' }, ['eu-west-1'])).not.toThrow();
  });
});

describe('peeringPairs', () => {
  it.each([1, 2, 3, 5])('gives N·(N−1)/2 distinct pairs for %i regions', (n) => {
    const rs = Array.from({ length: n }, (_, i) => `r-${i}`);
    const pairs = peeringPairs(rs);
    expect(pairs).toHaveLength((n * (n - 1)) / 2);
    expect(new Set(pairs.map((p) => p.join('|'))).size).toBe(pairs.length);
    for (const a of rs) for (const b of rs) if (a !== b) expect(pairs.some(([x, y]) => (x === a && y === b) || (x === b && y === a))).toBe(true);
  });
});
