import { Counter, Gauge, type Registry } from 'prom-client';
import { MOVE_STEPS, type MoveJournal, type MoveMetrics } from './zone-move.js';

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

/**
 * The agent's view of zone moves: the moves of the volumes tagged to its host, as their journals say
 * (whoever runs them: `berth move` runs in its own process, on any host). Set from each survey of the
 * host's volumes (ebs-backend.ts), so a move that stays at one step shows as such until it ends: the
 * alarm "a move stuck" is berth_volume_moves_in_progress > 0 for longer than a move takes.
 * Same names as moveMetrics (one or the other is registered in a registry, never both).
 */
export function observedMoveMetrics(registry: Registry): { observe(journals: readonly MoveJournal[]): void } {
  const inProgress = new Gauge({ name: 'berth_volume_moves_in_progress', help: 'Zone moves of this host\'s EBS volumes under way (from their journals)', registers: [registry] });
  const steps = new Gauge({ name: 'berth_volume_move_step', help: 'Zone moves of this host\'s EBS volumes under way, by the step their journal is at', labelNames: ['step'], registers: [registry] });
  for (const step of MOVE_STEPS) steps.set({ step }, 0);
  inProgress.set(0);
  return {
    observe(journals) {
      inProgress.set(journals.length);
      for (const step of MOVE_STEPS) steps.set({ step }, journals.filter((j) => j.step === step).length);
    },
  };
}
