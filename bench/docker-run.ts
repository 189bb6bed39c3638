/**
 * `docker run --rm -v V:/d busybox true`, median of N runs, with a berth volume
 * (already created) against Docker's built-in `local` driver in the same run,
 * interleaved so both see the same machine. Two berth agents: one as shipped
 * (unmount grace on: a run finds the volume still mounted from the one before)
 * and one with BERTH_UNMOUNT_GRACE_SECONDS=0 (each run mounts and unmounts).
 * Target: ratio ≤ 1.05. Also: first Mount of a new 1 GiB ext4 volume (create +
 * format + mount, median of 11) next to the same steps done by hand (truncate,
 * losetup, mkfs, mkdir, mount), the order alternating (target ratio ≤ 1.5).
 *
 * Then where berth's share goes: the same manager code in this process, with
 * a runner that times every program it runs and timers around each backend
 * and filesystem step, for one first Mount and over --profile Mount/Unmount
 * cycles of one volume without grace: median per program (losetup, blkid,
 * e2fsck, mount, umount, losetup -d), per step, and the manager's own rest
 * (state file write + fsync, the lock).
 *
 *   npm run build && node --import tsx bench/docker-run.ts [--runs 30] [--profile 20]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { socketOf, startChildAgent, stopChild, uniquePluginName } from '../test/helpers/agent.js';
import { docker, ensureBusyboxImage, TEST_IMAGE } from '../test/helpers/docker.js';
import { detachLoopDevicesUnder, tempDir } from '../test/helpers/loop.js';
import { CONFIG_DEFAULTS } from '../agent/config.js';
import { silentLogger } from '../lib/logger.js';
import { processRunner, type Runner } from '../lib/exec.js';
import { createLoopBackend } from '../volume-plugin/backends/loop.js';
import { createFilesystemOps } from '../volume-plugin/fs/filesystem.js';
import { DockerVolumeDriver } from '../volume-plugin/docker-driver.js';
import { VolumeService } from '../volume-plugin/service.js';
import { hostPathsFor } from '../test/helpers/manager.js';
import { median, unixPoster } from './lib.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '30' }, profile: { type: 'string', default: '20' } } });
const runs = Number(values.runs);
const profileCycles = Number(values.profile);

const tmp = tempDir('berth-bench-run');
const dir = tmp.path;
const name = uniquePluginName('berth-bench');
const noGraceName = uniquePluginName('berth-bench0');
const child = await startChildAgent(name, join(dir, 'state'), { BERTH_LOG_LEVEL: 'warn', BERTH_UNMOUNT_GRACE_SECONDS: String(CONFIG_DEFAULTS.BERTH_UNMOUNT_GRACE_SECONDS) }, true);
const noGrace = await startChildAgent(noGraceName, join(dir, 'state0'), { BERTH_LOG_LEVEL: 'warn', BERTH_UNMOUNT_GRACE_SECONDS: '0' }, true);
const berthVol = `bench-berth-${name.slice(-8)}`;
const noGraceVol = `bench-berth0-${name.slice(-8)}`;
const localVol = `bench-local-${name.slice(-8)}`;
try {
  await ensureBusyboxImage();
  await docker(['volume', 'create', '-d', name, '-o', 'size=1GiB', berthVol]);
  await docker(['volume', 'create', '-d', noGraceName, '-o', 'size=1GiB', noGraceVol]);
  await docker(['volume', 'create', '-d', 'local', localVol]);
  const time = async (vol: string) => {
    const t0 = performance.now();
    await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/d`, TEST_IMAGE, 'true']);
    return performance.now() - t0;
  };
  const vols = [berthVol, noGraceVol, localVol];
  for (const v of vols) await time(v); // warm every path (first mount formats)
  const samples = new Map<string, number[]>(vols.map((v) => [v, []]));
  for (let i = 0; i < runs; i++) {
    // Rotate the order each round so no volume always runs first or last.
    for (let k = 0; k < vols.length; k++) {
      const v = vols[(i + k) % vols.length]!;
      samples.get(v)!.push(await time(v));
    }
  }
  const b = median(samples.get(berthVol)!);
  const b0 = median(samples.get(noGraceVol)!);
  const l = median(samples.get(localVol)!);
  console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log(
    `docker run --rm -v V:/d busybox true, median of ${runs}: berth ${b.toFixed(0)} ms (unmount grace ${CONFIG_DEFAULTS.BERTH_UNMOUNT_GRACE_SECONDS} s, as shipped), local ${l.toFixed(0)} ms, ratio ${(b / l).toFixed(2)} (target ≤ 1.05: ${b / l <= 1.05 ? 'met' : 'NOT met'}); ` +
      `berth without grace ${b0.toFixed(0)} ms, ratio ${(b0 / l).toFixed(2)}`,
  );

  // First mount of a new 1 GiB ext4 volume, through the plugin API, vs the same steps by hand
  // (image, loop device, mkfs, mountpoint, mount), the order alternating.
  const post = unixPoster(socketOf(name));
  const firstMounts: number[] = [];
  const byHand: number[] = [];
  const FIRST_MOUNTS = 11;
  for (let i = 0; i < FIRST_MOUNTS; i++) {
    const viaBerth = async () => {
      const t0 = performance.now();
      await post('/VolumeDriver.Create', { Name: `first${i}`, Opts: { size: '1GiB', fs: 'ext4' } });
      const res = await post('/VolumeDriver.Mount', { Name: `first${i}`, ID: 'f'.repeat(64) });
      firstMounts.push(performance.now() - t0);
      if (!res.json.Mountpoint) throw new Error(`mount failed: ${JSON.stringify(res.json)}`);
      await post('/VolumeDriver.Unmount', { Name: `first${i}`, ID: 'f'.repeat(64) });
    };
    const manually = () => {
      const img = join(dir, `hand${i}.img`);
      const mp = join(dir, `hand${i}`);
      const t1 = performance.now();
      execFileSync('truncate', ['-s', '1G', img]);
      const dev = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
      execFileSync('mkfs.ext4', ['-F', '-q', '-m', '0', dev]);
      mkdirSync(mp);
      execFileSync('mount', [dev, mp]);
      byHand.push(performance.now() - t1);
      execFileSync('umount', [mp]);
      execFileSync('losetup', ['--detach', dev]);
    };
    if (i % 2 === 0) {
      await viaBerth();
      manually();
    } else {
      manually();
      await viaBerth();
    }
  }
  const fm = median(firstMounts);
  const bh = median(byHand);
  console.log(`first Mount of a new 1 GiB ext4 volume (create + format + mount), median of ${FIRST_MOUNTS}: ${fm.toFixed(1)} ms; the same steps by hand ${bh.toFixed(1)} ms; ratio ${(fm / bh).toFixed(2)} (target ≤ 1.5: ${fm / bh <= 1.5 ? 'met' : 'NOT met'})`);

  // Where a Mount and an Unmount spend their time, step by step (same code, in this process).
  const steps = new Map<string, number[]>();
  const record = (step: string, ms: number) => steps.set(step, [...(steps.get(step) ?? []), ms]);
  const timed: Runner = async (file, args, options) => {
    const t0 = performance.now();
    try {
      return await processRunner(file, args, options);
    } finally {
      record(file === 'losetup' && args.includes('--detach') ? 'losetup --detach' : file, performance.now() - t0);
    }
  };
  /** The same object with each method timed as step `<label>.<method>` (programs inside it are counted in it too). */
  const timedSteps = <T extends object>(label: string, target: T): T =>
    Object.fromEntries(
      Object.entries(target).map(([k, v]) => [
        k,
        typeof v === 'function'
          ? async (...a: unknown[]) => {
              const t0 = performance.now();
              try {
                return await (v as (...x: unknown[]) => Promise<unknown>).apply(target, a);
              } finally {
                record(`${label}.${k}`, performance.now() - t0);
              }
            }
          : v,
      ]),
    ) as T;
  const profDir = join(dir, 'profile');
  const manager = new DockerVolumeDriver(
    new VolumeService({
      backend: timedSteps('backend', createLoopBackend({ stateDir: profDir, paths: hostPathsFor(profDir), runner: timed })),
      fs: timedSteps('fs', createFilesystemOps({ runner: timed, paths: hostPathsFor(profDir) })),
      paths: hostPathsFor(profDir),
      defaults: { sizeBytes: 2 ** 30, fs: 'ext4' },
      logger: silentLogger,
    }),
  );
  await manager.service.start();
  steps.clear();
  let t0 = performance.now();
  await manager.create('prof', {});
  await manager.mount('prof', 'p'.repeat(64));
  const firstMs = performance.now() - t0;
  const show = (ms: number, step: string, per: string) => console.log(`  ${step.padEnd(22)} ${ms.toFixed(1)} ms${per}`);
  console.log(`first Mount of a new 1 GiB ext4 volume, in process, create + mount: ${firstMs.toFixed(1)} ms`);
  for (const [step, xs] of steps) if (!step.includes('.')) show(xs.reduce((a, b) => a + b, 0), step, '');
  for (const [step, xs] of steps) if (step.includes('.')) show(xs.reduce((a, b) => a + b, 0), step, ' (step, programs included)');
  await manager.unmount('prof', 'p'.repeat(64));
  steps.clear();
  const mounts: number[] = [];
  const unmounts: number[] = [];
  for (let i = 0; i < profileCycles; i++) {
    t0 = performance.now();
    await manager.mount('prof', 'p'.repeat(64));
    mounts.push(performance.now() - t0);
    t0 = performance.now();
    await manager.unmount('prof', 'p'.repeat(64));
    unmounts.push(performance.now() - t0);
  }
  const perCycle = (xs: number[]) => (xs.length / profileCycles) * median(xs);
  const programs = [...steps].filter(([step]) => !step.includes('.')).map(([step, xs]) => [step, perCycle(xs)] as const);
  const stepped = [...steps].filter(([step]) => step.includes('.')).map(([step, xs]) => [step, perCycle(xs)] as const);
  const inPrograms = programs.reduce((a, [, ms]) => a + ms, 0);
  const inSteps = stepped.reduce((a, [, ms]) => a + ms, 0);
  const cycle = median(mounts) + median(unmounts);
  console.log(`berth's share without grace, median of ${profileCycles} Mount + Unmount cycles of a 1 GiB ext4 volume: Mount ${median(mounts).toFixed(1)} ms, Unmount ${median(unmounts).toFixed(1)} ms`);
  for (const [step, ms] of programs) show(ms, step, ' per cycle');
  show(cycle - inPrograms, 'outside programs', ' per cycle (mountinfo reads, sysfs, state file write + fsync, locks)');
  for (const [step, ms] of stepped) show(ms, step, ' per cycle (step, programs included)');
  show(cycle - inSteps, 'manager itself', ' per cycle (state file write + fsync, lock, bookkeeping)');
} finally {
  await docker(['volume', 'rm', '-f', berthVol, noGraceVol, localVol]).catch(() => undefined);
  await stopChild(child, 'SIGTERM');
  await stopChild(noGrace, 'SIGTERM');
  tmp.cleanup();
  detachLoopDevicesUnder(dir);
}
