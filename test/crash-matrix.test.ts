import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../lib/sleep.js';
import { parseState } from '../volume-plugin/state-store.js';
import type { Agent } from '../agent/agent.js';
import { startChildAgent, startInProcessAgent, stopChild, uniquePluginName } from './helpers/agent.js';
import { pluginPost } from './helpers/agent-image.js';
import { noLoopReason } from './helpers/env.js';
import { detachLoopDevicesUnder, loopDevicesUnder, sh, tempDir } from './helpers/loop.js';
import { smallStateDisk } from './helpers/state-dir.js';
import { step } from './helpers/step.js';

/**
 * The crash-point matrix: the agent (a child process) SIGKILLs itself at one
 * external step of Create, Mount, Unmount or Remove (BERTH_TEST_CRASH_AT,
 * agent/crash-points.ts), is started again, and then the invariants hold:
 * nothing is mounted without a reference its caller holds, no loop device or
 * tool is left over, the state file is valid, no half-formatted device is
 * used, data written is there, and the volume works (Mount, write, read,
 * Unmount, Remove). The same for a full state disk.
 */

const ID1 = '1'.repeat(64);
const ID2 = '2'.repeat(64);
const TOOLS = new Set(['mkfs.ext4', 'mke2fs', 'e2fsck', 'blkid', 'mount', 'umount', 'losetup', 'chattr', 'resize2fs']);

const points = [
  // Create
  'state-write:2',
  // First Mount: attach, mountpoint, format (marked before; no probe of an image this agent just made), mount
  // (no fsck or grow check right after berth's own mkfs), reference (the mark cleared in the same write).
  // blkid, e2fsck and the grow check of a later Mount are in the full-disk matrix below.
  'losetup:1',
  'chattr:1',
  'state-write:3',
  'mkfs.ext4:1',
  'mount:1',
  'state-write:4',
  // Unmount
  'umount:1',
  'losetup:2',
  'state-write:5',
  // Remove
  'chattr:2',
  'state-write:6',
];

/** Processes running one of berth's tools on something under dir (or a loop device backed there). */
function straysUnder(dir: string): string[] {
  const devices = new Set(loopDevicesUnder(dir));
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!TOOLS.has(comm)) continue;
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.startsWith(dir) || devices.has(a))) out.push(`${pid} ${argv.join(' ')}`);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const mountsUnder = (dir: string) => sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').filter((l) => l.startsWith(dir + '/'));

