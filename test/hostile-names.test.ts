import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent.js';
import { pluginPost } from './helpers/agent-image.js';
import { startInProcessAgent, uniquePluginName } from './helpers/agent.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, sh, tempDir } from './helpers/loop.js';

/**
 * Names and IDs that are keys of Object.prototype, over the real plugin
 * socket of an in-process agent on the loop backend: each is a name like any
 * other, on every endpoint, across a restart.
 */

const PROTOTYPE_NAMES = ['constructor', 'toString', 'valueOf', 'hasOwnProperty'];

describe.skipIf(noLoopReason)(`prototype keys as volume names, mount IDs and option keys${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  let stateDir: string;
  let pluginName: string;
  let agent: Agent | undefined;
  let socket: string;

  const start = async () => {
    ({ agent } = await startInProcessAgent(pluginName, stateDir));
    socket = agent.plugin.socketPath;
  };
  const call = (endpoint: string, body: unknown) => pluginPost(socket, `/VolumeDriver.${endpoint}`, body);
  const mounted = (mp: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(mp);
  const images = () => (existsSync(join(stateDir, 'images')) ? readdirSync(join(stateDir, 'images')).sort() : []);
  const stateNames = () => Object.keys((JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { volumes: object }).volumes);

  beforeEach(async () => {
    dir = tempDir('berth-names');
    stateDir = join(dir.path, 'state');
    pluginName = uniquePluginName('berth-names');
    await start();
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    dir.cleanup();
    detachLoopDevicesUnder(dir.path);
  });

  it.each(PROTOTYPE_NAMES)('%s works on every endpoint, and is missing until created', async (name) => {
    expect((await call('Path', { Name: name })).Err).toMatch(new RegExp(`no volume named ${name}`));
    expect((await call('Get', { Name: name })).Err).toMatch(new RegExp(`no volume named ${name}`));
    expect((await call('Mount', { Name: name, ID: 'c1' })).Err).toMatch(/no volume named/);
    expect(await call('Unmount', { Name: name, ID: 'c1' })).toEqual({ Err: '' });
    expect((await call('Remove', { Name: name })).Err).toMatch(/no volume named/);
    expect(images()).toEqual([]);

    expect(await call('Create', { Name: name, Opts: { size: '16MiB' } })).toEqual({ Err: '' });
    expect(await call('Create', { Name: name, Opts: { size: '16MiB' } })).toEqual({ Err: '' });
    expect(((await call('Get', { Name: name })).Volume as { Name: string }).Name).toBe(name);
    expect(((await call('List', {})).Volumes as Array<{ Name: string }>).map((v) => v.Name)).toEqual([name]);
    const mp = join(stateDir, 'mounts', name);
    expect(await call('Mount', { Name: name, ID: 'c1' })).toEqual({ Mountpoint: mp, Err: '' });
    expect(mounted(mp)).toBe(true);
    expect(await call('Path', { Name: name })).toEqual({ Mountpoint: mp, Err: '' });
    expect((await call('Remove', { Name: name })).Err).toMatch(/in use by 1 container mount/);
    expect(await call('Unmount', { Name: name, ID: 'c1' })).toEqual({ Err: '' });
    expect(mounted(mp)).toBe(false);
    expect(await call('Remove', { Name: name })).toEqual({ Err: '' });
    expect((await call('List', {})).Volumes).toEqual([]);
    expect(stateNames()).toEqual([]);
  });

  it('refuses __proto__ as a volume name (Docker names start with a letter or digit) and records nothing', async () => {
    for (const endpoint of ['Create', 'Get', 'Path', 'Mount', 'Unmount', 'Remove']) {
      const body = JSON.parse('{"Name":"__proto__","ID":"c1","Opts":{}}') as unknown;
      expect((await call(endpoint, body)).Err, endpoint).toMatch(/invalid volume name "__proto__"/);
    }
    expect(images()).toEqual([]);
    expect(stateNames()).toEqual([]);
  });

  it('refuses option key __proto__ as unknown and creates nothing', async () => {
    const answer = await call('Create', JSON.parse('{"Name":"v1","Opts":{"__proto__":"64MiB"}}'));
    expect(answer.Err).toMatch(/invalid volume options: unknown option\(s\) __proto__/);
    expect((await call('Get', { Name: 'v1' })).Err).toMatch(/no volume named v1/);
    const nested = await call('Create', JSON.parse('{"Name":"v1","Opts":{"__proto__":{"size":"64MiB"}}}'));
    expect(nested.Err).toMatch(/Opts\.__proto__: must be a string/);
    expect(images()).toEqual([]);
    expect(stateNames()).toEqual([]);
  });

  it('counts a reference for mount ID __proto__, so another container leaving does not unmount it, even across a restart', async () => {
    expect(await call('Create', { Name: 'refs', Opts: { size: '16MiB' } })).toEqual({ Err: '' });
    const mp = join(stateDir, 'mounts', 'refs');
    for (const id of ['__proto__', 'constructor', 'other']) expect((await call('Mount', { Name: 'refs', ID: id })).Err).toBe('');
    expect(await call('Unmount', { Name: 'refs', ID: 'other' })).toEqual({ Err: '' });
    expect(await call('Unmount', { Name: 'refs', ID: 'constructor' })).toEqual({ Err: '' });
    expect(mounted(mp)).toBe(true);
    expect(((await call('Get', { Name: 'refs' })).Volume as { Status: { containerMounts: number } }).Status.containerMounts).toBe(1);

    await agent!.stop();
    await start();
    expect(mounted(mp)).toBe(true);
    expect((await call('Remove', { Name: 'refs' })).Err).toMatch(/in use by 1 container mount/);
    expect(await call('Unmount', { Name: 'refs', ID: '__proto__' })).toEqual({ Err: '' });
    expect(mounted(mp)).toBe(false);
    expect(await call('Remove', { Name: 'refs' })).toEqual({ Err: '' });
  });
});
