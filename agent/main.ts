import { processRunner } from '../lib/exec.js';
import { startAgent } from './agent.js';
import { ConfigError, loadConfig } from './config.js';
import { crashPoints } from './crash-points.js';
import { createLogger } from '../lib/logger.js';
import { checkInstall } from './preflight.js';

/**
 * `--check-config`: load the configuration the installed agent would run with
 * (BERTH_ENV_FILE, default /etc/berth/berth.env, under the BERTH_* variables)
 * and check its tools, print the verdict as JSON and exit: 0 ok, 2 not.
 * The installer runs it with the new build before it stops the running agent.
 */
async function checkConfig(): Promise<never> {
  const result = await checkInstall();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  for (const p of result.problems) process.stderr.write(`berth: ${p}\n`);
  process.exit(result.ok ? 0 : 2);
}

async function main(): Promise<void> {
  if (process.argv.includes('--check-config')) await checkConfig();
  let config;
  try {
    // Test-only, not a setting (agent/crash-points.ts).
    const { BERTH_TEST_CRASH_AT: _crashAt, ...env } = process.env;
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`berth: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.BERTH_LOG_LEVEL);
  // The SDK's instance-credentials provider reads its endpoint from this variable only.
  if (config.BERTH_IMDS_ENDPOINT) process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT ??= config.BERTH_IMDS_ENDPOINT;
  const agent = await startAgent(config, logger, crashPoints(process.env.BERTH_TEST_CRASH_AT, processRunner)).catch((err: unknown) => {
    logger.fatal({ err: (err as Error).message }, 'could not start');
    process.exit(1);
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    agent.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: (err as Error).message }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
