import type { Runner } from '../lib/exec.js';
import type { AgentOptions } from './agent.js';

/**
 * Test-only crash points: `BERTH_TEST_CRASH_AT=<step>:<n>` makes the agent
 * SIGKILL itself at the n-th occurrence of a step since it started, as a power
 * cut or the OOM killer would. A step is a tool's name (losetup, blkid,
 * mkfs.ext4, e2fsck, mount, umount, chattr…: killed just after the tool
 * started, which keeps running as an orphan) or `state-write` (killed just
 * before the state file is written). Read here, in the agent, and passed to
 * the core as dependencies; production never sets it.
 */
export function crashPoints(spec: string | undefined, runner: Runner): Pick<AgentOptions, 'runner' | 'beforeStateWrite'> {
  if (!spec) return { runner };
  const m = /^([\w.-]+):(\d+)$/.exec(spec);
  if (!m) throw new Error(`BERTH_TEST_CRASH_AT must be <step>:<n>, got ${JSON.stringify(spec)}`);
  const step = m[1]!;
  const at = Number(m[2]);
  let seen = 0;
  const die = () => process.kill(process.pid, 'SIGKILL');
  return {
    runner: (file, args, options) => {
      const running = runner(file, args, options);
      if (file.split('/').pop() === step && ++seen === at) {
        // spawn() has exec'd the tool by the time it returns: dying now is a kill during the step.
        // Not later: a fast tool (chattr) would finish and let the agent run past the step.
        die();
      }
      return running;
    },
    beforeStateWrite: () => {
      if (step === 'state-write' && ++seen === at) die();
    },
  };
}
