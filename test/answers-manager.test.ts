import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sleep } from '../lib/sleep.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, tempDir } from './helpers/loop.js';
import { loopManager } from './helpers/manager.js';

const ID = 'c'.repeat(64);
type Answer = { Volume: { Status: Record<string, unknown> } } & Record<string, unknown>;
const parse = (b: Buffer | undefined) => (b ? (JSON.parse(b.toString('utf8')) as Answer) : undefined);

describe.skipIf(noLoopReason)(`prepared plugin answers over the loop backend${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('berth-answers');
  });
  afterEach(() => {
    dir.cleanup();
    detachLoopDevicesUnder(dir.path);
  });

  it('Get, Path and List answers equal what the manager answers, through Create, a slow Mount, Unmount and Remove', async () => {
    const { manager } = await loopManager(join(dir.path, 'state'), (b) => ({
      ...b,
      attach: async (r) => {
        await sleep(300);
        return b.attach(r);
      },
    }));
    const { answers } = manager;
    const same = async () => {
      expect(parse(answers.get('v'))).toEqual({ Volume: await manager.get('v'), Err: '' });
      expect(parse(answers.path('v'))).toEqual({ Mountpoint: await manager.path('v'), Err: '' });
      expect(parse(answers.list())).toEqual({ Volumes: await manager.list(), Err: '' });
    };
    await manager.create('v', {});
    await same();
    expect(parse(answers.get('v'))?.Volume.Status).toMatchObject({ mounted: false, containerMounts: 0 });

    const mounting = manager.mount('v', ID);
    await sleep(50);
    await same();
    const mountpoint = await mounting;
    await same();
    expect(parse(answers.path('v'))).toEqual({ Mountpoint: mountpoint, Err: '' });
    expect(parse(answers.get('v'))?.Volume.Status).toMatchObject({ mounted: true, containerMounts: 1 });

    await manager.unmount('v', ID);
    expect(parse(answers.path('v'))).toEqual({ Mountpoint: '', Err: '' });
    await same();
    await manager.remove('v');
    expect(answers.get('v')).toBeUndefined();
    expect(parse(answers.list())).toEqual({ Volumes: [], Err: '' });
  });
});
