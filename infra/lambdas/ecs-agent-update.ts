import { ECSClient, UpdateContainerAgentCommand, paginateListClusters, paginateListContainerInstances } from '@aws-sdk/client-ecs';

export interface AgentUpdateResult {
  readonly requested: string[];
  readonly upToDate: string[];
  readonly failed: { readonly instance: string; readonly error: string }[];
}

/** An ECS cluster's name from its ARN (`arn:aws:ecs:<region>:<account>:cluster/<name>`), or the name itself. */
const clusterName = (arnOrName: string) => arnOrName.slice(arnOrName.lastIndexOf('/') + 1);

/**
 * The environment's clusters only: `prefixes` are its ECS cluster name prefixes
 * (`<environment>-unit-`, `<environment>-traefik-`; infra/components/naming.ts), passed by the
 * regional program as BERTH_ECS_CLUSTER_PREFIXES. Another environment in the account and region
 * is not this job's business, and its policy would refuse it anyway.
 */
export function ownClusters(clusterArns: readonly string[], prefixes: readonly string[]): string[] {
  return clusterArns.filter((arn) => prefixes.some((p) => clusterName(arn).startsWith(p)));
}

/** Daily: asks ECS to update the container agent on every active instance of the environment's clusters. */
export async function updateAgents(ecs: ECSClient, prefixes: readonly string[]): Promise<AgentUpdateResult> {
  if (prefixes.length === 0 || prefixes.some((p) => p === '')) throw new Error('updateAgents: no ECS cluster prefixes: refusing to update every cluster of the region');
  const result = { requested: [] as string[], upToDate: [] as string[], failed: [] as { instance: string; error: string }[] };
  for await (const page of paginateListClusters({ client: ecs }, {})) {
    for (const cluster of ownClusters(page.clusterArns ?? [], prefixes)) {
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

/** BERTH_ECS_CLUSTER_PREFIXES: comma-separated; required (without it the job would touch every environment). */
export function prefixesFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const prefixes = (env['BERTH_ECS_CLUSTER_PREFIXES'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (prefixes.length === 0) throw new Error('BERTH_ECS_CLUSTER_PREFIXES is not set: this job updates only its own environment\'s clusters and will not guess them');
  return prefixes;
}

export async function handler(): Promise<AgentUpdateResult> {
  const result = await updateAgents(new ECSClient({}), prefixesFromEnv());
  console.log(JSON.stringify({ msg: 'ecs agent update', requested: result.requested.length, upToDate: result.upToDate.length, failed: result.failed }));
  if (result.failed.length > 0) throw new Error(`agent update failed on ${result.failed.length} instance(s): ${result.failed.map((f) => f.instance).join(', ')}`);
  return result;
}
