import { spawn } from 'node:child_process';
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
/** After SIGTERM at a deadline, the time a tool gets to exit before SIGKILL. */
export const KILL_GRACE_MS = 2_000;
/** Output beyond this is a tool gone wrong: it is killed rather than held in memory. */
export const MAX_OUTPUT_BYTES = 16 * 2 ** 20;

const withoutFinalNewline = (s: string) => (s.endsWith('\r\n') ? s.slice(0, -2) : s.endsWith('\n') ? s.slice(0, -1) : s);

/**
 * The runner on node:child_process directly rather than execa: a tool spawn
 * is on every Mount's path, and execa's layers (stream plumbing, option
 * normalisation, exit hooks) cost ~2 ms of the event loop per spawn and
 * 185 KB of the agent's bundle (docs/volumes.md "Tools run through node:child_process",
 * docs/operations.md "Where it stands").
 */
export const processRunner: Runner = (file, args, options = {}) => {
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ok = options.okExitCodes ?? [0];
  const command = `${file} ${args.join(' ')}`;
  const deadlinePassed = () => new BerthError('TIMEOUT', `${command} stopped: the caller's deadline passed`);
  if (options.signal?.aborted) return Promise.reject(deadlinePassed());
  return new Promise<RunResult>((resolve, reject) => {
    // The agent's environment, with messages in the C locale: they are parsed.
    const child = spawn(file, [...args], { env: { ...process.env, LC_ALL: 'C' }, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let stopped: 'timeout' | 'canceled' | 'output' | undefined;
    let spawnError: Error | undefined;
    let forceKill: NodeJS.Timeout | undefined;
    const stop = (why: NonNullable<typeof stopped>) => {
      if (stopped || child.exitCode !== null || child.signalCode !== null) return;
      stopped = why;
      child.kill('SIGTERM');
      forceKill = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    };
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_OUTPUT_BYTES) return stop('output');
      into.push(chunk);
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    if (options.input !== undefined) {
      // A tool that exits without reading its input closes the pipe: that is its answer, not ours to fail on.
      child.stdin!.on('error', () => {});
      child.stdin!.end(options.input);
    }
    const timer = setTimeout(() => stop('timeout'), timeout);
    const onAbort = () => stop('canceled');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error) => {
      spawnError = error;
    });
    let finished = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(forceKill);
      options.signal?.removeEventListener('abort', onAbort);
      const stdout = withoutFinalNewline(Buffer.concat(out).toString());
      const stderr = withoutFinalNewline(Buffer.concat(err).toString());
      if (stopped === 'canceled') return reject(deadlinePassed());
      if (stopped === 'timeout') return reject(new BerthError('TIMEOUT', `${command} did not finish within ${timeout} ms`));
      if (stopped === 'output') return reject(new BerthError('INTERNAL', `${command} wrote more than ${MAX_OUTPUT_BYTES} bytes of output; stopped`));
      if (spawnError) return reject(new BerthError('INTERNAL', `could not run ${file}: ${spawnError.message}`, { cause: spawnError }));
      if (code === null) return reject(new BerthError('INTERNAL', `${command} was killed by ${signal ?? 'a signal'}`));
      if (!ok.includes(code)) {
        const detail = (stderr || stdout).trim().split('\n').slice(-3).join(' | ');
        return reject(new BerthError('INTERNAL', `${command} exited ${code}${detail ? `: ${detail}` : ''}`));
      }
      resolve({ stdout, stderr, exitCode: code });
    };
    child.on('close', finish);
    // A killed tool's children may hold its output pipes open: past a deadline, its exit is the end.
    child.on('exit', (code, signal) => {
      if (!stopped) return;
      child.stdout!.destroy();
      child.stderr!.destroy();
      finish(code, signal);
    });
  });
};
