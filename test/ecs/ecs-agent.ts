import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { extname } from 'node:path';
import type { ContainerDefinition, DockerVolumeConfiguration } from '@aws-sdk/client-ecs';
import { docker as runDocker } from '../helpers/docker.js';
import type { EcsModel, ModelTask, ModelTaskDefinition } from './ecs-model.js';

/**
 * What the ECS agent on one container instance does with the tasks ECS places
 * there, driving a real Docker engine. Written from amazon-ecs-agent's source
 * (github.com/aws/amazon-ecs-agent at 8dfceca6c); each behaviour names
 * its file. The agent's ACS/TCS websockets are replaced by polling the ECS
 * model (ecs-model.ts), to which it reports task state.
 */
export interface EcsAgentOptions {
  model: EcsModel;
  cluster: string;
  ec2InstanceId: string;
  /** Docker engine of this instance (`unix://…`). */
  dockerHost: string;
  /** Where legacy plugins' sockets live for that engine (/run/docker/plugins on a host). */
  pluginDir: string;
  /** ECS_INSTANCE_ATTRIBUTES, e.g. `{ 'berth.host': 'shop-h1' }`. */
  instanceAttributes: Record<string, string>;
  /**
   * ECS_SHARED_VOLUME_MATCH_FULL_CONFIG: compare an existing shared volume's labels and
   * options with the task's. Default false on Linux (agent/config/config_unix.go:
   * `SharedVolumeMatchFullConfig: BooleanDefaultFalse{Value: ExplicitlyDisabled}`).
   */
  sharedVolumeMatchFullConfig?: boolean;
  /** ECS_CONTAINER_STOP_TIMEOUT (agent/config: 30 s by default): SIGTERM, then SIGKILL after this. */
  containerStopTimeoutSeconds?: number;
  pollMs?: number;
}

interface LocalTask {
  task: ModelTask;
  def: ModelTaskDefinition;
  containers: Map<string, string>;
  /** Task-scoped Docker volumes this task created (removed when it stops). */
  taskVolumes: string[];
  state: 'starting' | 'running' | 'stopping' | 'stopped';
}

