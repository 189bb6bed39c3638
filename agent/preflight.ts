import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { LOOP_TOOLS } from '../volume-plugin/backends/loop.js';
import { FILESYSTEM_TOOLS } from '../volume-plugin/fs/filesystem.js';
import { resolveBackendKind } from './backend-factory.js';
import { ConfigError, loadInstalledConfig, pluginSocketPath, type Config } from './config.js';

/**
 * What must hold before an agent is started with a configuration: it parses,
 * and the programs it will run are installed. The installer runs this with
 * the new build before it stops the running agent (`main.js --check-config`),
 * and `berth doctor` / `berth config check` report the same findings.
 */

/** Programs the agent runs on this host: required ones, and the xfs ones only xfs volumes need. */
export function toolsFor(backend: 'loop' | 'ebs', defaultFs: Config['BERTH_DEFAULT_FS']): { required: string[]; optional: string[] } {
  const required = [...FILESYSTEM_TOOLS.all, ...FILESYSTEM_TOOLS.ext4, ...(backend === 'loop' ? LOOP_TOOLS : [])];
  if (defaultFs === 'xfs') return { required: [...required, ...FILESYSTEM_TOOLS.xfs], optional: [] };
  return { required, optional: [...FILESYSTEM_TOOLS.xfs] };
}

/** systemd gives services the sbin directories, which a user's PATH often lacks. */
const SERVICE_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The tools not found as executables on PATH or the service PATH (no shell involved). */
export function missingTools(tools: readonly string[], path = process.env.PATH ?? ''): string[] {
  const dirs = [...new Set([...path.split(delimiter).filter(Boolean), ...SERVICE_PATH])];
  const found = (tool: string) =>
    dirs.some((d) => {
      try {
        accessSync(join(d, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  return tools.filter((t) => !found(t));
}

export interface InstallCheck {
  ok: boolean;
  /** One sentence per problem; empty when ok. */
  problems: string[];
  warnings: string[];
  backend?: 'loop' | 'ebs';
  pluginName?: string;
  socket?: string;
  stateDir?: string;
  healthAddr?: string;
}

/** The configuration the installed agent would run with (env file + BERTH_* variables), and its tools. */
export async function checkInstall(env: NodeJS.ProcessEnv = process.env): Promise<InstallCheck> {
  let config: Config;
  try {
    config = loadInstalledConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, problems: [err.message], warnings: [] };
    throw err;
  }
  const backend = await resolveBackendKind(config);
  const tools = toolsFor(backend, config.BERTH_DEFAULT_FS);
  const missing = missingTools(tools.required);
  const optional = missingTools(tools.optional);
  return {
    ok: missing.length === 0,
    problems: missing.length ? [`missing ${missing.join(', ')} (Debian/Ubuntu: apt-get install util-linux e2fsprogs xfsprogs)`] : [],
    warnings: optional.length ? [`missing ${optional.join(', ')}: xfs volumes cannot be made or grown`] : [],
    backend,
    pluginName: config.BERTH_PLUGIN_NAME,
    socket: pluginSocketPath(config),
    stateDir: config.BERTH_STATE_DIR,
    healthAddr: config.BERTH_HEALTH_ADDR,
  };
}
