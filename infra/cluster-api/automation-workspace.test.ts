import { ECSClient } from '@aws-sdk/client-ecs';
import { EC2Client } from '@aws-sdk/client-ec2';
import * as pulumi from '@pulumi/pulumi';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { countByType, recordResources, settled, type Declared } from '../test/pulumi-mocks.js';
import { resolveAll } from '../test/program-checks.js';
import { mockShopReady } from '../test/ready-cluster.js';
import { ClusterApi } from './cluster-api.js';
import { AutomationWorkspace, unitStackArgs, type StackFactory, type UnitSettings, type UnitStack } from './automation-workspace.js';
import type { ClusterSpec } from './invariants.js';

const settings: UnitSettings = { regions: ['eu-west-1', 'us-east-1'], regionalStack: 'acme/berth-regional/regional-{region}', zone: 'example.com', nodeImage: 'app:1', nodePort: 8080 };
const spec: ClusterSpec = { name: 'shop', region: 'eu-west-1', hosts: ['shop-h1'], nodes: [{ name: 'db1', host: 'shop-h1' }] };

/**
 * Stacks as the Automation API keeps them, without the CLI: config per stack, calls in order.
 * `up` runs the stack's inline program (the real unit program) under the test's mocks with the
 * stack's config, and records its outputs only when the program completes, as Pulumi does.
 */
class RecordingFactory implements StackFactory {
  readonly stacks = new Map<string, pulumi.automation.ConfigMap>();
  readonly outputs = new Map<string, pulumi.automation.OutputMap>();
  readonly calls: string[] = [];
  programs: Array<pulumi.automation.InlineProgramArgs> = [];
  failDestroy = false;
  /** The next `up` fails this way after running the program (a resource AWS refused). */
  failUp: Error | undefined;
  readonly events: pulumi.automation.EngineEvent[] = [];

  private stack(args: pulumi.automation.InlineProgramArgs): UnitStack {
    const name = args.stackName;
    return {
      name,
      setAllConfig: (c) => { this.calls.push(`setAllConfig ${name}`); this.stacks.set(name, { ...this.stacks.get(name), ...c }); return Promise.resolve(); },
      getAllConfig: () => Promise.resolve(this.stacks.get(name) ?? {}),
      outputs: () => Promise.resolve(this.outputs.get(name) ?? {}),
      up: async (opts) => {
        this.calls.push(`up ${name}`);
        pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(this.stacks.get(name) ?? {}).map(([k, v]) => [k, v.value])));
        const out = await resolveAll((await args.program()) as Record<string, unknown>);
        await settled(declared);
        const event = { sequence: 1, timestamp: 0, resourcePreEvent: { metadata: { op: 'create', urn: `urn:pulumi:${name}::berth-unit::aws:ecs/service:Service::${name}-db1`, type: 'aws:ecs/service:Service' } } } as pulumi.automation.EngineEvent;
        opts?.onEvent?.(event);
        if (this.failUp) {
          const err = this.failUp;
          this.failUp = undefined;
          throw err;
        }
        this.outputs.set(name, Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { value: v, secret: false }])));
        return {} as pulumi.automation.UpResult;
      },
      destroy: () => {
        this.calls.push(`destroy ${name}`);
        return this.failDestroy ? Promise.reject(new Error('refusing to delete protected resource')) : Promise.resolve({} as pulumi.automation.DestroyResult);
      },
      workspace: { removeStack: (n) => { this.calls.push(`removeStack ${n}`); this.stacks.delete(n); this.outputs.delete(n); return Promise.resolve(); } },
    };
  }
  createOrSelectStack(args: pulumi.automation.InlineProgramArgs) {
    this.calls.push(`createOrSelect ${args.projectName}/${args.stackName}`);
    this.programs.push(args);
    if (!this.stacks.has(args.stackName)) this.stacks.set(args.stackName, {});
    return Promise.resolve(this.stack(args));
  }
  selectStack(args: pulumi.automation.InlineProgramArgs) {
    this.calls.push(`select ${args.stackName}`);
    if (!this.stacks.has(args.stackName)) return Promise.reject(Object.assign(new Error(`no stack named '${args.stackName}' found`), { name: 'StackNotFoundError' }));
    return Promise.resolve(this.stack(args));
  }
  listStacks(projectName: string) {
    this.calls.push(`list ${projectName}`);
    return Promise.resolve([...this.stacks.keys()]);
  }
}

