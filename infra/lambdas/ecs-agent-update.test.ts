import { ECSClient, ListClustersCommand, ListContainerInstancesCommand, UpdateContainerAgentCommand, type UpdateContainerAgentCommandInput } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { updateAgents } from './ecs-agent-update.js';

const ecs = mockClient(ECSClient);
// Stateful model: agent version per instance; an update moves it to latest.
const latest = '1.90.0';
let agents: Record<string, Record<string, string>>;

function named(name: string, message: string): Error { const e = new Error(message); e.name = name; return e; }

beforeEach(() => {
  agents = { 'c-eu': { 'ci-1': '1.89.0', 'ci-2': latest }, 'c-us': { 'ci-3': '1.88.0' } };
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
    const r = await updateAgents(new ECSClient({ region: 'eu-west-1' }));
    expect(r.requested.sort()).toEqual(['ci-1', 'ci-3']);
    expect(r.upToDate).toEqual(['ci-2']);
    expect(Object.values(agents).flatMap((c) => Object.values(c))).toEqual([latest, latest, latest]);
    const again = await updateAgents(new ECSClient({ region: 'eu-west-1' }));
    expect(again.requested).toEqual([]);
  });
  it('reports a failing instance without stopping the others', async () => {
    agents['c-us']!['ci-3'] = 'broken';
    const r = await updateAgents(new ECSClient({ region: 'eu-west-1' }));
    expect(r.failed).toEqual([{ instance: 'ci-3', error: 'ServerException: boom' }]);
    expect(r.requested).toEqual(['ci-1']);
  });
});
