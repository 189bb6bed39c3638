import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../../..');
const plugin = join(root, 'volume-plugin');

/** Each relative import of a .ts file, resolved to a path under the repository root. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)].map((m) => relative(root, resolve(join(file, '..'), m[1]!)).replace(/\.js$/, '.ts'));
}

const tsFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')).map((f) => join(dir, f));

describe('reconcile sits above the core (docs/design.md §2, §6)', () => {
  it('imports only the core types, lib and its own ports: no backend', () => {
    const offending = tsFiles(join(plugin, 'reconcile')).flatMap((f) =>
      importsOf(f)
        .filter((i) => !i.startsWith('lib/') && !i.startsWith('volume-plugin/reconcile/') && i !== 'volume-plugin/backends/backend.ts')
        .map((i) => `${relative(root, f)}: ${i}`),
    );
    expect(offending).toEqual([]);
  });

  it('the core and the backends never import reconcile (what they import of each other is the core\'s own check)', () => {
    const below = ['', 'backends', 'fs', 'devices'].flatMap((d) => tsFiles(join(plugin, d)));
    const offending = below.flatMap((f) =>
      importsOf(f)
        .filter((i) => i.startsWith('volume-plugin/reconcile/'))
        .map((i) => `${relative(root, f)}: ${i}`),
    );
    expect(offending).toEqual([]);
  });

  it('the check sees imports (the EBS backend, which fills reconcile\'s survey port, is found importing it)', () => {
    expect(importsOf(join(plugin, 'backends/ebs/ebs-backend.ts'))).toContain('volume-plugin/reconcile/ports.ts');
  });
});