let declared: Declared[] = [];
beforeAll(() => {
  declared = recordResources({
    stacks: {
      'acme/berth-regional/regional-eu-west-1': {
        privateSubnetIds: ['subnet-a', 'subnet-b', 'subnet-c'], privateSubnetAzs: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
        securityGroupId: 'sg-eu', artifactUri: 's3://berth-artifacts/berth/build-1.tar.gz', ebsKeyArn: 'arn:aws:kms:eu-west-1:1:key/ebs',
        bucketKeyArn: 'arn:aws:kms:eu-west-1:1:key/b', environment: 'prod', zoneId: 'Z1', traefikIp: '203.0.113.10',
      },
    },
    calls: {
      'aws:index/getCallerIdentity:getCallerIdentity': () => ({ accountId: '111122223333', arn: 'arn', userId: 'u', id: '111122223333' }),
      'aws:ssm/getParameter:getParameter': (i) => ({ name: i['name'], value: 'ami-0ecs2023', type: 'String' }),
    },
  });
});

let factory: RecordingFactory;
beforeEach(() => {
  factory = new RecordingFactory();
});

describe('unitStackArgs', () => {
  it('names the stack after the cluster and carries the spec and settings as config', () => {
    const args = unitStackArgs(spec, { ...settings, swapMiB: 512 });
    expect(args.stackName).toBe('shop');
    expect(args.projectName).toBe('berth-unit');
    expect(args.config).toEqual({
      'aws:region': { value: 'eu-west-1' },
      'berth:cluster': { value: JSON.stringify(spec) },
      'berth:regions': { value: '["eu-west-1","us-east-1"]' },
      'berth:regionalStack': { value: 'acme/berth-regional/regional-eu-west-1' },
      'berth:zone': { value: 'example.com' },
      'berth:nodeImage': { value: 'app:1' },
      'berth:nodePort': { value: '8080' },
      'berth:swapMiB': { value: '512' },
    });
  });
  it('refuses a regional stack template without {region} and a cluster name unfit for a stack', () => {
    expect(() => unitStackArgs(spec, { ...settings, regionalStack: 'acme/berth-regional/eu' })).toThrow(/must contain \{region\}/);
    expect(() => unitStackArgs({ ...spec, name: 'Shop/1' }, settings)).toThrow(/cluster name "Shop\/1"/);
  });
});

