import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AGENT_MAIN, AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { AGENT_ENTRYPOINT } from '../scripts/plugin-config.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string) => readFileSync(join(repoRoot, path), 'utf8');

/** The words between `node` and the agent's main.js on the one line of `text` that starts it, or why there is none. */
function flagsBefore(text: string, line: RegExp): string[] | string {
  const found = text.split('\n').filter((l) => line.test(l));
  if (found.length !== 1) return `${found.length} lines start the agent`;
  const m = /\bnode((?:\s+--[\w-]+(?:=\S+)?)*)\s+\S*main\.js\b/.exec(found[0]!);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : `no "node <flags> …main.js" in: ${found[0]}`;
}

// agent/node-flags.ts is the one source; the files that cannot import it are checked against it here.
describe('the agent runs with the node flags of agent/node-flags.ts everywhere', () => {
  it('the systemd unit', () => {
    const unit = read('userdata/berth.service');
    expect(flagsBefore(unit, /^ExecStart=/)).toEqual(AGENT_NODE_FLAGS);
    expect(unit).toContain(`ExecStart=/opt/berth/bin/node ${AGENT_NODE_FLAGS.join(' ')} ${AGENT_MAIN}\n`);
  });

  it('the agent image', () => {
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(read('Dockerfile.agent'))?.[1];
    expect(entrypoint && JSON.parse(entrypoint)).toEqual(['node', ...AGENT_NODE_FLAGS, AGENT_MAIN]);
  });

  it('the local installer: its agent without systemd and its config check', () => {
    const script = read('userdata/install-local.sh');
    const arrays = [...script.matchAll(/^node_flags=\((.*)\)$/gm)];
    expect(arrays).toHaveLength(1);
    expect(arrays[0]![1]!.split(/\s+/)).toEqual(AGENT_NODE_FLAGS);
    // Both places that start main.js pass the array, not a copy of it.
    expect(script).toMatch(/check_config\(\) \{ clean_env "\$2" "\$1\/bin\/node" "\$\{node_flags\[@\]\}" "\$1\/dist\/agent\/main\.js" --check-config; \}/);
    expect(script).toMatch(/exec "\$3" "\$\{@:4\}" "\$2"' _ "\$envfile" "\$prefix\/dist\/agent\/main\.js" "\$rt" "\$\{node_flags\[@\]\}"/);
  });

  it('the managed plugin', () => {
    expect(AGENT_ENTRYPOINT).toEqual(['node', ...AGENT_NODE_FLAGS, AGENT_MAIN]);
  });

  it('no other file starts node with them', () => {
    // A copy the checks above do not know of would drift unseen.
    const known = new Set(['userdata/berth.service', 'Dockerfile.agent', 'userdata/install-local.sh', 'agent/node-flags.ts']);
    const names = AGENT_NODE_FLAGS.map((f) => f.replace(/=.*/, '').replace(/[-]/g, '\\$&'));
    const startsNode = new RegExp(`\\bnode\\b.*(${names.join('|')})`);
    const tracked = execFileSync('git', ['ls-files'], { cwd: repoRoot, encoding: 'utf8' }).split('\n').filter((f) => f && !f.endsWith('.md'));
    const copies = tracked.filter((f) => !known.has(f) && existsSync(join(repoRoot, f)) && startsNode.test(readFileSync(join(repoRoot, f), 'utf8')));
    expect(copies).toEqual([]);
  });
});
