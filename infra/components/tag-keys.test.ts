import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { tagKeys } from '../../lib/node-contract.js';

/**
 * Infra spells no tag key itself: every `berth:<key>` tag, IAM condition key and DLM target comes
 * from lib/node-contract.ts (`tagKeys()`), the one source berth, ECS and infra share. Read from the
 * sources' string and template literals (comments may name keys); Pulumi type tokens
 * (`berth:unit:Node`) have a second colon and are not keys.
 */
const infraRoot = join(import.meta.dirname, '..');
const KEY = /(?:^|[^\w.:-])(berth:[a-z][a-z0-9-]*)(?![\w:-])/g;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'test' ? [] : sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });
}

export function spelledTagKeys(file: string, text = readFileSync(file, 'utf8')): string[] {
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isStringLiteralLike(node) || ts.isTemplateHead(node) || ts.isTemplateMiddle(node) || ts.isTemplateTail(node)) {
      for (const m of node.text.matchAll(KEY)) found.push(m[1]!);
    }
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true));
  return found;
}

describe('infra takes tag keys from the node contract', () => {
  it('no infra source spells a berth: tag key', () => {
    const files = sources(infraRoot);
    expect(files.length).toBeGreaterThan(30);
    const spelled = files.flatMap((f) => spelledTagKeys(f).map((k) => `${relative(infraRoot, f)}: ${k}`));
    expect(spelled).toEqual([]);
  });
  it('the check finds a key in a string, a template or a condition key, and passes type tokens and config by', () => {
    const sample = [
      "const a = { 'berth:cluster': x };",
      'const b = `aws:ResourceTag/berth:role`;',
      'const c = `${p}/berth:managed-by/${q}`;',
      "super('berth:unit:Node', name);",
      "new pulumi.Config('berth');",
      '// berth:host in a comment',
    ].join('\n');
    expect(spelledTagKeys('sample.ts', sample)).toEqual(['berth:cluster', 'berth:role', 'berth:managed-by']);
    expect(Object.values(tagKeys()).every((k) => k.startsWith('berth:'))).toBe(true);
  });
});
