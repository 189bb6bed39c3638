import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';

/**
 * AWS's published API models, as botocore ships them
 * (`botocore/data/<service>/<api-version>/service-2.json[.gz]`), and a checker of values
 * against their shapes: string length, pattern and enum, number range, list size, required and
 * unknown structure members, recursively. Test support only.
 *
 * Which botocore: the newest on the machine. Every `python3` on PATH is asked where its botocore
 * is, pyenv's versions are looked through, and Debian's `python3-botocore` is the fallback (1.29,
 * December 2022: no nodejs20.x, no newer regions). None at all is an error, not a skip: the
 * conformance test is how `pulumi up` meets AWS's rules before AWS does.
 */

interface Shape {
  type: string;
  min?: number;
  max?: number;
  pattern?: string;
  enum?: string[];
  required?: string[];
  member?: { shape: string };
  members?: Record<string, { shape: string }>;
  key?: { shape: string };
  value?: { shape: string };
}

export interface ServiceModel {
  readonly service: string;
  readonly shapes: Readonly<Record<string, Shape>>;
  readonly operations: Readonly<Record<string, { input?: { shape: string } }>>;
}

/** One botocore installation: its package directory, version and the models under `data/`. */
export interface Botocore {
  readonly packageDir: string;
  readonly version: string;
  readonly dataDir: string;
}

const run = (cmd: string, args: string[]): string => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 20_000 });
  } catch {
    return '';
  }
};

/** Directories that may hold a botocore package: each python3 on PATH's, pyenv's, Debian's. */
export function botocoreCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const found = new Set<string>();
  const pythons = new Set<string>();
  for (const dir of (env['PATH'] ?? '').split(delimiter).filter(Boolean)) {
    const exe = join(dir, 'python3');
    if (existsSync(exe)) pythons.add(exe);
  }
  for (const exe of pythons) {
    // A pyenv shim asks pyenv which version is selected; either way, the answer is that interpreter's botocore.
    const out = run(exe, ['-c', 'import os, botocore; print(os.path.dirname(botocore.__file__))']).trim();
    if (out) found.add(out);
  }
  const pyenvRoot = env['PYENV_ROOT'] ?? join(env['HOME'] ?? '/root', '.pyenv');
  const versions = join(pyenvRoot, 'versions');
  if (existsSync(versions)) {
    for (const v of readdirSync(versions)) {
      const lib = join(versions, v, 'lib');
      if (!existsSync(lib)) continue;
      for (const py of readdirSync(lib).filter((d) => d.startsWith('python'))) found.add(join(lib, py, 'site-packages', 'botocore'));
    }
  }
  const dpkg = run('dpkg', ['-L', 'python3-botocore']).split('\n').find((f) => f.endsWith('/botocore/__init__.py'));
  if (dpkg) found.add(dirname(dpkg));
  found.add('/usr/lib/python3/dist-packages/botocore');
  return [...found];
}

