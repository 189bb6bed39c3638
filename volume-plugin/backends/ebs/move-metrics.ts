import { Counter, Gauge, type Registry } from 'prom-client';
import { MOVE_STEPS, type MoveMetrics } from './zone-move.js';

/**
 * Zone-move progress in the agent's registry (issue 22). The names are a contract: infra's alarm "a move
 * stuck" and the dashboards name them (keep them).
 * - berth_volume_moves_in_progress: moves this process is running now;
 * - berth_volume_move_step{step}: of those, how many are at each step (the journal's steps, and the
 *   waits for the snapshot and for the new volume);
 * - berth_volume_move_failures_total{step}: moves that stopped with an error, by the step they were at.
 */
export function moveMetrics(registry: Registry): MoveMetrics {
  const inProgress = new Gauge({ name: 'berth_volume_moves_in_progress', help: 'Zone moves of EBS volumes this agent is running now', registers: [registry] });
  const steps = new Gauge({ name: 'berth_volume_move_step', help: 'Zone moves under way, by the step they are at', labelNames: ['step'], registers: [registry] });
  const failures = new Counter({ name: 'berth_volume_move_failures_total', help: 'Zone moves that stopped with an error, by step', labelNames: ['step'], registers: [registry] });
  for (const step of [...MOVE_STEPS, 'wait-snapshot', 'wait-volume']) steps.set({ step }, 0);
  return {
    begin() {
      inProgress.inc();
      let at: string | undefined;
      return {
        step(step) {
          if (at !== undefined) steps.dec({ step: at });
          at = step;
          steps.inc({ step });
        },
        failed(step) {
          failures.inc({ step });
        },
        end() {
          if (at !== undefined) steps.dec({ step: at });
          at = undefined;
          inProgress.dec();
        },
      };
    },
  };
}
