import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { attachmentLimitOf, ebsSlotsLeft } from '../../../lib/attachment-limits.js';
import { isBerthError } from '../../../lib/errors.js';
import { silentLogger } from '../../../lib/logger.js';
import { AttachmentSlots, learnAttachmentLimit } from '../../../volume-plugin/backends/ebs/attachment-slots.js';
import type { Ec2Facade } from '../../../volume-plugin/backends/ebs/ec2-facade.js';
import { Reconciler } from '../../../volume-plugin/reconcile/reconciler.js';
import { INSTANCE_TYPES } from '../../aws/instance-types.js';
import { AZ, ebsUnitWorld, HOST, type EbsUnitWorld } from '../../fakes/ebs.js';

/**
 * Attachment limits (docs/design.md §6): the agent learns its type's limit from DescribeInstanceTypes
 * and what uses slots (network interfaces, NVMe instance store, the root volume), and refuses an
 * attach past the limit with the reason, before EC2 answers AttachmentLimitExceeded. Over the EC2
 * model on the port, which enforces the same limits for an instance of a known type.
 */
let w: EbsUnitWorld;
afterEach(() => w?.cleanup());

const OWNED = (name: string) => ({ 'berth:volume': name, 'berth:host': HOST, 'berth:managed-by': 'berth', 'berth:options': '{}' });

/** The world's facade with the slots the agent builds (agent/backend-factory.ts), and its registry. */
async function limitedFacade(world: EbsUnitWorld, interfaces: () => number) {
  const type = (await world.port.describeInstances({ InstanceIds: [world.instanceId] }, AbortSignal.timeout(5_000))).Reservations![0]!.Instances![0]!.InstanceType!;
  const holder: { facade?: Ec2Facade } = {};
  const slots = new AttachmentSlots((signal) => learnAttachmentLimit(world.port, type, signal), {
    attachedVolumeIds: async (signal) => (await holder.facade!.volumesByTags({}, [{ Name: 'attachment.instance-id', Values: [world.instanceId] }], signal)).map((v) => v.VolumeId!),
    networkInterfaces: () => Promise.resolve(interfaces()),
  });
  const registry = new Registry();
  const facade = (holder.facade = world.facade({ slots, registry, logger: silentLogger }));
  return { facade, slots, registry };
}

const gauge = async (registry: Registry, name: string) => (await registry.getSingleMetric(name)!.get()).values;

describe('attachment limits: the rule (EC2 User Guide, "Amazon EBS volume limits for Amazon EC2 instances")', () => {
  it('a shared limit counts EBS volumes, network interfaces and NVMe instance store; a dedicated one EBS volumes only', () => {
    const shared = attachmentLimitOf(INSTANCE_TYPES['m6id.large']!)!;
    expect(shared).toEqual({ instanceType: 'm6id.large', kind: 'shared', maximum: 28, instanceStore: 1 });
    // The root volume and 2 interfaces and the instance store disk: 28 - 1 - 2 - 1.
    expect(ebsSlotsLeft(shared, { ebs: 1, networkInterfaces: 2 })).toBe(24);
    const dedicated = attachmentLimitOf(INSTANCE_TYPES['m7i.large']!)!;
    expect(dedicated).toMatchObject({ kind: 'dedicated', maximum: 32 });
    expect(ebsSlotsLeft(dedicated, { ebs: 1, networkInterfaces: 3 })).toBe(31);
    expect(attachmentLimitOf({ InstanceType: 'm4.large', EbsInfo: {} })).toBeUndefined();
  });
});