describe.skipIf(noLoopReason)(`crash-point matrix${noLoopReason ? ` (skipped: ${noLoopReason})` : ''}`, () => {
  let dir: ReturnType<typeof tempDir> | undefined;
  const children: ChildProcess[] = [];
  const tmpfs: string[] = [];

  const agents: Agent[] = [];
  // The crashing agent is the bundle production runs: it starts in well under a second (tsx takes seconds).
  const build = tempDir('berth-crash-build');
  const bundle = join(build.path, 'dist', 'agent', 'main.js');
  beforeAll(async () => {
    await execa('node', ['scripts/build.mjs', join(build.path, 'dist')], { cwd: join(import.meta.dirname, '..'), timeout: 120_000 });
  }, 150_000);
  afterAll(() => build.cleanup());

  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) await stopChild(c, 'SIGKILL');
    for (const a of agents.splice(0)) await a.stop();
    if (dir) {
      for (const m of mountsUnder(dir.path).reverse()) execFileSync('umount', ['-l', m]);
      detachLoopDevicesUnder(dir.path);
      // (the tmpfs may be gone already: it is under dir, unmounted above)
      for (const t of tmpfs.splice(0)) if (mountsUnder(dir.path).includes(t) || sh('findmnt', ['-rn', '-o', 'TARGET']).split('\n').includes(t)) execFileSync('umount', ['-l', t]);
      dir.cleanup();
      dir = undefined;
    }
  });

  async function agent(name: string, stateDir: string, extra: Record<string, string> = {}): Promise<{ child: ChildProcess; call: (path: string, body: unknown) => Promise<Record<string, unknown>> }> {
    const socket = join('/run/docker/plugins', `${name}.sock`);
    // A killed agent leaves its socket: wait for the new one, not the stale file.
    if (existsSync(socket)) unlinkSync(socket);
    const child = await startChildAgent(name, stateDir, { BERTH_DEFAULT_SIZE: '64MiB', ...extra }, bundle);
    children.push(child);
    return { child, call: (path, body) => pluginPost(socket, path, body) };
  }

  /** The restarted agent: in this process (a child costs seconds of start-up per crash point). */
  async function restarted(name: string, stateDir: string, extra: Record<string, string> = {}) {
    const { agent: a } = await startInProcessAgent(name, stateDir, extra);
    agents.push(a);
    const socket = join('/run/docker/plugins', `${name}.sock`);
    return {
      call: (path: string, body: unknown) => pluginPost(socket, path, body),
      async stop() {
        agents.splice(agents.indexOf(a), 1);
        await a.stop();
      },
    };
  }

  async function exited(child: ChildProcess, ms = 15_000): Promise<NodeJS.Signals | null> {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (child.exitCode !== null || child.signalCode !== null) return child.signalCode;
    throw new Error('the agent did not crash at its crash point');
  }

  /** Runs the steps until the agent dies; returns what the caller was told. */
  async function drive(call: (path: string, body: unknown) => Promise<Record<string, unknown>>, v: string, steps: Array<'create' | 'mount' | 'unmount' | 'remove'>, opts: Record<string, string> = {}) {
    const told = { created: false, mounted: false, written: false, unmounted: false, removed: false, mountpoint: '', unanswered: '' };
    for (const step of steps) {
      let res: Record<string, unknown>;
      try {
        if (step === 'create') res = await call('/VolumeDriver.Create', { Name: v, Opts: opts });
        else if (step === 'mount') res = await call('/VolumeDriver.Mount', { Name: v, ID: ID1 });
        else if (step === 'unmount') res = await call('/VolumeDriver.Unmount', { Name: v, ID: ID1 });
        else res = await call('/VolumeDriver.Remove', { Name: v });
      } catch {
        return { ...told, unanswered: step }; // no answer: the agent died during this call
      }
      if (res.Err) return { ...told, err: String(res.Err) };
      if (step === 'create') told.created = true;
      if (step === 'mount') {
        told.mounted = true;
        told.mountpoint = String(res.Mountpoint);
        try {
          writeFileSync(join(told.mountpoint, 'f'), 'data');
          told.written = true;
        } catch {
          // the crash may come first
        }
      }
      if (step === 'unmount') told.unmounted = true;
      if (step === 'remove') told.removed = true;
    }
    return told;
  }

  /** The invariants after a restart; then the volume must work end to end. */
  async function check(root: string, stateDir: string, v: string, told: Awaited<ReturnType<typeof drive>>, call: (path: string, body: unknown) => Promise<Record<string, unknown>>, point: string) {
    const why = `after a crash at ${point}`;
    // (no state file: an agent that never had room to write one, and was never told of a volume)
    if (told.created || existsSync(join(stateDir, 'state.json'))) expect(() => parseState(JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8'))), why).not.toThrow();
    expect(straysUnder(root), why).toEqual([]);
    // Held: the caller got its Mount and has not asked to Unmount. An Unmount that got no answer may have happened or not.
    const held = told.mounted && !told.unmounted && told.unanswered !== 'unmount';
    if (told.unanswered !== 'unmount') {
      expect(mountsUnder(join(stateDir, 'mounts')), why).toEqual(held ? [told.mountpoint] : []);
      expect(loopDevicesUnder(root).length, why).toBe(held ? 1 : 0);
    }
    expect(loopDevicesUnder(root).length, why).toBe(mountsUnder(join(stateDir, 'mounts')).length);
    if (held) expect(readFileSync(join(told.mountpoint, 'f'), 'utf8'), why).toBe('data');

    expect((await call('/VolumeDriver.Create', { Name: v, Opts: {} })).Err, why).toBe('');
    const m = await call('/VolumeDriver.Mount', { Name: v, ID: ID2 });
    expect(m.Err, why).toBe('');
    const mp = String(m.Mountpoint);
    if (told.written) expect(readFileSync(join(mp, 'f'), 'utf8'), why).toBe('data');
    writeFileSync(join(mp, 'g'), 'more');
    expect(readFileSync(join(mp, 'g'), 'utf8')).toBe('more');
    expect((await call('/VolumeDriver.Unmount', { Name: v, ID: ID2 })).Err, why).toBe('');
    if (told.mounted) expect((await call('/VolumeDriver.Unmount', { Name: v, ID: ID1 })).Err, why).toBe('');
    expect(mountsUnder(join(stateDir, 'mounts')), why).toEqual([]);
    expect(loopDevicesUnder(root), why).toEqual([]);
    // a completed, clean filesystem: never a half-made one
    execFileSync('e2fsck', ['-fn', join(stateDir, 'images', `${v}.img`)], { stdio: 'ignore' });
    expect((await call('/VolumeDriver.Remove', { Name: v })).Err, why).toBe('');
    expect(((await call('/VolumeDriver.List', {})).Volumes as unknown[]).length, why).toBe(0);
  }

  it('leaves a consistent, usable volume after a SIGKILL at every external step', async () => {
    for (const point of points) {
      dir = tempDir('berth-crash');
      const stateDir = join(dir.path, 'state');
      const name = uniquePluginName('berth-crash');
      const first = await agent(name, stateDir, { BERTH_TEST_CRASH_AT: point });
      const told = await drive(first.call, 'v', ['create', 'mount', 'unmount', 'remove']);
      expect(await exited(first.child), `crash at ${point} (told ${JSON.stringify(told)})`).toBe('SIGKILL');
      const second = await restarted(name, stateDir);
      await check(dir.path, stateDir, 'v', told, second.call, point);
      await second.stop();
      for (const m of mountsUnder(dir.path).reverse()) execFileSync('umount', ['-l', m]);
      dir.cleanup();
      dir = undefined;
    }
  }, 600_000);

  it('a SIGKILL during mkfs: the orphan mkfs is stopped, no device left attached, the half-made filesystem made again', async () => {
    dir = tempDir('berth-crash');
    const stateDir = join(dir.path, 'state');
    // A slow mkfs that leaves a half-made filesystem: the real one, then its block group descriptors zeroed, then a wait.
    const bin = join(dir.path, 'bin');
    mkdirSync(bin);
    const real = sh('sh', ['-c', 'command -v mkfs.ext4']);
    writeFileSync(join(bin, 'mkfs.ext4'), `#!/bin/sh\nfor dev; do :; done\n${real} "$@" && dd if=/dev/zero of="$dev" bs=4096 seek=1 count=8 conv=notrunc 2>/dev/null; sleep 20\n`, { mode: 0o755 });
    const name = uniquePluginName('berth-crash');
    const first = await agent(name, stateDir, { BERTH_TEST_CRASH_AT: 'mkfs.ext4:1', PATH: `${bin}:${process.env.PATH}` });
    expect((await first.call('/VolumeDriver.Create', { Name: 'v', Opts: {} })).Err).toBe('');
    await first.call('/VolumeDriver.Mount', { Name: 'v', ID: ID1 }).catch(() => undefined);
    expect(await exited(first.child)).toBe('SIGKILL');
    await sleep(1_000); // the real mkfs has finished; the wrapper still runs, holding the device name
    expect(straysUnder(dir.path).length).toBeGreaterThan(0);
    expect(loopDevicesUnder(dir.path)).toHaveLength(1);
    expect(sh('blkid', ['-p', '-o', 'value', '-s', 'TYPE', loopDevicesUnder(dir.path)[0]!])).toBe('ext4'); // looks formatted; is not

    const second = await restarted(name, stateDir);
    expect(straysUnder(dir.path)).toEqual([]);
    expect(loopDevicesUnder(dir.path)).toEqual([]);
    await check(dir.path, stateDir, 'v', { created: true, mounted: false, written: false, unmounted: false, removed: false, mountpoint: '', unanswered: 'mount' }, second.call, 'mkfs.ext4:1');
  }, 120_000);

  /**
   * Create, Unmount and Remove on a full state disk, with a SIGKILL at each of their steps (or, where the call fails
   * before reaching the step, just after it answered): the call answers a clear error or nothing, the restarted agent
   * finds the volume as the answer said, the call fails cleanly again while the disk is full, and once there is room
   * the volume works end to end.
   */
  it('on a full state disk: Create, Unmount and Remove answer a clear error, leave nothing unrecorded, and work once there is room', async () => {
    type Call = 'create' | 'unmount' | 'remove';
    // Counted from the child's start: its first state write is at start (it fails on the full disk, and is logged).
    // `never:1` is no step: the call runs to its answer, and the agent is killed just after.
    const cases: Array<[Call, string, Record<string, string>?]> = [
      ['create', 'state-write:2'],
      ['create', 'never:1'],
      ['unmount', 'umount:1'],
      ['unmount', 'losetup:1'],
      ['unmount', 'state-write:2'],
      ['unmount', 'never:1'],
      ['remove', 'chattr:1'],
      ['remove', 'state-write:2'],
      ['remove', 'never:1'],
      // onRemove=delete: deleting the image makes room before the state write
      ['remove', 'state-write:2', { onRemove: 'delete' }],
      ['remove', 'never:1', { onRemove: 'delete' }],
    ];
    const enospc = /ENOSPC|no space left/i;
    for (const [call, point, opts = {}] of cases) {
      const at = `${call} at ${point} (full disk${opts.onRemove ? `, onRemove=${opts.onRemove}` : ''})`;
      dir = tempDir('berth-crash');
      const stateDir = join(dir.path, 'state');
      const disk = await step(`${at}: set up`, async () => {
        const d = smallStateDisk(stateDir);
        tmpfs.push(stateDir);
        return d;
      });
      const name = uniquePluginName('berth-crash');
      const env = { BERTH_DEFAULT_SIZE: '16MiB' };
      const images = () => readdirSync(join(stateDir, 'images')).filter((f) => !f.startsWith('.'));
      // The volume as the call finds it: absent (Create), mounted for ID1 (Unmount), made and unmounted (Remove).
      let mountpoint = '';
      if (call !== 'create') {
        await step(`${at}: prepare the volume`, async () => {
          const setup = await restarted(name, stateDir, env);
          const told = await drive(setup.call, 'v', call === 'unmount' ? ['create', 'mount'] : ['create', 'mount', 'unmount'], opts);
          expect(told, at).toMatchObject({ written: true, ...(call === 'remove' ? { unmounted: true } : {}) });
          mountpoint = told.mountpoint;
          // On the disk before it fills: images are sparse, and a write flushed after that has no room (lost, EIO).
          if (call === 'unmount') execFileSync('sync', ['-f', join(mountpoint, 'f')]);
          execFileSync('sync', ['-f', join(stateDir, 'images')]);
          await setup.stop(); // mounts stay for the containers that hold them
        });
      } else mkdirSync(join(stateDir, 'images'), { mode: 0o700 });
      disk.fill();
      const imagesBefore = images();

      const { told, signal } = await step(`${at}: the crashing call`, async () => {
        const first = await agent(name, stateDir, { ...env, BERTH_TEST_CRASH_AT: point });
        const told = await drive(first.call, 'v', [call]);
        // Not reached (the call failed first): the crash comes just after the answer.
        if (first.child.exitCode === null && first.child.signalCode === null) await stopChild(first.child, 'SIGKILL');
        return { told, signal: await exited(first.child) };
      });
      expect(signal, at).toBe('SIGKILL');
      // Answered: a clear error that names the volume and the cause (a Remove with onRemove=delete frees room, and may succeed).
      const err = 'err' in told ? String(told.err) : '';
      if (!told.unanswered && (err || call !== 'remove')) {
        expect(err, at).toMatch(enospc);
        expect(err, at).toMatch(/volume v\b/);
      }
      // A failed Unmount has still unmounted (below): it must not say that nothing changed.
      if (call === 'unmount') expect(err, at).not.toMatch(/nothing was changed/);
      const answeredRemove = call === 'remove' && !told.unanswered && !err;

      await step(`${at}: restart on the full disk`, async () => {
        const second = await restarted(name, stateDir, env);
        // A fresh state dir that filled up before its first write has no state file: that is an empty one.
        if (call !== 'create' || existsSync(join(stateDir, 'state.json'))) expect(() => parseState(JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8'))), at).not.toThrow();
        expect(straysUnder(dir!.path), at).toEqual([]);
        const list = ((await second.call('/VolumeDriver.List', {})).Volumes as Array<{ Name: string }>).map((v) => v.Name);
        const mounts = mountsUnder(join(stateDir, 'mounts'));
        expect(loopDevicesUnder(dir!.path).length, at).toBe(mounts.length);
        if (call === 'create') {
          // A failed Create leaves no image, no sidecar and no List entry (an unanswered one: all or nothing).
          expect(images(), at).toEqual(list.length ? ['v.img', 'v.json'] : []);
          if (!told.unanswered) expect(list, at).toEqual([]);
          expect((await second.call('/VolumeDriver.Create', { Name: 'v', Opts: {} })).Err, `${at}: again while full`).toMatch(list.length ? /^$/ : enospc);
          expect(images(), at).toEqual(list.length ? ['v.img', 'v.json'] : []);
        } else if (call === 'unmount') {
          // Whatever the answer, the caller has let go (dockerd never sends it again): nothing stays mounted for it.
          if (!told.unanswered) expect(mounts, at).toEqual([]);
          expect(list, at).toEqual(['v']);
          expect(images(), at).toEqual(imagesBefore);
          expect((await second.call('/VolumeDriver.Unmount', { Name: 'v', ID: ID1 })).Err, `${at}: again while full`).toMatch(/^$|ENOSPC|no space left/i);
          expect(mountsUnder(join(stateDir, 'mounts')), at).toEqual([]);
          expect(loopDevicesUnder(dir!.path), at).toEqual([]);
        } else {
          expect(mounts, at).toEqual([]);
          if (answeredRemove) {
            expect(list, at).toEqual([]);
            expect(images(), at).toEqual([]);
          } else {
            // A failed Remove keeps the volume whole: listed, its image and sidecar there, its data intact below.
            expect(list, at).toEqual(list.length ? ['v'] : []);
            expect(images(), at).toEqual(list.length ? imagesBefore : []);
          }
        }
        disk.free();
        const again = { created: call !== 'create', mounted: false, written: call !== 'create' && images().length > 0, unmounted: false, removed: false, mountpoint, unanswered: '' };
        await check(dir!.path, stateDir, 'v', again, second.call, at);
        await second.stop();
      });
      execFileSync('umount', ['-l', tmpfs.pop()!]);
      dir.cleanup();
      dir = undefined;
    }
  }, 600_000);

  it('on a full state disk: consistent after a SIGKILL at every step of Mount, and usable once there is room', async () => {
    const fullPoints = ['losetup:1', 'blkid:1', 'e2fsck:1', 'mount:1', 'umount:1', 'losetup:2'];
    for (const point of fullPoints) {
      dir = tempDir('berth-crash');
      const stateDir = join(dir.path, 'state');
      const disk = smallStateDisk(stateDir);
      tmpfs.push(stateDir);
      const name = uniquePluginName('berth-crash');
      const setup = await restarted(name, stateDir, { BERTH_DEFAULT_SIZE: '16MiB' });
      expect(await drive(setup.call, 'v', ['create', 'mount', 'unmount'])).toMatchObject({ unmounted: true, written: true });
      await setup.stop();
      disk.fill();
      const first = await agent(name, stateDir, { BERTH_DEFAULT_SIZE: '16MiB', BERTH_TEST_CRASH_AT: point });
      const told = await drive(first.call, 'v', ['mount']);
      expect(told.mounted, `Mount on a full disk at ${point}`).toBe(false);
      expect(await exited(first.child), `crash at ${point} (told ${JSON.stringify(told)})`).toBe('SIGKILL');
      const second = await restarted(name, stateDir, { BERTH_DEFAULT_SIZE: '16MiB' });
      // still full: nothing held, nothing left over, and the agent answers
      expect(mountsUnder(join(stateDir, 'mounts')), point).toEqual([]);
      expect(loopDevicesUnder(dir.path), point).toEqual([]);
      expect(straysUnder(dir.path), point).toEqual([]);
      expect((await second.call('/VolumeDriver.Mount', { Name: 'v', ID: ID1 })).Err, point).toMatch(/ENOSPC/);
      expect(mountsUnder(join(stateDir, 'mounts')), point).toEqual([]);
      disk.free();
      await check(dir.path, stateDir, 'v', { ...told, written: true }, second.call, `${point} (full disk)`);
      await second.stop();
      execFileSync('umount', ['-l', tmpfs.pop()!]);
      dir.cleanup();
      dir = undefined;
    }
  }, 600_000);
});
