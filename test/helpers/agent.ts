import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAgent, type Agent } from '../../agent/agent.js';
import type { AwsOverrides } from '../../agent/backend-factory.js';
import { CONFIG_DEFAULTS, loadConfig, pluginSocketPath, type Config } from '../../agent/config.js';
import { createLogger, silentLogger } from '../../lib/logger.js';
import { sleep } from '../../lib/sleep.js';
import { step } from './step.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** A driver name no other test (or developer) on this host uses. */
export function uniquePluginName(prefix = 'berth-test'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The plugin socket of an agent with this driver name in the default plugin directory. */
export function socketOf(pluginName: string): string {
  return pluginSocketPath({ ...CONFIG_DEFAULTS, BERTH_PLUGIN_NAME: pluginName });
}

/** Environment for an agent on the loop backend with its own socket name and state dir. */
export function agentEnv(pluginName: string, stateDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    BERTH_BACKEND: 'loop',
    BERTH_PLUGIN_NAME: pluginName,
    BERTH_STATE_DIR: stateDir,
    BERTH_HEALTH_ADDR: '127.0.0.1:0',
    BERTH_DEFAULT_SIZE: '64MiB',
    BERTH_SHUTDOWN_GRACE_SECONDS: '5',
    // Most tests check what the last Unmount does at once; test/unmount-grace.test.ts sets its own.
    BERTH_UNMOUNT_GRACE_SECONDS: '0',
    ...extra,
  };
}

/** The agent in this process (server + manager + real loop backend). */
export async function startInProcessAgent(
  pluginName: string,
  stateDir: string,
  extra: Record<string, string> = {},
  aws?: AwsOverrides,
): Promise<{ agent: Agent; config: Config }> {
  const config = loadConfig(agentEnv(pluginName, stateDir, extra));
  const logger = process.env.BERTH_TEST_LOGS ? createLogger('debug') : silentLogger;
  return step(`start the agent ${pluginName} (in this process)`, async () => ({ agent: await startAgent(config, logger, aws ? { aws } : {}), config }));
}

/**
 * The agent as a child process, for kill -9 tests and benchmarks: the TypeScript
 * sources through tsx, or with `compiled` the built dist/ that production runs
 * (true: this checkout's dist/agent/main.js; a path: that built main.js).
 * Logs go to <stateDir>/../agent-<name>.log. `node` is the runtime that runs it (the
 * release's bin/node for the benches; this process's node by default).
 */
export async function startChildAgent(
  pluginName: string,
  stateDir: string,
  extra: Record<string, string> = {},
  compiled: boolean | string = false,
  nodeArgs: string[] = [],
  node: string = process.execPath,
): Promise<ChildProcess> {
  const socket = pluginSocketPath({ ...CONFIG_DEFAULTS, BERTH_PLUGIN_NAME: pluginName, ...(extra.BERTH_PLUGIN_DIR ? { BERTH_PLUGIN_DIR: extra.BERTH_PLUGIN_DIR } : {}) });
  const log = openSync(join(stateDir, '..', `agent-${pluginName}.log`), 'a');
  const built = typeof compiled === 'string' ? compiled : join(repoRoot, 'dist/agent/main.js');
  const entry = compiled ? [built] : ['--import', 'tsx', join(repoRoot, 'agent/main.ts')];
  if (compiled && !existsSync(entry[0]!)) throw new Error('dist/ is missing: run npm run build first');
  const child = spawn(node, [...nodeArgs, ...entry], {
    cwd: repoRoot,
    env: { ...process.env, ...agentEnv(pluginName, stateDir, extra) },
    stdio: ['ignore', log, log],
  });
  return step(`start the agent ${pluginName} (a child process)`, async () => {
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`agent exited with ${child.exitCode} before its socket appeared`);
      if (existsSync(socket)) return child;
      await sleep(50);
    }
    child.kill('SIGKILL');
    throw new Error('agent socket did not appear within 10 s');
  });
}

export async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  return exited;
}
