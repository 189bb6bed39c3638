/**
 * The node flags the agent runs with, wherever it runs: the systemd unit
 * (userdata/berth.service), the agent image (Dockerfile.agent), the local
 * installer's fallback without systemd (userdata/install-local.sh) and the
 * managed plugin (scripts/plugin-config.ts). Those files cannot import this;
 * test/node-flags.test.ts fails when one of them says something else.
 * Why these flags: docs/operations.md "Plugin hot path"; bench/plugin-hot-path.ts
 * measures the agent with them.
 */
export const AGENT_NODE_FLAGS: readonly string[] = [
  // A small young generation: a mostly idle daemon need not hold 16 MB of it.
  '--max-semi-space-size=1',
  // An optimizing compiler stays on: interpreted (--lite-mode), a plugin request cost ~3x the
  // CPU (about 330-390 us against 115 on Node.js 20). On Node.js 24 (the release's runtime,
  // docs/deploy.md) it is Maglev, not TurboFan: TurboFan's own machine code, paged in from the
  // node binary once it compiles, cost ~5 MB more (docs/operations.md, "On the release's Node.js 24").
  // (On Node.js 20, where Maglev is off, this leaves the interpreter: CI only, no host runs it.)
  '--max-opt=2',
  // The bootstrap compiled at start instead of node's startup snapshot: ~4.5 MB less resident
  // after a run on Node.js 24, ~0.15 s more to start (same section).
  '--no-node-snapshot',
  // These keep what the compiler costs in memory small (bench/plugin-hot-path.ts; each one
  // measured in docs/operations.md):
  '--single-threaded', // compile and collect on the main thread: no helper threads' heaps
  '--no-sparkplug', // no baseline code for every warm function, only Maglev's for hot ones
  '--no-short-builtin-calls', // no private copy of V8's builtins (~3 MB)
  '--optimize-for-size',
  '--max-lazy',
  // (--interrupt-budget-factor-for-feedback-allocation and --interrupt-budget-for-feedback-allocation,
  // feedback only for functions that run a lot, are gone: V8 12 (Node.js 22) and 13 (Node.js 24, the
  // release's runtime, docs/deploy.md) refuse them and node exits "bad option". Their successor,
  // --invocation-count-for-feedback-allocation, is not in Node.js 20's V8, which CI still runs.)
  // Local time from the C library, not ICU's time zone tables: any Date formatting
  // (toISOString too) otherwise pages in ~0.8 MB of ICU for times the agent writes in UTC.
  '--no-icu-timezone-data',
];

/** Where the agent's bundle is installed (the unit, the image and the plugin start it from here). */
export const AGENT_MAIN = '/opt/berth/dist/agent/main.js';
