import { ECSClient } from '@aws-sdk/client-ecs';
import { EC2Client } from '@aws-sdk/client-ec2';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ebsUnitWorld, GiB, type EbsUnitWorld } from '../../test/fakes/ebs.js';
import { FakeNvme } from '../../test/fakes/nvme.js';
import { ofType, type Declared } from '../test/pulumi-mocks.js';
import { InlineStacks, unitProgramMocks } from '../test/unit-stacks.js';
import { AutomationWorkspace, type UnitSettings } from './automation-workspace.js';
import { mockShopReady } from '../test/ready-cluster.js';
import { ClusterApi } from './cluster-api.js';
import type { ClusterSpec } from './invariants.js';

/**
 * Online grow from the cluster API (issue 22 item 1): a node's new `sizeGiB` goes through the
 * real unit program (under setMocks) into the node's EBS volume size; that change is applied to
 * the EC2 model as the Pulumi AWS provider applies it (it bridges terraform-provider-aws:
 * aws_ebs_volume's update sends ModifyVolume, then waitVolumeModificationComplete, whose targets
 * are `optimizing` and `completed`, internal/service/ec2/wait.go: "The volume is useable once the
 * state is optimizing"); the host's agent then notices the larger device and grows the mounted
 * filesystem, with no call of its own to EC2.
 */
const settings: UnitSettings = { regions: ['eu-west-1', 'us-east-1'], regionalStack: 'acme/berth-regional/regional-{region}', zone: 'example.com', nodeImage: 'app:1', nodePort: 8080 };
const spec: ClusterSpec = { name: 'shop', region: 'eu-west-1', hosts: ['shop-h1'], nodes: [{ name: 'db1', host: 'shop-h1', sizeGiB: 8 }] };

let declared: Declared[] = [];
beforeAll(() => {
  declared = unitProgramMocks();
});

let w: EbsUnitWorld | undefined;
afterEach(() => w?.cleanup());

/** The node volume's size as the last run of the unit program declared it. */
const declaredSizeGiB = () => ofType(declared, 'aws:ebs/volume:Volume').filter((v) => v.name === 'shop-db1-data').at(-1)!.inputs['size'];

describe('a node grown through the cluster API', () => {
  it('becomes the EBS volume size in the unit program, ModifyVolume in the EC2 model (as the provider applies it), and a larger filesystem the agent grew', async () => {
    // Readiness as the cluster API reads it (the host ready, the node's volume mounted, its task running).
    const ready = mockShopReady();
    try {
      const api = new ClusterApi({
        environment: 'prod', workspace: new AutomationWorkspace(settings, new InlineStacks(() => declared)), regions: settings.regions, sleep: () => Promise.resolve(),
        ec2: () => new EC2Client({ region: 'eu-west-1' }), ecs: () => new ECSClient({ region: 'eu-west-1' }),
      });
      await api.create(spec);
      expect(declaredSizeGiB()).toBe(8);

      // The host: its agent serves the node's volume, mounted, on the EBS backend over the EC2 model.
      w = ebsUnitWorld({ modifyLatencyMs: 5, optimizeLatencyMs: 5 });
      const world = w;
      world.model.onOptimizing = (volumeId, sizeGiB) => void world.fs.sizes.set(FakeNvme.pathOf(volumeId), sizeGiB * GiB);
      const agent = await world.service(world.backend());
      await agent.create('shop-db1', { size: '8GiB' });
      const volumeId = world.model.volumes()[0]!.volumeId;
      world.fs.sizes.set(FakeNvme.pathOf(volumeId), 8 * GiB);
      await agent.publish('shop-db1', 'task-1');
      await agent.growMounted();

      await api.update({ ...spec, nodes: [{ name: 'db1', host: 'shop-h1', sizeGiB: 16 }] });
      expect(declaredSizeGiB()).toBe(16);
      // The provider's update of aws_ebs_volume: ModifyVolume with the new size, then wait for optimizing or completed.
      const signal = AbortSignal.timeout(5_000);
      await world.port.modifyVolume({ VolumeId: volumeId, Size: declaredSizeGiB() as number }, signal);
      await expect
        .poll(async () => (await world.port.describeVolumesModifications({ VolumeIds: [volumeId] }, signal)).VolumesModifications![0]!.ModificationState)
        .toMatch(/^(optimizing|completed)$/);

      world.model.resetCalls();
      await agent.growMounted();
      expect(world.model.calls()).toBe(0);
      expect(agent.describe('shop-db1')).toMatchObject({ mounted: true, consumers: 1, size: { deviceBytes: 16 * GiB, grownFromBytes: 8 * GiB } });
      expect(world.fs.filesystemSizes.get(agent.mountpointOf('shop-db1'))).toBe(16 * GiB);

      // A shrink never reaches the stack (the provider's ModifyVolume would fail half way through an update).
      await expect(api.update({ ...spec, nodes: [{ name: 'db1', host: 'shop-h1', sizeGiB: 4 }] })).rejects.toThrow(/only grow, not shrink to 4 GiB/);
      expect(declaredSizeGiB()).toBe(16);
    } finally {
      ready.restore();
    }
  });
});
