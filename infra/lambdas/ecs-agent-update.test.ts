import { ECSClient, ListClustersCommand, ListContainerInstancesCommand, UpdateContainerAgentCommand, type UpdateContainerAgentCommandInput } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { allows } from '../../test/aws/iam-policy.js';
import { agentUpdatePolicy } from '../components/scheduled-job.js';
import { environmentEcsClusterPrefixes } from '../components/naming.js';
import { prefixesFromEnv, updateAgents } from './ecs-agent-update.js';

const prod = Object.values(environmentEcsClusterPrefixes('prod'));

const ecs = mockClient(ECSClient);
// Stateful model: agent version per instance; an update moves it to latest.
const latest = '1.90.0';
let agents: Record<string, Record<string, string>>;

function named(name: string, message: string): Error { const e = new Error(message); e.name = name; return e; }

beforeEach(() => {
  agents = { 'prod-unit-shop': { 'ci-1': '1.89.0', 'ci-2': latest }, 'prod-traefik-eu-west-1': { 'ci-3': '1.88.0' } };
  ecs.reset();
  ecs.on(ListClustersCommand).callsFake(() => ({ clusterArns: Object.keys(agents) }));
  ecs.on(ListContainerInstancesCommand).callsFake((i: { cluster: string }) => ({ containerInstanceArns: Object.keys(agents[i.cluster] ?? {}) }));
  ecs.on(UpdateContainerAgentCommand).callsFake((i: UpdateContainerAgentCommandInput) => {
    const c = agents[i.cluster!]!;
    if (i.containerInstance === 'ci-3' && c['ci-3'] === 'broken') throw named('ServerException', 'boom');
    if (c[i.containerInstance!] === latest) throw named('NoUpdateAvailableException', 'up to date');
    c[i.containerInstance!] = latest;
    return {};
  });
});

describe('updateAgents', () => {
  it('updates outdated agents in every cluster and leaves current ones alone', async () => {
    const r = await updateAgents(new ECSClient({ region: 'eu-west-1' }), prod);
    expect(r.requested.sort()).toEqual(['ci-1', 'ci-3']);
    expect(r.upToDate).toEqual(['ci-2']);
    expect(Object.values(agents).flatMap((c) => Object.values(c))).toEqual([latest, latest, latest]);
    const again = await updateAgents(new ECSClient({ region: 'eu-west-1' }), prod);
    expect(again.requested).toEqual([]);
  });
  it('reports a failing instance without stopping the others', async () => {
    agents['prod-traefik-eu-west-1']!['ci-3'] = 'broken';
    const r = await updateAgents(new ECSClient({ region: 'eu-west-1' }), prod);
    expect(r.failed).toEqual([{ instance: 'ci-3', error: 'ServerException: boom' }]);
    expect(r.requested).toEqual(['ci-1']);
  });
  it('updates only its own environment\'s clusters, though another environment has the same cluster names', async () => {
    agents['staging-unit-shop'] = { 'ci-8': '1.80.0' };
    agents['staging-traefik-eu-west-1'] = { 'ci-9': '1.80.0' };
    const r = await updateAgents(new ECSClient({ region: 'eu-west-1' }), prod);
    expect(r.requested.sort()).toEqual(['ci-1', 'ci-3']);
    expect(agents['staging-unit-shop']).toEqual({ 'ci-8': '1.80.0' });
    expect(agents['staging-traefik-eu-west-1']).toEqual({ 'ci-9': '1.80.0' });
    // And its role could not have done otherwise: IAM refuses the other environment's instances.
    const policy = agentUpdatePolicy('eu-west-1', '111122223333', 'prod');
    const instanceArn = (cluster: string, id: string) => `arn:aws:ecs:eu-west-1:111122223333:container-instance/${cluster}/${id}`;
    const clusterArn = (cluster: string) => `arn:aws:ecs:eu-west-1:111122223333:cluster/${cluster}`;
    expect(allows([policy], 'ecs:UpdateContainerAgent', instanceArn('prod-unit-shop', 'ci-1'))).toBe(true);
    expect(allows([policy], 'ecs:UpdateContainerAgent', instanceArn('prod-traefik-eu-west-1', 'ci-3'))).toBe(true);
    expect(allows([policy], 'ecs:UpdateContainerAgent', instanceArn('staging-unit-shop', 'ci-8'))).toBe(false);
    expect(allows([policy], 'ecs:ListContainerInstances', clusterArn('prod-unit-shop'))).toBe(true);
    expect(allows([policy], 'ecs:ListContainerInstances', clusterArn('staging-unit-shop'))).toBe(false);
    // An environment whose name starts like this one's is another environment.
    expect(allows([policy], 'ecs:ListContainerInstances', clusterArn('prod-eu-unit-shop'))).toBe(false);
  });
  it('refuses to run without its environment\'s prefixes rather than update every cluster of the region', async () => {
    expect(() => prefixesFromEnv({})).toThrow(/BERTH_ECS_CLUSTER_PREFIXES is not set/);
    expect(prefixesFromEnv({ BERTH_ECS_CLUSTER_PREFIXES: 'prod-unit-,prod-traefik-' })).toEqual(prod);
    await expect(updateAgents(new ECSClient({ region: 'eu-west-1' }), [])).rejects.toThrow(/refusing/);
  });
});
