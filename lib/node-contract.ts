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
/**
 * Values of `<prefix>state` on a volume: `attaching` while berth waits for EC2 to take its attach
 * (the account's API budget, a brownout: waiting helps), `error:<reason>` when it failed otherwise.
 */
export const VOLUME_STATE = { mounted: 'mounted', idle: 'idle', attaching: 'attaching', errorPrefix: 'error:' } as const;

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
    /**
     * Volume, instance, ECS cluster, node container (Docker label): the environment
     * (`berth:environment` of the global stack). Two environments may share an account
     * and region and even cluster, host and node names; every lookup, IAM condition,
     * DLM target and Traefik constraint keys on it (docs/deploy.md, "Environments").
     */
    environment: `${prefix}environment`,
    /** Instance and Elastic IP of a region's Traefik host: `traefik`. */
    role: `${prefix}role`,
    /** Snapshot DLM took (`dlm`). */
    snapshot: `${prefix}snapshot`,
    /** Descriptive tags infra puts on what it declares (bucket purpose, image, key purpose, subnet tier). */
    purpose: `${prefix}purpose`,
    image: `${prefix}image`,
    key: `${prefix}key`,
    tier: `${prefix}tier`,
  };
}

/** Value of `<prefix>role` on a region's Traefik host (its instance and Elastic IP). */
export const TRAEFIK_ROLE = 'traefik';

/**
 * An environment's name: 1-20 lowercase letters, digits or `-`, starting with a letter. It is a
 * tag value, a prefix of ECS cluster names, task families, ECR repositories, KMS aliases and log
 * groups, and part of a Traefik constraint, so the one rule is checked here, where the agent
 * (`BERTH_ENVIRONMENT`) and infra (`berth:environment`) both read it.
 */
export const ENVIRONMENT_PATTERN = /^[a-z](?:[a-z0-9-]{0,18}[a-z0-9])?$/;

/**
 * Words an environment name may not contain: ECS clusters are `<environment>-unit-<cluster>` and
 * `<environment>-traefik-<region>`, so an environment `a-unit-b` would own names of environment
 * `a` (its cluster `b-unit-c`), and the agent-update job of `a` would reach into it.
 */
export const ENVIRONMENT_RESERVED_WORDS = ['unit', 'traefik'] as const;

