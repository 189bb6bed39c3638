import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { tagKeys } from '../../../lib/node-contract.js';
import { observedMoveMetrics } from '../../../volume-plugin/backends/ebs/move-metrics.js';
import { createZoneMover, formatJournal } from '../../../volume-plugin/backends/ebs/zone-move.js';
import { AZ, ebsUnitWorld, HOST, type EbsUnitWorld } from '../../fakes/ebs.js';

/**
 * The EBS backend during and after a zone move (issue 22), over the EC2 model on the port, the
 * in-memory NVMe and filesystem under the real volume service: a Mount (and so the reconciler's
 * ensureMounted) never attaches a volume mid-move and says why; past the cut-over the node's name
 * leads to the new volume, even before that volume carries the name tag.
 */
const k = tagKeys();
const FAR = 'eu-west-1b';
const TAGS = { [k.volume]: 'db1', [k.host]: HOST, [k.managedBy]: 'berth', [k.options]: 'size=8GiB' };
const C1 = 'c1';

let w: EbsUnitWorld;
afterEach(() => w?.cleanup());

describe('EBS backend during a zone move (unit)', () => {
  it('a Mount of a volume mid-move is refused with the target zone and the step, and nothing is attached', async () => {
    w = ebsUnitWorld();
    const id = w.model.addVolume({ az: AZ, size: 8, tags: { ...TAGS, [k.move]: formatJournal({ step: 'snapshot', to: FAR, id: 'm1' }) } });
    const service = await w.service(w.backend());
    await expect(service.publish('db1', C1)).rejects.toThrow(/volume db1 \(vol-\w+\) is moving to zone eu-west-1b, step snapshot; .*berth move db1 --zone eu-west-1b resumes it/);
    await expect(service.ensureMounted('db1')).rejects.toThrow(/is moving to zone eu-west-1b/);
    expect(w.model.calls('AttachVolume')).toBe(0);
    expect(w.model.volume(id).state).toBe('available');
  });

  it('a Mount of a volume in another zone names the move that fixes it', async () => {
    w = ebsUnitWorld();
    w.model.addVolume({ az: FAR, size: 8, tags: TAGS });
    const service = await w.service(w.backend());
    await expect(service.publish('db1', C1)).rejects.toThrow(/cannot attach across zones: stop the node and move its volume \(berth move db1 --zone eu-west-1a\)/);
  });

  it('after a move into this zone the node mounts its new volume by name; the retired one is never used', async () => {
    w = ebsUnitWorld();
    const old = w.model.addVolume({ az: FAR, size: 8, type: 'gp3', tags: TAGS });
    const moved = await createZoneMover({ ec2: w.port, keys: k, pollMs: 2, settleMs: 2 }).move({ name: 'db1', zone: AZ });
    const fresh = await w.service(w.backend());
    await fresh.publish('db1', C1);
    expect(w.model.volume(moved.to.volumeId).attachment).toMatchObject({ instanceId: w.instanceId, state: 'attached' });
    expect(w.model.volume(old).attachment).toBeUndefined();
    expect(w.model.volume(old).tags[k.retired]).toBeDefined();
  });

  it('killed right after the cut-over (the new volume has no name tag yet): the name already leads to the new volume', async () => {
    w = ebsUnitWorld();
    const old = w.model.addVolume({ az: FAR, size: 8, tags: TAGS });
    const snap = w.model.addSnapshot({ size: 8, volumeId: old });
    const made = w.model.addVolume({ az: AZ, size: 8, snapshotId: snap, tags: { [k.host]: HOST, [k.managedBy]: 'berth', [k.options]: 'size=8GiB', [k.moveOf]: `${old} m1` } });
    w.model.setTags(old, { [k.move]: formatJournal({ step: 'cutover', to: AZ, id: 'm1', snapshotId: snap, newVolumeId: made }) });
    const backend = w.backend();
    expect((await backend.find('db1'))?.id).toBe(made);
    const service = await w.service(backend);
    await service.publish('db1', C1);
    expect(w.model.volume(made).attachment).toMatchObject({ instanceId: w.instanceId });
    expect(w.model.volume(old).attachment).toBeUndefined();
  });
});

describe('zone moves in the agent registry (unit)', () => {
  it('each survey sets berth_volume_moves_in_progress and berth_volume_move_step from the journals of this host\'s volumes', async () => {
    w = ebsUnitWorld();
    const registry = new Registry();
    const backend = w.backend({ moves: observedMoveMetrics(registry) });
    const id = w.model.addVolume({ az: AZ, size: 8, tags: { ...TAGS, [k.move]: formatJournal({ step: 'restore', to: FAR, id: 'm1', snapshotId: 'snap-0123456789abcdef0' }) } });
    w.model.addVolume({ az: AZ, size: 8, tags: { ...TAGS, [k.volume]: 'db2' } });
    await backend.survey();
    let text = await registry.metrics();
    expect(text).toMatch(/berth_volume_moves_in_progress 1/);
    expect(text).toMatch(/berth_volume_move_step\{step="restore"\} 1/);
    expect(text).toMatch(/berth_volume_move_step\{step="snapshot"\} 0/);
    w.model.setTags(id, { [k.move]: formatJournal({ step: 'done', to: FAR, id: 'm1' }) });
    await backend.survey();
    text = await registry.metrics();
    expect(text).toMatch(/berth_volume_moves_in_progress 0/);
  });
});
