import type { automation } from '@pulumi/pulumi';

/** The operations the cluster API runs; each reports progress under its name. */
export type Operation = 'create' | 'update' | 'add-nodes' | 'remove-nodes' | 'move-node' | 'delete';

/**
 * One line of progress a UI can show as it arrives. `phase` says where the operation is;
 * `message` is a sentence for a person; the other fields are there for a program.
 */
export interface ProgressEvent {
  readonly cluster: string;
  readonly operation: Operation;
  readonly phase: 'validated' | 'applying' | 'resource' | 'diagnostic' | 'retrying' | 'waiting' | 'moving' | 'ready' | 'succeeded' | 'failed';
  readonly message: string;
  /** Milliseconds since the epoch. */
  readonly at: number;
  /** Attempt of the Pulumi step this event belongs to, from 1. */
  readonly attempt?: number;
  /** For `resource`: what Pulumi does to which resource. */
  readonly resource?: { readonly op: string; readonly type: string; readonly name: string; readonly status: 'started' | 'done' | 'failed' };
  /** For `waiting`: what is not ready yet, one sentence each. */
  readonly pending?: readonly string[];
}

export type ProgressSink = (event: ProgressEvent) => void;

/** The resource name is the last segment of its URN (`urn:pulumi:stack::project::type::name`). */
function nameOf(urn: string): string {
  return urn.slice(urn.lastIndexOf('::') + 2);
}

/**
 * Turns a Pulumi engine event into progress, or undefined for the ones a person need not see
 * (previews, same-state steps, debug output). Stack and provider resources are left out.
 */
export function fromEngineEvent(e: automation.EngineEvent): Pick<ProgressEvent, 'phase' | 'message' | 'resource'> | undefined {
  const step = e.resourcePreEvent ?? e.resOutputsEvent ?? e.resOpFailedEvent;
  if (step) {
    const { op, type, urn } = step.metadata;
    if (op === 'same' || op === 'read' || type === 'pulumi:pulumi:Stack' || type.startsWith('pulumi:providers:')) return undefined;
    if ('planning' in step && step.planning) return undefined;
    const status = e.resOpFailedEvent ? 'failed' : e.resOutputsEvent ? 'done' : 'started';
    const name = nameOf(urn);
    const verb = status === 'started' ? `${op} of` : status === 'done' ? `${op} done:` : `${op} failed:`;
    return { phase: 'resource', message: `${verb} ${type} ${name}`, resource: { op, type, name, status } };
  }
  const d = e.diagnosticEvent;
  if (d && (d.severity === 'error' || d.severity === 'warning') && !d.ephemeral) {
    const where = d.urn ? ` (${nameOf(d.urn)})` : '';
    return { phase: 'diagnostic', message: `${d.severity}${where}: ${d.message.trim()}` };
  }
  return undefined;
}
