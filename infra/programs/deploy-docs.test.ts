import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = resolve(import.meta.dirname, '../..');
const docs = readFileSync(join(repo, 'docs/deploy.md'), 'utf8');

/** Where a staging script writes by default: its `out=${1:-$src/…}`, with $src the repository root. */
function stagedAt(script: string): string {
  const m = /^out=\$\{1:-\$src\/([^}]+)\}$/m.exec(readFileSync(join(repo, script), 'utf8'));
  if (!m) throw new Error(`${script} has no default output directory`);
  return join(repo, m[1]!);
}

const STAGED = { renewer: stagedAt('traefik/renewer/stage.sh'), operations: stagedAt('infra/lambdas/stage.sh') };

describe('docs/deploy.md', () => {
  it('gives every codePath relative to the program directory Pulumi resolves it against, pointing where the staging scripts write', () => {
    const found: string[] = [];
    // Config table rows: | program(s) | `berth:<key>` | `{ … "codePath": "<path>" … }` |
    for (const row of docs.split('\n').filter((l) => l.startsWith('|') && l.includes('"codePath"'))) {
      const [, programs, key, value] = row.split('|').map((c) => c.trim());
      const path = /"codePath":\s*"([^"]+)"/.exec(value!)?.[1];
      if (path === undefined) continue; // a placeholder (…), not a path
      const which = key!.includes('renewer') ? 'renewer' : 'operations';
      for (const program of programs!.split(',').map((p) => p.trim())) {
        found.push(program);
        expect(resolve(repo, 'infra/programs', program, path), `${program} ${key}`).toBe(STAGED[which]);
      }
    }
    // Example commands: pulumi config set --path berth:<key>.codePath <path>, run in infra/programs/<program>.
    for (const m of docs.matchAll(/berth:(renewer|operations)\.codePath (\S+)/g)) {
      found.push(m[1]!);
      expect(resolve(repo, 'infra/programs/regional', m[2]!), m[0]).toBe(STAGED[m[1] as 'renewer' | 'operations']);
    }
    expect(found.length).toBeGreaterThanOrEqual(3);
  });
});
