#!/usr/bin/env node
/**
 * Builds dist/: the agent, the CLI and the certificate renewer's Lambda handler,
 * each bundled with its dependencies into one ES module (code the agent and the
 * CLI share in dist/chunks/, the AWS SDK clients in chunks loaded only when a
 * feature needs them; the handler's own chunks under dist/traefik/renewer/).
 * A bundle needs no node_modules at run time and holds ~5 MB less in memory
 * than the same code loaded module by module (bench/plugin-hot-path.ts).
 * Type checking is `npm run typecheck`; this only transpiles.
 *
 *   node scripts/build.mjs [outdir]      (default dist)
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { resolve } from 'node:path';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '..');
const outdir = resolve(root, process.argv[2] ?? 'dist');

rmSync(outdir, { recursive: true, force: true });
const common = {
  absWorkingDir: root,
  outdir,
  outbase: '.',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  // Packages' ES module builds first (the AWS SDK ships both): named exports of a
  // CommonJS build are not reliably visible through a bundled dynamic import().
  mainFields: ['module', 'main'],
  // Whitespace and syntax only: identifiers stay, so stack traces in logs stay readable.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'eof',
  // Some bundled CommonJS packages call require() for Node built-ins; an ES module has none.
  banner: { js: "import { createRequire as __berthCreateRequire } from 'node:module'; const require = __berthCreateRequire(import.meta.url);" },
  logLevel: 'warning',
};
// Two packages the agent's bundle takes in a smaller form (scripts/bundle/: each file says why;
// together ~0.4 MB of the agent's resident memory, docs/operations.md "Where it stands").
const substitutes = new Map([
  ['prom-client', 'scripts/bundle/prom-client.cjs'],
  ['@opentelemetry/api', 'scripts/bundle/opentelemetry-api.cjs'],
]);
// esbuild cannot see which names a CommonJS module exports: a name the agent's code imports
// that its substitute lacks would build, and fail only when the agent runs that code.
const requireHere = createRequire(import.meta.url);
for (const [pkg, file] of substitutes) {
  const has = new Set(Object.keys(requireHere(resolve(root, file))));
  // Not git: the image build and the pipeline build from a copy without .git.
  const sources = ['agent', 'volume-plugin', 'lib', 'traefik'].filter((d) => existsSync(resolve(root, d)))
    .flatMap((d) => readdirSync(resolve(root, d), { recursive: true }).map((f) => `${d}/${f}`))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.includes('node_modules'));
  for (const f of sources) {
    const text = readFileSync(resolve(root, f), 'utf8');
    for (const m of text.matchAll(new RegExp(`import\\s*\\{([^}]*)\\}\\s*from\\s*'${pkg}'`, 'g'))) {
      const missing = m[1].split(',').map((n) => n.trim()).filter((n) => n && !n.startsWith('type ')).map((n) => n.split(/\s+as\s+/)[0]).filter((n) => !has.has(n));
      if (missing.length) throw new Error(`${f} imports ${missing.join(', ')} from ${pkg}, which ${file} does not export: add it there`);
    }
  }
}
const agentSubstitutes = {
  name: 'agent-substitutes',
  setup(b) {
    // Only the bare names: the substitutes' own `prom-client/lib/…` imports resolve as usual.
    const bareNames = new RegExp(`^(${[...substitutes.keys()].map((n) => n.replace(/[/.]/g, '\\$&')).join('|')})$`);
    b.onResolve({ filter: bareNames }, (args) => ({ path: resolve(root, substitutes.get(args.path)) }));
  },
};
// Node's built-in modules as CommonJS requires, not ES imports. An ES import of a built-in
// reads every export to build its namespace, and that runs the lazy getters node puts on
// them: on Node.js 24, `import … from 'node:http'` loads undici (for http.WebSocket), and with
// it crypto, tls, http2, zlib and worker_threads; `node:fs`, `node:process`, `node:util` and
// `node:buffer` load more of the same kind. A require() leaves the getters alone. Code that
// uses one of those exports still loads it on first use. Measured in docs/operations.md
// ("On the release's Node.js 24").
const builtinsAsRequire = {
  name: 'builtins-as-require',
  setup(b) {
    const ids = new Set(builtinModules);
    const builtin = (path) => ids.has(path.replace(/^node:/, ''));
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) =>
      // Only ES imports: the require() of the stand-in below stays external, as usual.
      (args.kind === 'import-statement' || args.kind === 'dynamic-import') && builtin(args.path)
        ? { path: args.path.replace(/^node:/, ''), namespace: 'builtin-as-require' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin-as-require' }, (args) => ({ contents: `module.exports = require('node:${args.path}');`, loader: 'js' }));
  },
};
// The agent and the CLI share chunks. The Lambda handler is built on its own: in one
// build with them, its `import { z } from 'zod'` kept all of zod (64 locales, JSON
// schema) in the chunk the agent loads at start, 500 KB of source the agent
// held in memory for nothing (docs/operations.md, "Plugin hot path").
await build({
  ...common,
  entryPoints: ['agent/main.ts', 'agent/cli.ts'],
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  plugins: [agentSubstitutes, builtinsAsRequire],
});
await build({ ...common, entryPoints: ['traefik/renewer/handler.ts'], splitting: true, chunkNames: 'traefik/renewer/chunks/[name]-[hash]' });
console.log(`built ${outdir}`);
