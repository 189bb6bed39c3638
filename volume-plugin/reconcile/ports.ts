import type { TagKeys } from '../../lib/node-contract.js';
import type { VolumeRecord } from '../backends/backend.js';

/**
 * What the reconciler (reconciler.ts) needs from below, and nothing more (docs/design.md §6,
 * "Reconcile"). The core's VolumeService satisfies ReconcileService structurally; a backend that
 * can survey its cloud (the EBS backend) satisfies SurveyingBackend. Reconcile imports the core's
 * types and these ports; the core never imports reconcile, and reconcile imports no backend
 * (test/unit/reconcile/imports.test.ts).
 */

/** The core's volume operations a pass drives, each under the core's per-name lock. */
export interface ReconcileService {
  /** The local view: which names are mounted here now. */
  list(): readonly { name: string; mounted: boolean }[];
  /** Attach and mount with no consumer (the core's own Mount deadline applies). */
  ensureMounted(name: string): Promise<unknown>;
  /** Unmount and detach a volume no consumer uses; false when one does. */
  releaseIfUnused(name: string, reason: string): Promise<boolean>;
  /** Detach a volume that is not in the local view (a stray), unless it got mounted meanwhile. */
  detachIfUnused(record: VolumeRecord, reason: string): Promise<boolean>;
  /** Takes the backend's volumes (as the pass just listed them) into the local view. */
  refresh(records?: readonly VolumeRecord[]): Promise<void>;
  /** Tells the listener when work on a name (a Mount, say) starts and ends; returns the unsubscribe (VolumeService's, view-changes.ts). */
  subscribe?(listener: { workStarted(name: string): void; workEnded(name: string): void; reset(): void }): () => void;
}

/** A volume's attachment as the cloud reports it. */
export interface CloudAttachment {
  instanceId: string;
  /** The cloud's device name (EC2's /dev/xvd…), not the block device. */
  device: string;
  state: string;
}

/** Two or more live volumes carry one name: berth never guesses which holds the data. */
export interface DuplicateName {
  name: string;
  /** Every volume with the name, the one attached here first. */
  volumeIds: string[];
  /** The one attached to this instance, which berth keeps using; undefined when none is. */
  kept: string | undefined;
}

/**
 * What the cloud said of one volume, typed: what the reconciler decides on. `record.status` is only
 * what `docker volume inspect` shows and no decision reads it.
 */
export interface VolumeFacts {
  name: string;
  volumeId: string;
  /** The logical host its host tag names; '' when it has none (retained). */
  hostTag: string;
  /** Its attachment as the cloud reports it (instance, device name, state); undefined when available. */
  attachment: CloudAttachment | undefined;
  /** The record to hand the core (options, createdAt, display status). */
  record: VolumeRecord;
}

/** One reconcile pass's view of the cloud (for EBS: one DescribeVolumes in the steady state). */
export interface HostSurvey {
  /** The volumes tagged to this host, one per unambiguous name. */
  tagged: VolumeFacts[];
  /** Names carried by several volumes tagged to this host. */
  duplicates: DuplicateName[];
  /** berth's volumes attached to this instance but tagged to another host or none: candidates for release. */
  strays: VolumeFacts[];
}

export type Tags = Record<string, string>;

/** A backend that can survey its cloud and publish readiness there (the EBS backend). */
export interface SurveyingBackend {
  readonly identity: { readonly instanceId: string; readonly hostId: string };
  readonly tagKeys: Pick<TagKeys, 'host' | 'volume' | 'ready' | 'readyCount' | 'attachedTo' | 'state'>;
  /** The volumes tagged to this host, the duplicates and the strays, as the cloud says now. */
  survey(): Promise<HostSurvey>;
  /** Readiness as tags: on the instance, and per volume. */
  publishReadiness(instance: Tags, volumes: { id: string; tags: Tags }[]): Promise<void>;
}