describe('AutomationWorkspace', () => {
  it('apply selects the cluster stack, sets its config and runs up; the inline program is the unit program', async () => {
    const ws = new AutomationWorkspace(settings, factory);
    const before = declared.length;
    await ws.apply(spec);
    expect(factory.calls).toEqual(['createOrSelect berth-unit/shop', 'setAllConfig shop', 'up shop']);
    expect(factory.stacks.get('shop')).toEqual(unitStackArgs(spec, settings).config);
    // up ran the unit program with that config: its outputs and resources are the real program's.
    expect(factory.outputs.get('shop')).toMatchObject({ cluster: { value: 'shop' }, region: { value: 'eu-west-1' }, fqdns: { value: ['shop.example.com', 'db1-shop.example.com'] } });
    const n = countByType(declared.slice(before));
    expect([n['aws:autoscaling/group:Group'], n['aws:ebs/volume:Volume'], n['aws:ecs/service:Service']]).toEqual([1, 1, 1]);
  });
  it('read returns the deployed spec, and nothing for a cluster without a stack', async () => {
    const ws = new AutomationWorkspace(settings, factory);
    expect(await ws.read('shop')).toBeUndefined();
    await ws.apply(spec);
    // ...and the region's zones, in the order the program places hosts by (moveNode's zone of a host).
    expect(await ws.read('shop')).toEqual({ deployed: spec, desired: spec, zones: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'] });
  });
  it('after a failed up, read says what is deployed, not what was asked for', async () => {
    const ws = new AutomationWorkspace(settings, factory);
    await ws.apply(spec);
    const bigger: ClusterSpec = { ...spec, hosts: [...spec.hosts, 'shop-h2'], nodes: [...spec.nodes, { name: 'db2', host: 'shop-h2' }] };
    factory.failUp = new Error('error: creating EC2 Launch Template: UnauthorizedOperation');
    await expect(ws.apply(bigger)).rejects.toThrow(/UnauthorizedOperation/);
    expect(await ws.read('shop')).toEqual({ deployed: spec, desired: bigger, zones: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'] });
  });
  it('passes Pulumi engine events of up to the caller, and lists the project stacks', async () => {
    const ws = new AutomationWorkspace(settings, factory);
    const seen: string[] = [];
    await ws.apply(spec, { onEvent: (e) => seen.push(e.resourcePreEvent?.metadata.type ?? '?') });
    expect(seen).toEqual(['aws:ecs/service:Service']);
    expect(await ws.list()).toEqual(['shop']);
  });
  it('read refuses a stack the API did not make, and passes other failures on', async () => {
    factory.stacks.set('manual', {});
    await expect(new AutomationWorkspace(settings, factory).read('manual')).rejects.toThrow(/not made by the cluster API/);
    const broken: StackFactory = { selectStack: () => Promise.reject(new Error('backend unreachable')), createOrSelectStack: factory.createOrSelectStack.bind(factory), listStacks: factory.listStacks.bind(factory) };
    await expect(new AutomationWorkspace(settings, broken).read('shop')).rejects.toThrow(/backend unreachable/);
  });
  it('destroy removes the stack after destroying it; a failed destroy (protected volumes) keeps the stack', async () => {
    const ws = new AutomationWorkspace(settings, factory);
    await ws.destroy('absent');
    expect(factory.calls).toEqual(['select absent']);
    await ws.apply(spec);
    factory.failDestroy = true;
    await expect(ws.destroy('shop')).rejects.toThrow(/protected/);
    expect(factory.stacks.has('shop')).toBe(true);
    factory.failDestroy = false;
    await ws.destroy('shop');
    expect(factory.calls.slice(-3)).toEqual(['select shop', 'destroy shop', 'removeStack shop']);
    expect(factory.stacks.has('shop')).toBe(false);
  });
  it('serves ClusterApi: create applies a new stack, a second create is refused, an invalid shrink never reaches the stack', async () => {
    const ready = mockShopReady();
    const api = new ClusterApi({ environment: 'prod',
      workspace: new AutomationWorkspace(settings, factory), regions: settings.regions, sleep: () => Promise.resolve(),
      ec2: () => new EC2Client({ region: 'eu-west-1' }), ecs: () => new ECSClient({ region: 'eu-west-1' }),
    });
    await api.create(spec);
    // Before anything is applied, the other stacks of the project are listed (their names are checked against the new ones).
    expect(factory.calls).toEqual(['select shop', 'list berth-unit', 'createOrSelect berth-unit/shop', 'setAllConfig shop', 'up shop', 'select shop']);
    await expect(api.create(spec)).rejects.toThrow(/already exists/);
    await expect(api.update({ ...spec, hosts: [], nodes: [] })).rejects.toThrow(/at least one node/);
    expect(factory.calls.filter((c) => c.startsWith('up '))).toHaveLength(1);
    // A cluster whose name is shop's node label: refused after reading shop's stack, and no stack of its own is made.
    factory.calls.length = 0;
    await expect(api.create({ name: 'db1-shop', region: 'eu-west-1', hosts: ['h1'], nodes: [{ name: 'n1', host: 'h1' }] }))
      .rejects.toThrow(/^cluster db1-shop would publish db1-shop\.<zone>, which node db1 of cluster shop publishes/);
    expect(factory.calls).toEqual(['select db1-shop', 'list berth-unit', 'select shop']);
    expect([...factory.stacks.keys()]).toEqual(['shop']);
    ready.restore();
  });
});