/** A botocore package's version (`__version__` in its `__init__.py`), or undefined when `dir` holds none with models. */
export function readBotocore(dir: string): Botocore | undefined {
  const init = join(dir, '__init__.py');
  const dataDir = join(dir, 'data');
  if (!existsSync(init) || !existsSync(dataDir)) return undefined;
  const version = /^__version__\s*=\s*['"]([\d.]+)['"]/m.exec(readFileSync(init, 'utf8'))?.[1];
  return version ? { packageDir: dir, version, dataDir } : undefined;
}

const compareVersions = (a: string, b: string) => {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
};

/** The newest botocore among `candidates`; throws, naming where it looked, when there is none. */
export function newestBotocore(candidates: readonly string[] = botocoreCandidates()): Botocore {
  const found = candidates.map(readBotocore).filter((b): b is Botocore => b !== undefined);
  const newest = found.sort((a, b) => compareVersions(b.version, a.version))[0];
  if (!newest) {
    throw new Error(`no botocore API models on this machine (looked in: ${candidates.join(', ')}); install botocore (pip install botocore, or apt-get install python3-botocore as the fallback)`);
  }
  return newest;
}

const cache = new Map<string, ServiceModel>();

/** The newest API version of a service's model. */
export function loadService(dataDir: string, service: string): ServiceModel {
  const hit = cache.get(`${dataDir}|${service}`);
  if (hit) return hit;
  const dir = join(dataDir, service);
  if (!existsSync(dir)) throw new Error(`botocore has no model for service "${service}" under ${dataDir}`);
  const version = readdirSync(dir).filter((v) => /^\d{4}-\d{2}-\d{2}$/.test(v)).sort().at(-1);
  if (!version) throw new Error(`botocore's ${service} has no API version directory`);
  const plain = join(dir, version, 'service-2.json');
  const text = existsSync(plain) ? readFileSync(plain, 'utf8') : gunzipSync(readFileSync(`${plain}.gz`)).toString('utf8');
  const json = JSON.parse(text) as { shapes: Record<string, Shape>; operations: Record<string, { input?: { shape: string } }> };
  const model = { service, shapes: json.shapes, operations: json.operations };
  cache.set(`${dataDir}|${service}`, model);
  return model;
}

/**
 * A Java regular expression (what AWS validates with) as a JavaScript one, matched against the
 * whole value: AWS's validators require the entire value to match (`Matcher.matches()`), which is
 * why `every 24h, keep 14` fails DLM's `[0-9A-Za-z _-]+`.
 */
export function javaPattern(pattern: string): RegExp {
  const js = pattern
    .replace(/\\p\{all\}/g, '\\s\\S')
    .replace(/\\p\{Alnum\}/g, 'A-Za-z0-9')
    .replace(/\\p\{Punct\}/g, '!-\\/:-@\\[-`{-~');
  try {
    return new RegExp(`^(?:${js})$`, 'u');
  } catch {
    return new RegExp(`^(?:${js})$`);
  }
}

/** Values another resource's outputs gave (mock ids and ARNs): AWS made them, nothing to check. */
export type Skip = (value: unknown) => boolean;

/** Problems of `value` against `shapeName`, each as `<path>: <what is wrong>`. */
export function checkShape(model: ServiceModel, shapeName: string, value: unknown, path: string, skip: Skip = () => false, newerEnums: Readonly<Record<string, readonly string[]>> = {}): string[] {
  const shape = model.shapes[shapeName];
  if (!shape) throw new Error(`${model.service} has no shape ${shapeName}`);
  if (value === undefined || value === null || skip(value)) return [];
  const at = `${path} (${model.service} ${shapeName})`;
  switch (shape.type) {
    case 'string': {
      const s = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
      if (s === undefined) return [`${at}: expected a string, got ${JSON.stringify(value)}`];
      const problems: string[] = [];
      if (shape.enum && !shape.enum.includes(s) && !newerEnums[`${model.service} ${shapeName}`]?.includes(s)) problems.push(`${at}: "${s}" is not one of ${shape.enum.join(', ')}`);
      if (shape.min !== undefined && s.length < shape.min) problems.push(`${at}: "${s}" is shorter than ${shape.min}`);
      if (shape.max !== undefined && s.length > shape.max) problems.push(`${at}: "${s}" is ${s.length} characters, over ${shape.max}`);
      if (shape.pattern && !javaPattern(shape.pattern).test(s)) problems.push(`${at}: "${s}" does not match ${shape.pattern}`);
      return problems;
    }
    case 'integer':
    case 'long':
    case 'float':
    case 'double': {
      const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
      if (typeof n !== 'number' || Number.isNaN(n)) return [`${at}: expected a number, got ${JSON.stringify(value)}`];
      const problems: string[] = [];
      if (shape.min !== undefined && n < shape.min) problems.push(`${at}: ${n} is below ${shape.min}`);
      if (shape.max !== undefined && n > shape.max) problems.push(`${at}: ${n} is above ${shape.max}`);
      return problems;
    }
    case 'boolean':
      return typeof value === 'boolean' || value === 'true' || value === 'false' ? [] : [`${at}: expected a boolean, got ${JSON.stringify(value)}`];
    case 'list': {
      const member = model.shapes[shape.member!.shape]!;
      // Pulumi gives tags as a map; the API takes a list of {Key, Value}.
      const list = Array.isArray(value) ? value
        : typeof value === 'object' && member.type === 'structure' && member.members?.['Key'] && member.members['Value']
          ? Object.entries(value as Record<string, unknown>).map(([Key, Value]) => ({ Key, Value }))
          : [value];
      const problems: string[] = [];
      if (shape.min !== undefined && list.length < shape.min) problems.push(`${at}: ${list.length} items, fewer than ${shape.min}`);
      if (shape.max !== undefined && list.length > shape.max) problems.push(`${at}: ${list.length} items, more than ${shape.max}`);
      list.forEach((item, i) => problems.push(...checkShape(model, shape.member!.shape, item, `${path}[${i}]`, skip, newerEnums)));
      return problems;
    }
    case 'map': {
      if (typeof value !== 'object') return [`${at}: expected a map, got ${JSON.stringify(value)}`];
      const entries = Object.entries(value as Record<string, unknown>);
      const problems: string[] = [];
      if (shape.max !== undefined && entries.length > shape.max) problems.push(`${at}: ${entries.length} entries, more than ${shape.max}`);
      for (const [k, v] of entries) {
        problems.push(...checkShape(model, shape.key!.shape, k, `${path}.<key ${k}>`, skip, newerEnums), ...checkShape(model, shape.value!.shape, v, `${path}.${k}`, skip, newerEnums));
      }
      return problems;
    }
    case 'structure': {
      if (typeof value !== 'object' || Array.isArray(value)) {
        // A one-member-per-field structure given as a list of one (Pulumi's nested blocks).
        if (Array.isArray(value) && value.length === 1) return checkShape(model, shapeName, value[0], path, skip, newerEnums);
        return [`${at}: expected a structure, got ${JSON.stringify(value)}`];
      }
      const members = shape.members ?? {};
      const byLower = new Map(Object.keys(members).map((m) => [m.toLowerCase(), m]));
      const problems: string[] = [];
      const given = new Set<string>();
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (v === undefined) continue;
        const member = byLower.get(k.toLowerCase());
        if (!member) {
          problems.push(`${at}: unknown member "${k}" (the API takes ${Object.keys(members).join(', ') || 'no members'})`);
          continue;
        }
        given.add(member);
        problems.push(...checkShape(model, members[member]!.shape, v, `${path}.${member}`, skip, newerEnums));
      }
      for (const r of shape.required ?? []) if (!given.has(r)) problems.push(`${at}: required member "${r}" is missing`);
      return problems;
    }
    default:
      return [];
  }
}

/** The input shape of an operation, e.g. `CreateRole` → `CreateRoleRequest`. */
export function inputShape(model: ServiceModel, operation: string): string {
  const op = model.operations[operation];
  if (!op?.input) throw new Error(`${model.service} has no operation ${operation} with an input`);
  return op.input.shape;
}
