import { describe, expect, it } from 'vitest';
import { AnswerCache, type LocalView } from './answers.js';
import { KeyedLock } from './keyed-lock.js';
import type { VolumeInfo } from './protocol.js';
import { ViewChanges } from './view-changes.js';

/** A local view whose volumes a test changes the way the service does: in work under the volume's lock, which reports to the cache. */
class FakeView implements LocalView {
  volumes = new Map<string, VolumeInfo>();
  reads = 0;
  view(name: string) {
    this.reads++;
    return this.volumes.get(name);
  }
  names() {
    return [...this.volumes.keys()];
  }
}

/** The cache subscribed to the change notifications of a lock, as the service wires it. */
function subscribed(view: LocalView) {
  const changes = new ViewChanges();
  const cache = new AnswerCache(view);
  changes.subscribe(cache);
  return { cache, lock: new KeyedLock(changes), changes };
}

const json = (b: Buffer | undefined) => (b ? (JSON.parse(b.toString('utf8')) as Record<string, unknown>) : undefined);

describe('answer cache', () => {
  it('serializes an answer once and serves it until work on the volume starts', async () => {
    const view = new FakeView();
    view.volumes.set('a', { Name: 'a', Mountpoint: '' });
    const { cache, lock } = subscribed(view);
    expect(json(cache.get('a'))).toEqual({ Volume: { Name: 'a', Mountpoint: '' }, Err: '' });
    cache.get('a');
    cache.get('a');
    expect(view.reads).toBe(1);

    let release!: () => void;
    const work = lock.run('a', async () => {
      view.volumes.set('a', { Name: 'a', Mountpoint: '/m/a' });
      await new Promise<void>((r) => (release = r));
    });
    await Promise.resolve();
    // While work on "a" runs, each answer is the view as it is now.
    expect(json(cache.get('a'))).toMatchObject({ Volume: { Mountpoint: '/m/a' } });
    expect(json(cache.path('a'))).toEqual({ Mountpoint: '/m/a', Err: '' });
    view.volumes.set('a', { Name: 'a', Mountpoint: '' });
    expect(json(cache.path('a'))).toEqual({ Mountpoint: '', Err: '' });
    release();
    await work;
    expect(json(cache.list())).toEqual({ Volumes: [{ Name: 'a', Mountpoint: '' }], Err: '' });
  });

  it('answers a change made in work at once after the work ends, for Get, Path and List', async () => {
    const view = new FakeView();
    view.volumes.set('a', { Name: 'a', Mountpoint: '' });
    view.volumes.set('b', { Name: 'b', Mountpoint: '' });
    const { cache, lock } = subscribed(view);
    cache.get('a');
    cache.path('a');
    cache.list();
    await lock.run('a', async () => {
      view.volumes.set('a', { Name: 'a', Mountpoint: '/m/a' });
    });
    expect(json(cache.get('a'))).toMatchObject({ Volume: { Mountpoint: '/m/a' } });
    expect(json(cache.path('a'))).toEqual({ Mountpoint: '/m/a', Err: '' });
    expect(json(cache.list())).toMatchObject({ Volumes: [{ Name: 'a', Mountpoint: '/m/a' }, { Name: 'b' }] });
    await lock.run('b', async () => {
      view.volumes.delete('b');
    });
    expect(cache.get('b')).toBeUndefined();
    expect(json(cache.list())).toMatchObject({ Volumes: [{ Name: 'a' }] });
  });

  it('keeps nothing for a name that is not in the view, and forgets everything on reset()', () => {
    const view = new FakeView();
    const { cache, changes } = subscribed(view);
    expect(cache.get('nope')).toBeUndefined();
    expect(cache.path('nope')).toBeUndefined();
    view.volumes.set('nope', { Name: 'nope' });
    expect(cache.path('nope')?.toString()).toBe('{"Mountpoint":"","Err":""}');
    cache.list();
    view.volumes.set('c', { Name: 'c' });
    changes.reset();
    expect(json(cache.list())).toMatchObject({ Volumes: [{ Name: 'nope' }, { Name: 'c' }] });
  });

  it('a cache that subscribes while work runs keeps nothing for that name until the work ends', async () => {
    const view = new FakeView();
    view.volumes.set('a', { Name: 'a', Mountpoint: '' });
    const changes = new ViewChanges();
    const lock = new KeyedLock(changes);
    let release!: () => void;
    const work = lock.run('a', () => new Promise<void>((r) => (release = r)));
    await Promise.resolve();
    const cache = new AnswerCache(view);
    changes.subscribe(cache);
    cache.get('a');
    view.volumes.set('a', { Name: 'a', Mountpoint: '/m/a' });
    expect(json(cache.get('a'))).toMatchObject({ Volume: { Mountpoint: '/m/a' } });
    release();
    await work;
    view.volumes.set('a', { Name: 'a', Mountpoint: '' });
    expect(json(cache.get('a'))).toMatchObject({ Volume: { Mountpoint: '' } });
    expect(view.reads).toBe(3);
    cache.get('a');
    expect(view.reads).toBe(3);
  });
});
