import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EBS_OPTIONS, validateEbsOptions } from '../../volume-plugin/backends/ebs/ebs-options.js';
import { LOOP_OPTIONS, loopOptions } from '../../volume-plugin/backends/loop.js';
import { conflictingOptions, CORE_ONLY, parseGivenOptions, resolveOptions } from '../../volume-plugin/options.js';
import { parseState } from '../../volume-plugin/state-store.js';

/** Option rules: the core's, and each backend's own keys (docs/design.md §5). Pure functions: no root, no devices. */
const GiB = 2 ** 30;
const defaults = { sizeBytes: 10 * GiB, fs: 'ext4' as const };

describe('core options', () => {
  it('holds only what every backend shares', () => {
    expect(() => parseGivenOptions({ iops: '3000' }, CORE_ONLY)).toThrow(/unknown option\(s\) iops \(known options: size, fs, mountOptions, onRemove\)/);
    expect(resolveOptions(parseGivenOptions({ size: '1GiB', onRemove: 'delete' }), defaults)).toEqual({ sizeBytes: GiB, fs: 'ext4', onRemove: 'delete' });
  });

  const pluginDir = join(import.meta.dirname, '../../volume-plugin');
  const source = (f: string) => readFileSync(join(pluginDir, f), 'utf8');
  const imports = (f: string) => [...source(f).matchAll(/from '([^']+)'|import\('([^']+)'\)/g)].map((m) => (m[1] ?? m[2])!);
  /** The core: every module of volume-plugin/ itself, the Backend interface and the deferred wrapper. */
  const core = [...readdirSync(pluginDir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')), 'backends/backend.ts', 'backends/deferred.ts'];

  it("knows no backend's options: the core modules import nothing from a backend, and a backend's keys are typed by the backend", () => {
    expect(core.length).toBeGreaterThan(10);
    expect(core.flatMap((f) => imports(f).filter((i) => i.includes('backends/ebs') || i.includes('backends/loop') || i.includes('/ebs/')).map((i) => `${f}: ${i}`))).toEqual([]);
  });

  it('names no backend: no core module spells a backend kind', () => {
    expect(core.filter((f) => /'(loop|ebs)'/.test(source(f)))).toEqual([]);
  });

  it("the loop backend imports nothing of the EBS backend's", () => {
    expect(imports('backends/loop.ts').filter((i) => i.includes('ebs'))).toEqual([]);
  });
});

describe("the loop backend's options", () => {
  it("refuses EBS's keys as needing the ebs backend (the agent passes them), and other keys as unknown", () => {
    expect(() => parseGivenOptions({ type: 'gp3', iops: '3000' }, loopOptions([EBS_OPTIONS]))).toThrow(/option\(s\) type, iops need the ebs backend; this agent runs the loop backend/);
    expect(() => parseGivenOptions({ color: 'red' }, LOOP_OPTIONS)).toThrow(/unknown option\(s\) color \(known options: size, fs, mountOptions, onRemove\)/);
    expect(() => parseGivenOptions({ __proto__: 'x', size: '1GiB' } as never, LOOP_OPTIONS)).not.toThrow(); // a literal __proto__ sets the prototype: no key
    expect(() => parseGivenOptions(JSON.parse('{"__proto__":"x"}'), LOOP_OPTIONS)).toThrow(/unknown option\(s\) __proto__/);
  });
});

describe("the ebs backend's options", () => {
  it('parses its own keys into typed values beside the core ones', () => {
    const given = parseGivenOptions({ size: '100GiB', type: 'io2', iops: '4000', encrypted: 'false' }, EBS_OPTIONS);
    expect(given).toEqual({ size: 100 * GiB, type: 'io2', iops: 4000, encrypted: false });
    expect(resolveOptions(given, defaults, EBS_OPTIONS)).toEqual({ sizeBytes: 100 * GiB, fs: 'ext4', onRemove: 'retain', type: 'io2', iops: 4000, encrypted: false });
  });

  it('names every problem, its own keys included, and lists its keys as known', () => {
    expect(() => parseGivenOptions({ type: 'gp9', iops: '-1', color: 'x' }, EBS_OPTIONS)).toThrow(
      /unknown option\(s\) color; type: .*; iops: iops must be a positive whole number \(known options: size, fs, mountOptions, onRemove, type, iops, throughput, encrypted, kmsKeyId, snapshotId\)/,
    );
  });

  it('checks limits per volume type once resolved', () => {
    const resolved = (o: Record<string, string>) => resolveOptions(parseGivenOptions(o, EBS_OPTIONS), defaults, EBS_OPTIONS);
    expect(() => validateEbsOptions('v', resolved({ type: 'io2' }))).toThrow(/io2 needs -o iops=<100–256000>/);
    expect(() => validateEbsOptions('v', resolved({ size: '1500MiB' }))).toThrow(/not a whole number of GiB/);
    expect(() => validateEbsOptions('v', resolved({ size: '100GiB', type: 'gp3', iops: '6000', throughput: '250' }))).not.toThrow();
  });

  it("compares a later Create's own keys with the stored ones", () => {
    const stored = resolveOptions(parseGivenOptions({ size: '8GiB', iops: '4000' }, EBS_OPTIONS), defaults, EBS_OPTIONS);
    expect(conflictingOptions(parseGivenOptions({ iops: '4000' }, EBS_OPTIONS), stored)).toEqual([]);
    expect(conflictingOptions(parseGivenOptions({ size: '9GiB', iops: '5000' }, EBS_OPTIONS), stored)).toEqual(['size (asked 9GiB, volume has 8GiB)', 'iops (asked 5000, volume has 4000)']);
  });
});

describe('state file records hold the running backend\'s options', () => {
  const entry = (options: Record<string, unknown>) => ({
    version: 1,
    volumes: { v: { record: { name: 'v', id: 'i', options: { sizeBytes: GiB, fs: 'ext4', onRemove: 'retain', ...options }, createdAt: '', status: {} }, mounts: {}, mounted: false } },
  });
  it("checks the backend's stored values and refuses bad ones (the file is then kept aside and rebuilt)", () => {
    expect(parseState(entry({ type: 'gp3', iops: 3000 }), EBS_OPTIONS).volumes.v?.record.options).toMatchObject({ type: 'gp3', iops: 3000 });
    expect(() => parseState(entry({ iops: '3000' }), EBS_OPTIONS)).toThrow(/iops/);
    expect(() => parseState(entry({ sizeBytes: -1 }), LOOP_OPTIONS)).toThrow(/sizeBytes/);
  });
});
