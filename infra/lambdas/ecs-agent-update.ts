import { ECSClient, UpdateContainerAgentCommand, paginateListClusters, paginateListContainerInstances } from '@aws-sdk/client-ecs';

export interface AgentUpdateResult {
  readonly requested: string[];
  readonly upToDate: string[];
  readonly failed: { readonly instance: string; readonly error: string }[];
}

/** Daily: asks ECS to update the container agent on every active instance of every cluster. */
export async function updateAgents(ecs: ECSClient): Promise<AgentUpdateResult> {
  const result = { requested: [] as string[], upToDate: [] as string[], failed: [] as { instance: string; error: string }[] };
  for await (const page of paginateListClusters({ client: ecs }, {})) {
    for (const cluster of page.clusterArns ?? []) {
      for await (const ci of paginateListContainerInstances({ client: ecs }, { cluster, status: 'ACTIVE' })) {
        for (const instance of ci.containerInstanceArns ?? []) {
          try {
            await ecs.send(new UpdateContainerAgentCommand({ cluster, containerInstance: instance }));
            result.requested.push(instance);
          } catch (e) {
            const err = e as Error;
            if (err.name === 'NoUpdateAvailableException') result.upToDate.push(instance);
            // An update already running is fine; the next day's run checks again.
            else if (err.name === 'UpdateInProgressException') result.upToDate.push(instance);
            else result.failed.push({ instance, error: `${err.name}: ${err.message}` });
          }
        }
      }
    }
  }
  return result;
}

export async function handler(): Promise<AgentUpdateResult> {
  const result = await updateAgents(new ECSClient({}));
  console.log(JSON.stringify({ msg: 'ecs agent update', requested: result.requested.length, upToDate: result.upToDate.length, failed: result.failed }));
  if (result.failed.length > 0) throw new Error(`agent update failed on ${result.failed.length} instance(s): ${result.failed.map((f) => f.instance).join(', ')}`);
  return result;
}

