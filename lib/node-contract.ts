/**
 * What infra (Pulumi), ECS and berth must agree on about a node, in one place
 * that both sides import: tag keys, the Docker volume name, the host name and
 * the driver options a node's volume is created with. No Pulumi, no AWS SDK:
 * the agent bundle and the infra workspace both load it.
 *
 * The chain (docs/deploy.md, "One node's life"): infra declares an EBS volume
 * tagged `<prefix>volume = nodeVolumeName(cluster, node)`; the node's task
 * definition declares a volume with that same `name` and `scope: shared`,
 * which ECS uses as the Docker volume name (amazon-ecs-agent
 * `agent/api/task/task.go`, docs/design.md §11); Docker asks berth for that
 * name; berth finds the EBS volume by the tag.
 */

/** Tag prefix berth uses unless configured otherwise (`BERTH_TAG_PREFIX`). */
export const DEFAULT_TAG_PREFIX = 'berth:';

/** Value of `<prefix>managed-by` on every volume berth may touch. */
export const MANAGED_BY = 'berth';

/** Docker volume driver (plugin) name berth registers by default (`BERTH_PLUGIN_NAME`). */
export const DEFAULT_DRIVER = 'berth';

/** ECS container instance attribute naming the logical host; node services are placed by it. */
export const HOST_ATTRIBUTE = 'berth.host';

/** Value of `<prefix>ready` on an instance once every volume tagged to its host is mounted. */
export const READY = 'true';
/** Values of `<prefix>state` on a volume. */
export const VOLUME_STATE = { mounted: 'mounted', idle: 'idle', errorPrefix: 'error:' } as const;

/** Every tag key berth reads or writes, for one prefix. */
export function tagKeys(prefix: string = DEFAULT_TAG_PREFIX) {
  return {
    /** Volume: its Docker volume name. */
    volume: `${prefix}volume`,
    /** Volume and instance: the logical host (stable across instance replacement). */
    host: `${prefix}host`,
    cluster: `${prefix}cluster`,
    managedBy: `${prefix}managed-by`,
    /** Volume: the options it was created with. */
    options: `${prefix}options`,
    /** Instance: `true` once every volume tagged to its host is mounted. */
    ready: `${prefix}ready`,
    readyCount: `${prefix}ready-count`,
    /** Volume: the instance it is mounted on. */
    attachedTo: `${prefix}attached-to`,
    /** Volume: `mounted`, `idle` or `error:<reason>`. */
    state: `${prefix}state`,
    // Zone moves (issue 22; docs/design.md §6, "Zone moves"):
    /** Volume: the journal of a move of this volume to another zone (`step=… to=… id=…`; zone-move.ts). */
    move: `${prefix}move`,
    /** Snapshot and new volume of a move: `<source volume id> <move id>`, how a resumed move finds them. */
    moveOf: `${prefix}move-of`,
    /** Volume: retired by a move (ISO date); never live again, kept until `retain-until`. */
    retired: `${prefix}retired`,
    /** Retired volume: the name it carried. */
    retiredVolume: `${prefix}retired-volume`,
    /** Retired volume and a move's snapshot: the date (ISO) until which they are kept. */
    retainUntil: `${prefix}retain-until`,
  };
}

export type TagKeys = ReturnType<typeof tagKeys>;

/**
 * How long a volume retired by a zone move, and the move's snapshot, are kept (the `retain-until`
 * tag). berth never deletes them; an operator does, after this date (docs/operations.md, "Move a
 * node to another zone").
 */
export const MOVE_RETENTION_DAYS = 14;

/**
 * The Docker volume name of a node, unique per cluster and node: the EBS
 * volume's `<prefix>volume` tag and the task definition volume's `name`.
 */
export function nodeVolumeName(cluster: string, node: string): string {
  return `${cluster}-${node}`;
}

/** The ECS service name of a node (unique in its cluster's ECS cluster; the control plane looks it up by this). */
export function nodeServiceName(cluster: string, node: string): string {
  return nodeVolumeName(cluster, node);
}

/** A node's DNS name: scoped by cluster, so two clusters may both have a node `db1`. */
export function nodeHostName(node: string, cluster: string, zone: string): string {
  return `${node}.${cluster}.${zone}`;
}

/** The EBS volume type infra creates node volumes with. */
export const NODE_VOLUME_TYPE = 'gp3';

/**
 * The driver options (ECS `driverOpts`) of a node's volume: a whole number of
 * GiB, as EBS needs, and the volume type infra created it with. No `name`
 * (the name is the Docker volume name) and no key infra does not also set on
 * the EBS volume: berth compares given options with the volume's.
 */
export function nodeDriverOpts(args: { sizeGiB: number; type?: string }): Record<string, string> {
  return { size: `${args.sizeGiB}GiB`, type: args.type ?? NODE_VOLUME_TYPE };
}

/** Tags infra puts on a node's EBS volume, so berth on the node's host finds it. */
export function nodeVolumeTags(args: { cluster: string; node: string; host: string; prefix?: string }): Record<string, string> {
  const k = tagKeys(args.prefix);
  const name = nodeVolumeName(args.cluster, args.node);
  return { [k.volume]: name, [k.host]: args.host, [k.cluster]: args.cluster, [k.managedBy]: MANAGED_BY, Name: name };
}
