import { execa } from 'execa';
import { BerthError } from './errors.js';

export interface RunOptions {
  /** Hard limit; the process is killed after it. Every call has one. */
  timeoutMs?: number;
  /** Exit codes that are answers rather than failures (blkid exits 2 for "nothing found"). */
  okExitCodes?: readonly number[];
  input?: string;
  /** The caller's deadline: the process is killed when it aborts (then TIMEOUT). */
  signal?: AbortSignal;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/**
 * Runs a program with an argument array (never a shell string). Injected
 * everywhere a module shells out, so tests can record or fail calls.
 */
export type Runner = (file: string, args: readonly string[], options?: RunOptions) => Promise<RunResult>;

export const DEFAULT_TIMEOUT_MS = 60_000;

export const execaRunner: Runner = async (file, args, options = {}) => {
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ok = options.okExitCodes ?? [0];
  const result = await execa(file, [...args], {
    reject: false,
    timeout,
    input: options.input,
    stdin: options.input === undefined ? 'ignore' : undefined,
    env: { LC_ALL: 'C' },
    extendEnv: true,
    stripFinalNewline: true,
    ...(options.signal ? { cancelSignal: options.signal, forceKillAfterDelay: 2_000 } : {}),
  });
  if (result.isCanceled) {
    throw new BerthError('TIMEOUT', `${file} ${args.join(' ')} stopped: the caller's deadline passed`);
  }
  if (result.timedOut) {
    throw new BerthError('TIMEOUT', `${file} ${args.join(' ')} did not finish within ${timeout} ms`);
  }
  if (result.failed && result.exitCode === undefined) {
    throw new BerthError('INTERNAL', `could not run ${file}: ${result.shortMessage}`, { cause: result });
  }
  const exitCode = result.exitCode ?? -1;
  if (!ok.includes(exitCode)) {
    const detail = (result.stderr || result.stdout || '').trim().split('\n').slice(-3).join(' | ');
    throw new BerthError('INTERNAL', `${file} ${args.join(' ')} exited ${exitCode}${detail ? `: ${detail}` : ''}`);
  }
  return { stdout: result.stdout, stderr: result.stderr, exitCode };
};
