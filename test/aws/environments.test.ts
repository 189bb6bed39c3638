import { ECSClient } from '@aws-sdk/client-ecs';
import { afterEach, describe, expect, it } from 'vitest';
import { unitEcsClusterName } from '../../infra/components/cluster.js';
import { hostEbsPolicy } from '../../infra/components/host-policy.js';
import { environmentEcsClusterPrefixes, traefikEcsClusterName } from '../../infra/components/naming.js';
import { nodeTask } from '../../infra/components/node-task.js';
import { agentUpdatePolicy } from '../../infra/components/scheduled-job.js';
import { snapshotTargetTags } from '../../infra/components/snapshot-policy.js';
import { notReady } from '../../infra/cluster-api/readiness.js';
import { updateAgents } from '../../infra/lambdas/ecs-agent-update.js';
import { silentLogger } from '../../lib/logger.js';
import { hostInstanceTags, nodeVolumeName, nodeVolumeTags, tagKeys } from '../../lib/node-contract.js';
import { environmentConstraint, parseRouterLabels } from '../../lib/traefik-routes.js';
import { createEbsBackend, type EbsBackend } from '../../volume-plugin/backends/ebs/ebs-backend.js';
import { Ec2Facade } from '../../volume-plugin/backends/ebs/ec2-facade.js';
import type { DeviceResolver } from '../../volume-plugin/devices/nvme.js';
import { EcsModel, LATEST_AGENT } from '../ecs/ecs-model.js';
import { FAST_TIMING, modelClient } from '../helpers/ebs.js';
import { traefikConstraintAdmits } from '../helpers/traefik-constraints.js';
import { allows, type RequestContext } from './iam-policy.js';
import { Ec2Model } from './ec2-model.js';

/**
 * Two environments, `prod` and `staging`, in one account and region with the same cluster (`shop`),
 * host (`shop-h1`) and node (`db1`) names, deployed into one EC2 model and one ECS model with the
 * tags, names and policies infra declares for them. Nothing of one may be attached, tagged,
 * snapshotted, updated or routed by the other: berth's own EBS lookups (the backend over the
 * facade over the SDK-level model), the host role's IAM conditions (evaluated on the model's real
 * tags), DLM's targets, the agent-update job against the ECS model, and Traefik's constraint.
 */
const REGION = 'eu-west-1';
const AZ = 'eu-west-1a';
const ACCOUNT = '123456789012';
const ENVS = ['prod', 'staging'] as const;
type Env = (typeof ENVS)[number];
const cluster = 'shop';
const host = 'shop-h1';
const node = 'db1';
const keys = tagKeys();

/** A device resolver that shows a volume once the model reports it attached to this instance (no kernel needed for lookups). */
function modelDevices(model: Ec2Model, instanceId: string): DeviceResolver {
  const find = (volumeId: string) => {
    const a = model.volume(volumeId).attachment;
    return Promise.resolve(a?.instanceId === instanceId && a.state === 'attached' ? { path: `/dev/model/${volumeId}`, how: 'nvme-serial' as const } : undefined);
  };
  return {
    find,
    async waitFor(volumeId) {
      for (let i = 0; i < 200; i++) {
        const d = await find(volumeId);
        if (d) return d;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`no device for ${volumeId}`);
    },
    attachedVolumeIds: () => Promise.resolve(new Set(model.volumes().filter((v) => v.attachment?.instanceId === instanceId).map((v) => v.volumeId))),
  };
}

function world() {
  const model = new Ec2Model({ region: REGION });
  const instances = {} as Record<Env, string>;
  const volumes = {} as Record<Env, string>;
  for (const env of ENVS) {
    instances[env] = model.addInstance({ az: AZ, tags: hostInstanceTags({ environment: env, cluster, host }) });
    volumes[env] = model.addVolume({ az: AZ, size: 20, tags: nodeVolumeTags({ environment: env, cluster, node, host }) });
  }
  const backends: EbsBackend[] = [];
  /** berth on `env`'s host; `withEnvironment: false` is an older berth, run without BERTH_ENVIRONMENT. */
  const backendOf = (env: Env, withEnvironment = true) => {
    const b = createEbsBackend({
      ec2: new Ec2Facade({ client: modelClient(model), instanceId: instances[env], maxConcurrentAttachments: 50, timing: FAST_TIMING }),
      devices: modelDevices(model, instances[env]),
      identity: { instanceId: instances[env], az: AZ, region: REGION, hostId: host },
      defaults: { sizeBytes: 2 ** 30, fs: 'ext4' },
      tagPrefix: 'berth:', cluster, ...(withEnvironment ? { environment: env } : {}),
      idleDetachMs: 60_000, moveWaitMs: 500, deviceWaitMs: 2_000, logger: silentLogger,
    });
    backends.push(b);
    return b;
  };
  return { model, instances, volumes, backendOf, close: () => backends.forEach((b) => b.close()) };
}

