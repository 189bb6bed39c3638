/**
 * The node flags the agent runs with, wherever it runs: the systemd unit
 * (userdata/berth.service), the agent image (Dockerfile.agent), the local
 * installer's fallback without systemd (userdata/install-local.sh) and the
 * managed plugin (scripts/plugin-config.ts). Those files cannot import this;
 * test/node-flags.test.ts fails when one of them says something else.
 * Why these flags: docs/operations.md "Plugin hot path"; bench/plugin-hot-path.ts
 * measures the agent with them.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--lite-mode'];

/** Where the agent's bundle is installed (the unit, the image and the plugin start it from here). */
export const AGENT_MAIN = '/opt/berth/dist/agent/main.js';