export class EcsAgent {
  /** The ecs.capability.docker-plugin.* attributes found at start. */
  capabilities: string[] = [];
  containerInstanceArn = '';
  /** Errors of the last task transitions, newest last (for a test's failure message). */
  readonly errors: string[] = [];
  private readonly local = new Map<string, LocalTask>();
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly o: EcsAgentOptions) {}

  private docker(args: string[]): Promise<string> {
    return runDocker(args, { host: this.o.dockerHost, timeoutMs: 150_000 });
  }

  /**
   * Start: capabilities, then RegisterContainerInstance with the instance
   * attributes. Volume plugin capabilities come from the plugins present now
   * (agent/app/agent_capability_unix.go appendVolumeDriverCapabilities: `local`
   * always, legacy plugins from moby's plugins.Scan() of the plugin directory,
   * managed plugins from ListPlugins(enabled, volumedriver)); a plugin that
   * appears later is advertised only after an agent restart.
   */
  async start(): Promise<void> {
    const caps = new Set(['ecs.capability.docker-plugin.local']);
    // moby pkg/plugins discovery: <name>.sock, <name>.spec and <name>.json in the plugin directory.
    for (const f of await readdir(this.o.pluginDir).catch(() => [])) {
      if (['.sock', '.spec', '.json'].includes(extname(f))) caps.add(`ecs.capability.docker-plugin.${f.slice(0, -extname(f).length).replaceAll(':', '.')}`);
    }
    const managed = await this.docker(['plugin', 'ls', '--filter', 'enabled=true', '--filter', 'capability=volumedriver', '--format', '{{.Name}}']);
    for (const name of managed.split('\n').filter(Boolean)) {
      // A plugin tagged :latest is advertised with and without the tag.
      if (name.endsWith(':latest')) caps.add(`ecs.capability.docker-plugin.${name.slice(0, -':latest'.length).replaceAll(':', '.')}`);
      caps.add(`ecs.capability.docker-plugin.${name.replaceAll(':', '.')}`);
    }
    this.capabilities = [...caps];
    this.containerInstanceArn = this.o.model.registerContainerInstance({
      cluster: this.o.cluster,
      ec2InstanceId: this.o.ec2InstanceId,
      attributes: { ...this.o.instanceAttributes, ...Object.fromEntries(this.capabilities.map((c) => [c, undefined])) },
    });
    this.timer = setInterval(() => this.kick(), this.o.pollMs ?? 250);
    this.kick();
  }

  /** The agent process ends (instance terminated, agent stopped); containers are left as they are. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.busy;
    if (this.containerInstanceArn) this.o.model.setAgentConnected(this.containerInstanceArn, false);
  }

  /** Waits until the work under way is done (for tests). */
  idle(): Promise<void> {
    return this.busy;
  }

  private kick(): void {
    this.busy = this.busy.then(() => (this.stopped ? undefined : this.pass())).catch((err: unknown) => {
      this.errors.push(String(err));
    });
  }

  private async pass(): Promise<void> {
    const m = this.o.model;
    for (const task of m.tasksOn(this.containerInstanceArn)) {
      let l = this.local.get(task.arn);
      if (!l) {
        l = { task, def: m.taskDefinition(task.taskDefinitionArn), containers: new Map(), taskVolumes: [], state: 'starting' };
        this.local.set(task.arn, l);
      }
      if (task.desiredStatus === 'STOPPED' && l.state !== 'stopped') await this.stopTask(l, task.stoppedReason ?? 'Task stopped');
      else if (l.state === 'starting') await this.startTask(l);
      else if (l.state === 'running') await this.checkTask(l);
    }
  }

  /**
   * Task start: volumes (agent/api/task/task.go initializeDockerVolumes), then
   * each container with its mount points (task.go dockerHostBinds:
   * `<DockerVolumeName>:<containerPath>[:ro]`), then RUNNING.
   */
  private async startTask(l: LocalTask): Promise<void> {
    const m = this.o.model;
    m.reportTask(l.task.arn, { lastStatus: 'PENDING' });
    try {
      const sources = new Map<string, string>();
      for (const vol of l.def.volumes ?? []) {
        if (!vol.dockerVolumeConfiguration) throw new Error(`volume ${vol.name}: only dockerVolumeConfiguration volumes are emulated`);
        sources.set(vol.name!, await this.provisionVolume(l, vol.name!, vol.dockerVolumeConfiguration));
      }
      for (const c of l.def.containerDefinitions) l.containers.set(c.name!, await this.runContainer(l, c, sources));
      l.state = 'running';
      m.reportTask(l.task.arn, { lastStatus: 'RUNNING', containers: [...l.containers].map(([name, id]) => ({ name, lastStatus: 'RUNNING', runtimeId: id })) });
    } catch (err) {
      // A container that cannot be created or started stops the task (task.go, CannotStartContainerError/CannotCreateVolumeError).
      const reason = `CannotStartContainerError: ${(err as Error).message}`;
      this.errors.push(reason);
      await this.stopTask(l, reason);
    }
  }

  /**
   * agent/api/task/task.go addSharedVolumes / addTaskScopedVolumes, and
   * agent/taskresource/volume/dockervolume.go Create/Cleanup.
   */
  private async provisionVolume(l: LocalTask, name: string, conf: DockerVolumeConfiguration): Promise<string> {
    if (conf.scope === 'task') {
      // task.go volumeName: "ecs-" + family + "-" + version + "-" + name + "-" + utils.RandHex() (10 random bytes as hex).
      const dockerName = `ecs-${l.def.family}-${l.def.revision}-${name}-${randomBytes(10).toString('hex')}`;
      await this.createVolume(dockerName, conf);
      l.taskVolumes.push(dockerName);
      return dockerName;
    }
    // Shared: `volumeConfig.DockerVolumeName = vol.Name`, the task definition volume's own name.
    const dockerName = name;
    const existing = await this.inspectVolume(dockerName);
    if (!conf.autoprovision) {
      if (!existing) throw new Error(`initialize volume: volume detection failed, volume '${name}' does not exist and autoprovision is set to false`);
      return dockerName;
    }
    if (!existing) {
      await this.createVolume(dockerName, conf);
      return dockerName;
    }
    // Found by name: reused. Labels and options are compared only with ECS_SHARED_VOLUME_MATCH_FULL_CONFIG; the driver never.
    if (this.o.sharedVolumeMatchFullConfig) {
      const labels = conf.labels ?? {};
      const opts = conf.driverOpts ?? {};
      const bothEmpty = (a: object, b: object) => Object.keys(a).length === 0 && Object.keys(b).length === 0;
      if (!bothEmpty(existing.Labels ?? {}, labels) && !sameMap(existing.Labels ?? {}, labels)) {
        throw new Error(`intialize volume: non-autoprovisioned volume does not match existing volume labels: existing: ${JSON.stringify(existing.Labels)}, expected: ${JSON.stringify(labels)}`);
      }
      if (!bothEmpty(existing.Options ?? {}, opts) && !sameMap(existing.Options ?? {}, opts)) {
        throw new Error(`initialize volume: non-autoprovisioned volume does not match existing volume options: existing: ${JSON.stringify(existing.Options)}, expected: ${JSON.stringify(opts)}`);
      }
    }
    return dockerName;
  }

  private async inspectVolume(name: string): Promise<{ Driver: string; Labels: Record<string, string> | null; Options: Record<string, string> | null } | undefined> {
    try {
      return (JSON.parse(await this.docker(['volume', 'inspect', name])) as Array<{ Driver: string; Labels: Record<string, string> | null; Options: Record<string, string> | null }>)[0];
    } catch (err) {
      if (/no such volume/i.test((err as Error).message)) return undefined;
      throw err;
    }
  }

  /** dockervolume.go Create: CreateVolume(name, driver, driverOpts, labels). */
  private async createVolume(name: string, conf: DockerVolumeConfiguration): Promise<void> {
    const args = ['volume', 'create', '--driver', conf.driver ?? 'local'];
    for (const [k, v] of Object.entries(conf.driverOpts ?? {})) args.push('--opt', `${k}=${v}`);
    for (const [k, v] of Object.entries(conf.labels ?? {})) args.push('--label', `${k}=${v}`);
    await this.docker([...args, name]);
  }

  /**
   * agent/engine/docker_task_engine.go createContainer: the name
   * `ecs-<family>-<version>-<container>-<RandHex>`, the com.amazonaws.ecs.* labels
   * beside the task's dockerLabels; bridge mode port mappings with a host port
   * Docker picks when the task gives none.
   */
  private async runContainer(l: LocalTask, c: ContainerDefinition, sources: Map<string, string>): Promise<string> {
    const name = `ecs-${l.def.family}-${l.def.revision}-${c.name!}-${randomBytes(10).toString('hex')}`;
    const args = ['run', '-d', '--name', name,
      '--label', `com.amazonaws.ecs.task-arn=${l.task.arn}`, '--label', `com.amazonaws.ecs.container-name=${c.name!}`,
      '--label', `com.amazonaws.ecs.task-definition-family=${l.def.family}`, '--label', `com.amazonaws.ecs.task-definition-version=${l.def.revision}`,
      '--label', `com.amazonaws.ecs.cluster=${this.o.cluster}`];
    for (const [k, v] of Object.entries(c.dockerLabels ?? {})) args.push('--label', `${k}=${v}`);
    for (const mp of c.mountPoints ?? []) {
      const source = sources.get(mp.sourceVolume!);
      // task.go dockerHostBinds: "Invalid volume referenced: <name>".
      if (!source) throw new Error(`Invalid volume referenced: ${mp.sourceVolume}`);
      args.push('-v', `${source}:${mp.containerPath!}${mp.readOnly ? ':ro' : ''}`);
    }
    for (const p of c.portMappings ?? []) args.push('-p', `${p.hostPort ? `${p.hostPort}:` : ''}${p.containerPort}/${p.protocol ?? 'tcp'}`);
    for (const e of c.environment ?? []) args.push('-e', `${e.name}=${e.value}`);
    if (c.healthCheck?.command) {
      const [kind, ...rest] = c.healthCheck.command;
      // The docker CLI takes the shell form only; the CMD form's arguments are joined (good enough for the checks tests use).
      if (kind !== 'CMD' && kind !== 'CMD-SHELL') throw new Error(`healthCheck.command must start with CMD or CMD-SHELL, not ${String(kind)}`);
      args.push('--health-cmd', rest.join(' '));
      if (c.healthCheck.interval) args.push('--health-interval', `${c.healthCheck.interval}s`);
      if (c.healthCheck.timeout) args.push('--health-timeout', `${c.healthCheck.timeout}s`);
      if (c.healthCheck.retries) args.push('--health-retries', String(c.healthCheck.retries));
      if (c.healthCheck.startPeriod) args.push('--health-start-period', `${c.healthCheck.startPeriod}s`);
    }
    args.push('--network', 'bridge', c.image!, ...(c.command ?? []));
    try {
      return await this.docker(args);
    } catch (err) {
      // `docker run` leaves a created container behind when its start fails.
      await this.docker(['rm', '-f', name]).catch(() => undefined);
      throw err;
    }
  }

  /** An essential container that exits stops the task ("Essential container in task exited"), and the service starts another. */
  private async checkTask(l: LocalTask): Promise<void> {
    for (const [cname, id] of l.containers) {
      const out = await this.docker(['inspect', '--format', '{{.State.Running}} {{.State.ExitCode}}', id]).catch(() => 'false -1');
      const [running, code] = out.split(' ');
      if (running !== 'true') {
        const essential = l.def.containerDefinitions.find((c) => c.name === cname)?.essential !== false;
        if (essential) {
          await this.stopTask(l, 'Essential container in task exited', { [cname]: Number(code) });
          return;
        }
      }
    }
  }

  /**
   * Stop: `docker stop` with ECS_CONTAINER_STOP_TIMEOUT, report STOPPED, then
   * clean up. The agent removes a stopped task's containers after
   * ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION (3 h by default) and its task-scoped
   * volumes with them (dockervolume.go Cleanup: `if scope != task, not
   * removing`); this harness cleans up at once, as with a wait of 0.
   * Shared volumes are never removed.
   */
  private async stopTask(l: LocalTask, reason: string, exitCodes: Record<string, number> = {}): Promise<void> {
    l.state = 'stopping';
    const t = String(this.o.containerStopTimeoutSeconds ?? 30);
    for (const id of l.containers.values()) await this.docker(['stop', '-t', t, id]).catch(() => undefined);
    this.o.model.reportTask(l.task.arn, {
      lastStatus: 'STOPPED', stoppedReason: reason,
      containers: [...l.containers].map(([name, id]) => ({ name, lastStatus: 'STOPPED', runtimeId: id, ...(exitCodes[name] !== undefined ? { exitCode: exitCodes[name] } : {}) })),
    });
    for (const id of l.containers.values()) await this.docker(['rm', '-f', id]).catch(() => undefined);
    for (const v of l.taskVolumes) await this.docker(['volume', 'rm', v]).catch((err: unknown) => this.errors.push(`remove task volume ${v}: ${String(err)}`));
    l.state = 'stopped';
  }
}

function sameMap(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}