let close: (() => void) | undefined;
afterEach(() => close?.());

describe('two environments with the same cluster, host and node names in one account and region', () => {
  it('berth finds, attaches and tags only its own environment\'s volume', async () => {
    const w = world();
    close = w.close;
    const volume = nodeVolumeName(cluster, node);
    for (const env of ENVS) {
      const other = env === 'prod' ? 'staging' : 'prod';
      const b = w.backendOf(env);
      const found = await b.find(volume);
      expect(found?.id, env).toBe(w.volumes[env]);
      expect((await b.list()).map((r) => r.id), env).toEqual([w.volumes[env]]);
      const survey = await b.survey();
      expect(survey.tagged.map((f) => f.record.id), env).toEqual([w.volumes[env]]);
      expect(survey.duplicates).toEqual([]);
      await b.attach(found!);
      expect(w.model.volume(w.volumes[env]).attachment?.instanceId, env).toBe(w.instances[env]);
      expect(w.model.volume(w.volumes[other]).attachment?.instanceId ?? 'none', `${env} left ${other}'s volume alone`).not.toBe(w.instances[env]);
      await b.publishReadiness({ [keys.ready]: 'true' }, [{ id: found!.id, tags: { [keys.state]: 'mounted', [keys.attachedTo]: w.instances[env] } }]);
    }
    for (const env of ENVS) {
      expect(w.model.volume(w.volumes[env]).tags[keys.attachedTo], env).toBe(w.instances[env]);
      expect(w.model.instance(w.instances[env]).tags[keys.ready], env).toBe('true');
    }
    // A volume berth creates carries its environment, and the other environment never sees it.
    const created = await w.backendOf('prod').create('shop-db9', { sizeBytes: 2 ** 30, fs: 'ext4' } as never);
    expect(w.model.volume(created.id).tags).toMatchObject({ [keys.environment]: 'prod', [keys.cluster]: cluster, [keys.managedBy]: 'berth' });
    expect(await w.backendOf('staging').find('shop-db9')).toBeUndefined();
  });

  it('without its environment (an older berth), the same lookup is ambiguous: the environment is what tells them apart', async () => {
    const w = world();
    close = w.close;
    await expect(w.backendOf('prod', false).find(nodeVolumeName(cluster, node))).rejects.toThrow(/2 EBS volumes are tagged berth:volume=shop-db1/);
  });

  it('the host role of one environment may not attach, detach, tag, untag or delete the other\'s volume, nor attach to its instance', () => {
    const w = world();
    const arn = (type: string, id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:${type}/${id}`;
    const onResource = (tags: Record<string, string>): RequestContext => Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v]));
    for (const env of ENVS) {
      const policy = hostEbsPolicy({ region: REGION, accountId: ACCOUNT, environment: env, cluster, hostId: host });
      for (const [whose, expected] of ENVS.map((e) => [e, e === env] as const)) {
        const vol = onResource(w.model.volume(w.volumes[whose]).tags);
        const inst = onResource(w.model.instance(w.instances[whose]).tags);
        const what = `${env}'s role on ${whose}'s`;
        expect(allows([policy], 'ec2:AttachVolume', arn('volume', w.volumes[whose]), vol), `${what} volume: attach`).toBe(expected);
        expect(allows([policy], 'ec2:DetachVolume', arn('volume', w.volumes[whose]), vol), `${what} volume: detach`).toBe(expected);
        expect(allows([policy], 'ec2:DeleteVolume', arn('volume', w.volumes[whose]), vol), `${what} volume: delete`).toBe(expected);
        expect(allows([policy], 'ec2:AttachVolume', arn('instance', w.instances[whose]), inst), `${what} instance: attach to`).toBe(expected);
        const claim = { ...vol, 'aws:TagKeys': [keys.host], [`aws:RequestTag/${keys.host}`]: host };
        expect(allows([policy], 'ec2:CreateTags', arn('volume', w.volumes[whose]), claim), `${what} volume: claim`).toBe(expected);
        expect(allows([policy], 'ec2:DeleteTags', arn('volume', w.volumes[whose]), { ...vol, 'aws:TagKeys': [keys.state] }), `${what} volume: untag`).toBe(expected);
        expect(allows([policy], 'ec2:CreateTags', arn('instance', w.instances[whose]), { ...inst, 'aws:TagKeys': [keys.ready] }), `${what} instance: readiness`).toBe(expected);
      }
    }
  });

  it('each environment\'s DLM policy snapshots its own volumes only, whether DLM ANDs or ORs target tags', () => {
    const w = world();
    const stranger = w.model.addVolume({ az: AZ, size: 1, tags: { [keys.managedBy]: 'berth', Name: 'no environment' } });
    for (const env of ENVS) {
      const target = Object.entries(snapshotTargetTags(env));
      const all = w.model.volumes().filter((v) => target.every(([k, val]) => v.tags[k] === val)).map((v) => v.volumeId);
      const any = w.model.volumes().filter((v) => target.some(([k, val]) => v.tags[k] === val)).map((v) => v.volumeId);
      expect(all, env).toEqual([w.volumes[env]]);
      expect(any, env).toEqual([w.volumes[env]]);
    }
    expect(w.model.volume(stranger).tags[keys.environment]).toBeUndefined();
  });

  it('the cluster API judges a cluster ready by its own environment\'s host and volume only', async () => {
    // staging's host is up and ready, prod's is not yet: prod must not be reported ready on staging's account.
    const model = new Ec2Model({ region: REGION });
    const staging = model.addInstance({ az: AZ, tags: { ...hostInstanceTags({ environment: 'staging', cluster, host }), [keys.ready]: 'true' } });
    model.addVolume({ az: AZ, size: 20, tags: { ...nodeVolumeTags({ environment: 'staging', cluster, node, host }), [keys.state]: 'mounted' }, attachedTo: { instanceId: staging, device: '/dev/xvdf' } });
    const prod = model.addInstance({ az: AZ, tags: hostInstanceTags({ environment: 'prod', cluster, host }) });
    const prodVolume = model.addVolume({ az: AZ, size: 20, tags: nodeVolumeTags({ environment: 'prod', cluster, node, host }) });
    const ecs = new ECSClient({ region: REGION, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' } });
    new EcsModel({ region: REGION, accountId: ACCOUNT }).install(ecs);
    const spec = { name: cluster, region: REGION, hosts: [host], nodes: [{ name: node, host }] };
    const pending = await notReady({ ec2: modelClient(model), ecs, environment: 'prod' }, spec);
    expect(pending.filter((p) => p.kind === 'host')).toEqual([{ kind: 'host', name: host, reason: `instance ${prod} is not tagged berth:ready=true yet (berth is still mounting its volumes)` }]);
    expect(pending.find((p) => p.kind === 'node' && p.reason.startsWith('volume'))?.reason).toBe(`volume ${prodVolume} is not reported by berth yet, not mounted`);
  });

  it('each environment\'s agent-update job updates its own clusters\' agents only, and its role could not do otherwise', async () => {
    const ecs = new EcsModel({ region: REGION, accountId: ACCOUNT });
    const instances = new Map<string, string>();
    for (const env of ENVS) {
      for (const c of [unitEcsClusterName(env, cluster), traefikEcsClusterName(env, REGION)]) {
        ecs.createCluster(c);
        instances.set(c, ecs.registerContainerInstance({ cluster: c, ec2InstanceId: `i-${c}`, attributes: {}, agentVersion: '1.80.0' }));
      }
    }
    const client = new ECSClient({ region: REGION, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' } });
    ecs.install(client);
    const result = await updateAgents(client, Object.values(environmentEcsClusterPrefixes('prod')));
    expect(result.failed).toEqual([]);
    const version = (c: string) => ecs.agentVersionOf(instances.get(c)!);
    expect(version(unitEcsClusterName('prod', cluster))).toBe(LATEST_AGENT);
    expect(version(traefikEcsClusterName('prod', REGION))).toBe(LATEST_AGENT);
    expect(version(unitEcsClusterName('staging', cluster))).toBe('1.80.0');
    expect(version(traefikEcsClusterName('staging', REGION))).toBe('1.80.0');
    const policy = agentUpdatePolicy(REGION, ACCOUNT, 'prod');
    for (const [c, arn] of instances) expect(allows([policy], 'ecs:UpdateContainerAgent', arn), c).toBe(c.startsWith('prod-'));
  });

  it('each environment\'s Traefik routes its own node only, and no router name is shared', () => {
    const labels = Object.fromEntries(ENVS.map((env) => [env, nodeTask({ environment: env, node, host, cluster, image: 'app:1', port: 8080, zone: 'example.com' }).containerDefinitions[0]!.dockerLabels])) as Record<Env, Record<string, string>>;
    for (const env of ENVS) {
      for (const whose of ENVS) expect(traefikConstraintAdmits(environmentConstraint(env), labels[whose]), `${env}'s Traefik on ${whose}'s node`).toBe(env === whose);
    }
    const names = (env: Env) => parseRouterLabels(labels[env]).map((r) => `${r.kind}/${r.name}`);
    expect(names('prod').filter((n) => names('staging').includes(n))).toEqual([]);
  });
});