export function validateEnvironment(env: string): string {
  if (!ENVIRONMENT_PATTERN.test(env)) {
    throw new Error(`environment "${env}" must be 1-20 lowercase letters, digits or "-", starting with a letter and not ending with "-" (it prefixes ECR repositories, KMS aliases, log groups, ECS clusters and task families)`);
  }
  const word = ENVIRONMENT_RESERVED_WORDS.find((w) => env.split('-').includes(w));
  if (word) throw new Error(`environment "${env}" must not contain the word "${word}": ECS cluster names are <environment>-unit-<cluster> and <environment>-traefik-<region>, and must tell environments apart`);
  return env;
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

/**
 * A node's DNS label, `<node>-<cluster>`: one label directly under the zone, so the zone's
 * wildcard certificate `*.<zone>` covers it (a wildcard matches exactly one label, RFC 6125
 * §6.4.3), and scoped by cluster, so two clusters may both have a node `db1`. At most 63
 * octets (RFC 1035 §2.3.4): `nodeHostLabelProblem` says when it is longer.
 */
export function nodeHostLabel(node: string, cluster: string): string {
  return `${node}-${cluster}`;
}

/** RFC 1035 §2.3.4: a label is at most 63 octets. */
export const DNS_LABEL_MAX = 63;

/** Why a node's DNS label cannot be published, or undefined when it can. */
export function nodeHostLabelProblem(node: string, cluster: string): string | undefined {
  const label = nodeHostLabel(node, cluster);
  if (label.length <= DNS_LABEL_MAX) return undefined;
  return `node ${node} of cluster ${cluster}: its DNS label "${label}" (<node>-<cluster>) is ${label.length} characters, over DNS's ${DNS_LABEL_MAX}; node and cluster names together may have at most ${DNS_LABEL_MAX - 1} characters`;
}

/** A cluster's own DNS label, `<cluster>`: its latency-routed record `<cluster>.<zone>`. */
export function clusterHostLabel(cluster: string): string {
  return cluster;
}

/** One label a cluster publishes directly under its environment's zone, and what it names. */
export interface PublishedLabel {
  readonly label: string;
  readonly cluster: string;
  /** The node the label names; undefined for the cluster's own (latency-routed) label. */
  readonly node: string | undefined;
}

/**
 * Every label a cluster publishes under its zone: `<cluster>` and `<node>-<cluster>` for each
 * node, in that order; the one list the unit program declares records for and the cluster API
 * checks across clusters. Within one cluster they are distinct (every node label ends in
 * `-<cluster>`), but `-` joins names that may contain `-`, so across clusters the map is not
 * one to one: node `a-b` of cluster `c` and node `a` of cluster `b-c` are both `a-b-c`, and so
 * is cluster `a-b-c`'s own label (`labelCollisions`; docs/deploy.md, "Names and the certificate").
 */
export function clusterPublishedLabels(cluster: string, nodes: readonly string[]): PublishedLabel[] {
  return [
    { label: clusterHostLabel(cluster), cluster, node: undefined },
    ...nodes.map((node) => ({ label: nodeHostLabel(node, cluster), cluster, node })),
  ];
}

/** What a published label names, for a sentence: `cluster shop` or `node db1 of cluster shop`. */
export function labelOwner(l: PublishedLabel): string {
  return l.node === undefined ? `cluster ${l.cluster}` : `node ${l.node} of cluster ${l.cluster}`;
}

/** A label two clusters would both publish. */
export interface LabelCollision {
  readonly label: string;
  readonly mine: PublishedLabel;
  readonly other: PublishedLabel;
}

/** Each label of `mine` that another cluster's label in `others` equals (labels of mine's own cluster are skipped). */
export function labelCollisions(mine: readonly PublishedLabel[], others: readonly PublishedLabel[]): LabelCollision[] {
  const byLabel = new Map<string, PublishedLabel>();
  for (const o of others) if (!byLabel.has(o.label)) byLabel.set(o.label, o);
  const found: LabelCollision[] = [];
  for (const m of mine) {
    const other = byLabel.get(m.label);
    if (other && other.cluster !== m.cluster) found.push({ label: m.label, mine: m, other });
  }
  return found;
}

/**
 * Whether a cluster named `cluster` can publish `label` at all: its labels are `<cluster>` and
 * `<node>-<cluster>`, so only when `label` is its name or ends in `-<cluster>`. The cluster API
 * reads only the stacks of such clusters when it checks a change's new labels.
 */
export function mayPublishLabel(cluster: string, label: string): boolean {
  return label === clusterHostLabel(cluster) || label.endsWith(`-${cluster}`);
}

/** A node's DNS name, `<node>-<cluster>.<zone>`: the name Traefik routes and the certificate `*.<zone>` covers. */
export function nodeHostName(node: string, cluster: string, zone: string): string {
  return `${nodeHostLabel(node, cluster)}.${zone}`;
}

/**
 * A node's id across the account: its ECS task family and the name of its Traefik routers.
 * `_` joins the parts because no environment, cluster or node name contains one, so two
 * different (environment, cluster, node) never share an id (ECS family names allow letters,
 * digits, `-` and `_`, up to 255 characters: 20 + 63 + 63 + 2 fit).
 */
export function nodeQualifiedId(environment: string, cluster: string, node: string): string {
  return `${environment}_${cluster}_${node}`;
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

/** Tags infra puts on a node's EBS volume, so berth on the node's host (same environment and cluster) finds it. */
export function nodeVolumeTags<E = string>(args: { environment: E; cluster: string; node: string; host: string; prefix?: string }): Record<string, string | E> {
  const k = tagKeys(args.prefix);
  const name = nodeVolumeName(args.cluster, args.node);
  return { [k.volume]: name, [k.host]: args.host, [k.cluster]: args.cluster, [k.environment]: args.environment, [k.managedBy]: MANAGED_BY, Name: name };
}

/** Tags infra puts on a host's instances (through its Auto Scaling group): who it is and where it belongs. */
export function hostInstanceTags<E = string>(args: { environment: E; cluster: string; host: string; prefix?: string }): Record<string, string | E> {
  const k = tagKeys(args.prefix);
  return { [k.cluster]: args.cluster, [k.host]: args.host, [k.environment]: args.environment };
}