describe('attachment limits: the agent refuses past the limit, before EC2 does', () => {
  it('boot on a shared-limit type: the volumes that fit are mounted, the rest refused with the reason in /readyz and the volume state tag; no AttachVolume past the limit', async () => {
    w = ebsUnitWorld({ instanceType: 'm6id.large', networkInterfaces: 2 });
    w.model.addVolume({ az: AZ, size: 8, attachedTo: { instanceId: w.instanceId, device: '/dev/xvda' } }); // the root volume
    const names = Array.from({ length: 25 }, (_, i) => `n${String(i).padStart(2, '0')}`);
    for (const name of names) w.model.addVolume({ az: AZ, size: 1, tags: OWNED(name) });
    const { facade, registry } = await limitedFacade(w, () => 2);
    const backend = w.backend({ ec2: facade });
    const service = await w.service(backend);
    const reconciler = new Reconciler({ manager: service, backend, concurrency: 10, intervalMs: 3_600_000, logger: silentLogger, registry });
    await reconciler.boot();

    const mounted = service.list().filter((v) => v.mounted);
    expect(mounted).toHaveLength(24);
    expect(w.model.calls('AttachVolume')).toBe(24);
    const refused = names.find((n) => !mounted.some((m) => m.name === n))!;
    expect(reconciler.readiness()).toMatch(new RegExp(`${refused} \\(cannot attach vol-[0-9a-f]+: no attachment slot left on this instance \\(m6id\\.large has 28 attachment slots shared by EBS volumes, network interfaces and NVMe instance store; 25 EBS volume\\(s\\) \\(the root volume included\\), 2 network interface\\(s\\) and 1 instance store volume\\(s\\) use 28\\)`));
    const tag = w.model.volumes().find((v) => v.tags['berth:volume'] === refused)!.tags['berth:state'];
    expect(tag).toMatch(/^error:cannot attach vol-[0-9a-f]+: no attachment slot left on this instance m6id.large has 28 attachment slots shared/);
    expect(w.model.instance(w.instanceId).tags['berth:ready']).toBe('false');
    expect(await gauge(registry, 'berth_ebs_attachment_slots_limit')).toEqual([{ labels: { kind: 'shared' }, value: 28 }]);
    expect((await gauge(registry, 'berth_ebs_attachment_slots_used'))[0]!.value).toBe(28);
    expect((await gauge(registry, 'berth_ebs_attachment_limit_refusals_total'))[0]!.value).toBeGreaterThanOrEqual(1);
    expect((await gauge(registry, 'berth_volumes_ready'))[0]!.value).toBe(0);
    expect(await gauge(registry, 'berth_volumes_by_state')).toEqual([
      { labels: { state: 'mounted' }, value: 24 },
      { labels: { state: 'idle' }, value: 0 },
      { labels: { state: 'attaching' }, value: 0 },
      { labels: { state: 'error' }, value: 1 },
    ]);

    // A node leaves this host (its volume is retained elsewhere): its slot frees, the next pass mounts the refused one.
    await service.remove(mounted[0]!.name);
    await reconciler.pass();
    expect(service.list().find((v) => v.name === refused)?.mounted).toBe(true);
    expect(reconciler.readiness()).toBe(true);
    expect((await gauge(registry, 'berth_volumes_ready'))[0]!.value).toBe(1);
    backend.close();
  });

  it('a dedicated limit ignores network interfaces; a volume detached behind berth\'s back frees its slot at the next claim', async () => {
    w = ebsUnitWorld({ instanceType: 'm7i.large', networkInterfaces: 3 });
    const { facade, slots } = await limitedFacade(w, () => 3);
    const ids = Array.from({ length: 33 }, () => w.model.addVolume({ az: AZ, size: 1 }));
    for (const id of ids.slice(0, 32)) await facade.attach(id);
    expect(slots.used()).toBe(32);
    const err = await facade.attach(ids[32]!).catch((e: unknown) => e);
    expect(isBerthError(err, 'LIMIT_EXCEEDED')).toBe(true);
    expect((err as Error).message).toMatch(/m7i\.large attaches at most 32 EBS volumes \(a dedicated limit\); 32 are attached/);
    expect(w.model.calls('AttachVolume')).toBe(32);

    await w.model.detachOutOfBand(ids[0]!);
    await facade.attach(ids[32]!);
    expect(w.model.volume(ids[32]!).attachment?.state).toBe('attached');
  });

  it('learning the limit is one DescribeInstanceTypes, measured like every port call; an unknown type is EC2\'s InvalidInstanceType', async () => {
    w = ebsUnitWorld();
    w.model.resetCalls();
    await expect(learnAttachmentLimit(w.port, 'm6i.large', AbortSignal.timeout(5_000))).resolves.toMatchObject({ kind: 'shared', maximum: 28 });
    expect(w.model.calls('DescribeInstanceTypes')).toBe(1);
    await expect(learnAttachmentLimit(w.port, 'x9.huge', AbortSignal.timeout(5_000))).rejects.toMatchObject({ name: 'InvalidInstanceType' });
  });

  it('a limit that cannot be learnt (the role lacks ec2:DescribeInstanceTypes) checks nothing: the attach goes on and EC2 decides, and the failure is reported', async () => {
    w = ebsUnitWorld({ instanceType: 'm6i.large' });
    const failures: unknown[] = [];
    const holder: { facade?: Ec2Facade } = {};
    const slots = new AttachmentSlots(
      (signal) => learnAttachmentLimit(w.port, 'm6i.large', signal),
      { attachedVolumeIds: async () => (await holder.facade!.volumesByTags({}, [{ Name: 'attachment.instance-id', Values: [w.instanceId] }])).map((v) => v.VolumeId!), networkInterfaces: () => Promise.resolve(1) },
      (err) => failures.push(err),
    );
    holder.facade = w.facade({ slots });
    w.model.failNext('DescribeInstanceTypes', Object.assign(new Error('You are not authorized to perform this operation.'), { name: 'UnauthorizedOperation' }));
    const id = w.model.addVolume({ az: AZ, size: 1 });
    await holder.facade.attach(id);
    expect(w.model.volume(id).attachment?.state).toBe('attached');
    expect(slots.limit).toBeUndefined();
    expect(failures).toMatchObject([{ name: 'UnauthorizedOperation' }]);
  });
});
