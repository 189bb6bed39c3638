import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Named steps for slow tests, so that a test that times out says where it was.
 * `await step('docker run', () => docker([...]))` records the step (nested
 * steps as `outer > inner`) while it runs; the system tests' setup file
 * (test/helpers/step-setup.ts) appends the steps still open, or the step that
 * failed, to a failed test's error. With `timeoutMs`, a step that does not
 * finish in time fails by itself, with its name.
 */
const current = new AsyncLocalStorage<string>();
const open = new Set<{ path: string }>();
let failedIn: string | undefined;

export async function step<T>(name: string, fn: () => Promise<T> | T, timeoutMs?: number): Promise<T> {
  const path = [current.getStore(), name].filter(Boolean).join(' > ');
  const entry = { path };
  open.add(entry);
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = current.run(path, async () => fn());
    if (timeoutMs === undefined) return await work;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`step "${path}" did not finish within ${timeoutMs} ms`)), timeoutMs);
    });
    return await Promise.race([work, late]);
  } catch (e) {
    failedIn ??= path; // the innermost step fails first
    throw e;
  } finally {
    clearTimeout(timer);
    open.delete(entry);
  }
}

/** Where the current test is: the steps running now, else the step that failed; undefined outside any step. */
export function whereInSteps(): string | undefined {
  const paths = [...open].map((e) => e.path);
  // the innermost steps: an outer step is open while its inner one runs
  const innermost = paths.filter((p) => !paths.some((q) => q.startsWith(`${p} > `)));
  if (innermost.length) return `still in step: ${innermost.join('; ')}`;
  if (failedIn) return `failed in step: ${failedIn}`;
  return undefined;
}

/** Forgets the previous test's steps (the setup file calls it before each test). */
export function resetSteps(): void {
  open.clear();
  failedIn = undefined;
}
