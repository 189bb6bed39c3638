import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AttachmentSlots } from './attachment-slots.js';

/** What the facade reports of its attachments (ec2-facade.ts). */
export interface AttachMetrics {
  attached(ms: number): void;
  detached(ms: number): void;
  /** Time spent waiting for a detach, whether it completed or not. */
  detachPending(ms: number): void;
  refused(): void;
}

/** Attach and detach take 1–4 s usually (docs/design.md §6); the buckets reach the attach budget (100 s). */
const LATENCY_BUCKETS = [0.5, 1, 2, 3, 5, 10, 20, 30, 60, 100, 120];

/**
 * The EBS attachments of this host, measured (docs/operations.md, "Watch the fleet"): attach and
 * detach latency as histograms, the seconds spent waiting for detaches (aws-ebs-csi-driver's
 * aws_ebs_csi_ec2_detach_pending_seconds in its docs/metrics.md, without its per-volume labels:
 * one series per host), attachment slots used and the limit (docs/design.md §6, "Attachment
 * limits"), and attaches refused for want of a slot.
 */
export function attachMetrics(registry: Registry, slots: () => AttachmentSlots | undefined): AttachMetrics {
  const attach = new Histogram({ name: 'berth_ebs_attach_duration_seconds', help: 'Time from AttachVolume to the attachment being reported attached here, per attach that succeeded', buckets: LATENCY_BUCKETS, registers: [registry] });
  const detach = new Histogram({ name: 'berth_ebs_detach_duration_seconds', help: 'Time from DetachVolume to the volume being available, per detach that completed', buckets: LATENCY_BUCKETS, registers: [registry] });
  const pending = new Counter({ name: 'berth_ec2_detach_pending_seconds', help: 'Seconds spent waiting for volumes to detach (completed or not)', registers: [registry] });
  const refusals = new Counter({ name: 'berth_ebs_attachment_limit_refusals_total', help: 'Attaches refused because the instance type had no attachment slot left', registers: [registry] });
  new Gauge({
    name: 'berth_ebs_attachment_slots_limit',
    help: 'Attachment slots of this instance type (EbsInfo.MaximumEbsAttachments), by kind (shared: EBS, network interfaces and NVMe instance store; dedicated: EBS only); absent until learnt at the first attach, or when EC2 states no limit',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      this.reset();
      const limit = slots()?.limit;
      if (limit) this.set({ kind: limit.kind }, limit.maximum);
    },
  });
  new Gauge({
    name: 'berth_ebs_attachment_slots_used',
    help: 'Attachment slots in use on this instance, counted as the limit counts them',
    registers: [registry],
    collect() {
      const s = slots();
      this.set(s ? s.used() : 0);
    },
  });
  return {
    attached: (ms) => attach.observe(ms / 1000),
    detached: (ms) => detach.observe(ms / 1000),
    detachPending: (ms) => pending.inc(ms / 1000),
    refused: () => refusals.inc(),
  };
}
