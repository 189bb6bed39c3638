import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RegisterTaskDefinitionCommandInput } from '@aws-sdk/client-ecs';
import { nodeVolumeName } from '../lib/node-contract.js';
import { describe, expect, it } from 'vitest';
import { EBS_OPTIONS } from '../volume-plugin/backends/ebs/ebs-options.js';
import { parseGivenOptions } from '../volume-plugin/options.js';

const examples = join(import.meta.dirname, '..', 'examples');
const read = (f: string) => readFileSync(join(examples, f), 'utf8');

describe('ECS example', () => {
  // The SDK's input type names the fields; a JSON import widens enums to string, so the checks below are at run time.
  const task: RegisterTaskDefinitionCommandInput = JSON.parse(read('ecs/task-definition.json'));

  it('uses berth for every docker volume, autoprovisioning only shared ones, with options berth accepts', () => {
    const volumes = task.volumes ?? [];
    expect(volumes.length).toBeGreaterThan(0);
    for (const v of volumes) {
      const conf = v.dockerVolumeConfiguration!;
      expect(conf.driver).toBe('berth');
      expect(['shared', 'task']).toContain(conf.scope);
      if (conf.autoprovision) expect(conf.scope).toBe('shared'); // ECS refuses autoprovision on task scope
      expect(() => parseGivenOptions(conf.driverOpts ?? {}, EBS_OPTIONS)).not.toThrow();
    }
    // With scope shared ECS names the Docker volume after the task volume: it must be the node's own name (lib/node-contract.ts), never a shared 'data'.
    expect(volumes.find((v) => v.name === nodeVolumeName('shop', 'db1'))!.dockerVolumeConfiguration).toMatchObject({ scope: 'shared', autoprovision: true });
  });

  it('mounts only declared volumes and pins the task to its host by attribute', () => {
    const names = new Set((task.volumes ?? []).map((v) => v.name));
    for (const c of task.containerDefinitions ?? []) for (const m of c.mountPoints ?? []) expect(names.has(m.sourceVolume)).toBe(true);
    expect(task.placementConstraints).toEqual([{ type: 'memberOf', expression: 'attribute:berth.host == host-7f3a' }]);
  });

  it('configures the ECS agent with the cluster and the same host attribute', () => {
    const conf = Object.fromEntries(read('ecs/ecs.config').split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(conf.ECS_CLUSTER).toBeTruthy();
    expect(JSON.parse(conf.ECS_INSTANCE_ATTRIBUTES!)).toEqual({ 'berth.host': 'host-7f3a' });
  });
});

describe('Nomad example', () => {
  // No HCL parser dependency for two files: targeted structural checks of the fields that matter.
  const job = read('nomad/db.nomad.hcl');
  const client = read('nomad/client.hcl');

  it('mounts a named volume through the docker driver with driver berth and valid options', () => {
    expect(job).toMatch(/driver\s*=\s*"docker"/);
    const mount = /mount\s*\{([\s\S]*?)\n\s{8}\}/.exec(job)![1]!;
    expect(mount).toMatch(/type\s*=\s*"volume"/);
    expect(mount).toMatch(/driver_config\s*\{\s*name\s*=\s*"berth"/);
    const opts = Object.fromEntries([...(/\boptions\s*\{([\s\S]*?)\}/.exec(mount)![1]!.matchAll(/(\w+)\s*=\s*"([^"]*)"/g))].map((m) => [m[1]!, m[2]!]));
    expect(opts).toEqual({ size: '100GiB', fs: 'xfs' });
    expect(() => parseGivenOptions(opts)).not.toThrow();
  });

  it('enables volumes in the docker plugin config of the client', () => {
    expect(client).toMatch(/plugin\s+"docker"\s*\{\s*config\s*\{\s*volumes\s*\{\s*enabled\s*=\s*true/);
  });
});
