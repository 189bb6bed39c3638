/**
 * `docker run --rm -v V:/d busybox true`, median of N runs, with a berth volume
 * (already created; each run mounts and unmounts it) against Docker's built-in
 * `local` driver in the same run, interleaved so both see the same machine.
 * Target: ratio ≤ 1.05. Also: first Mount of a new 1 GiB ext4 volume (create +
 * format + mount) next to the same steps done by hand with losetup/mkfs/mount
 * (target ratio ≤ 1.5).
 *
 * Then where berth's share goes: the same manager code in this process, with
 * a runner that times every program it runs, over --profile Mount/Unmount
 * cycles of one volume: median per step (losetup, blkid, e2fsck, mount, umount,
 * losetup -d) and the rest (mountinfo checks, state file write, the lock).
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
import { silentLogger } from '../lib/logger.js';
import { execaRunner, type Runner } from '../lib/exec.js';
import { createLoopBackend } from '../volume-plugin/backends/loop.js';
import { createFilesystemOps } from '../volume-plugin/fs/filesystem.js';
import { DockerVolumeDriver } from '../volume-plugin/docker-driver.js';
import { hostPathsFor } from '../test/helpers/manager.js';
import { median, unixPoster } from './lib.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '30' }, profile: { type: 'string', default: '20' } } });
const runs = Number(values.runs);
const profileCycles = Number(values.profile);

const tmp = tempDir('berth-bench-run');
const dir = tmp.path;
const name = uniquePluginName('berth-bench');
const child = await startChildAgent(name, join(dir, 'state'), { BERTH_LOG_LEVEL: 'warn' }, true);
const berthVol = `bench-berth-${name.slice(-8)}`;
const localVol = `bench-local-${name.slice(-8)}`;
try {
  await ensureBusyboxImage();
  await docker(['volume', 'create', '-d', name, '-o', 'size=1GiB', berthVol]);
  await docker(['volume', 'create', '-d', 'local', localVol]);
  const time = async (vol: string) => {
    const t0 = performance.now();
    await docker(['run', '--rm', '--network', 'none', '-v', `${vol}:/d`, TEST_IMAGE, 'true']);
    return performance.now() - t0;
  };
  await time(berthVol); // warm both paths (first mount formats)
  await time(localVol);
  const berth: number[] = [];
  const local: number[] = [];
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      berth.push(await time(berthVol));
      local.push(await time(localVol));
    } else {
      local.push(await time(localVol));
      berth.push(await time(berthVol));
    }
  }
  const b = median(berth);
  const l = median(local);
  console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log(`docker run --rm -v V:/d busybox true, median of ${runs}: berth ${b.toFixed(0)} ms, local ${l.toFixed(0)} ms, ratio ${(b / l).toFixed(2)} (target ≤ 1.05: ${b / l <= 1.05 ? 'met' : 'NOT met'})`);

  // First mount of a new 1 GiB ext4 volume, through the plugin API, vs by hand.
  const post = unixPoster(socketOf(name));
  const firstMounts: number[] = [];
  const byHand: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await post('/VolumeDriver.Create', { Name: `first${i}`, Opts: { size: '1GiB', fs: 'ext4' } });
    const res = await post('/VolumeDriver.Mount', { Name: `first${i}`, ID: 'f'.repeat(64) });
    firstMounts.push(performance.now() - t0);
    if (!res.json.Mountpoint) throw new Error(`mount failed: ${JSON.stringify(res.json)}`);
    await post('/VolumeDriver.Unmount', { Name: `first${i}`, ID: 'f'.repeat(64) });

    const img = join(dir, `hand${i}.img`);
    const mp = join(dir, `hand${i}`);
    mkdirSync(mp);
    const t1 = performance.now();
    execFileSync('truncate', ['-s', '1G', img]);
    const dev = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
    execFileSync('mkfs.ext4', ['-F', '-q', '-m', '0', dev]);
    execFileSync('mount', [dev, mp]);
    byHand.push(performance.now() - t1);
    execFileSync('umount', [mp]);
    execFileSync('losetup', ['--detach', dev]);
  }
  const fm = median(firstMounts);
  const bh = median(byHand);
  console.log(`first Mount of a new 1 GiB ext4 volume (create + format + mount), median of 5: ${(fm / 1000).toFixed(2)} s; by hand ${(bh / 1000).toFixed(2)} s; ratio ${(fm / bh).toFixed(2)} (target ≤ 1.5: ${fm / bh <= 1.5 ? 'met' : 'NOT met'})`);

  // Where a Mount and an Unmount spend their time, step by step (same code, in this process).
  const steps = new Map<string, number[]>();
  const timed: Runner = async (file, args, options) => {
    const t0 = performance.now();
    try {
      return await execaRunner(file, args, options);
    } finally {
      const step = file === 'losetup' && args.includes('--detach') ? 'losetup --detach' : file;
      steps.set(step, [...(steps.get(step) ?? []), performance.now() - t0]);
    }
  };
  const profDir = join(dir, 'profile');
  const manager = new DockerVolumeDriver({
    backend: createLoopBackend({ stateDir: profDir, paths: hostPathsFor(profDir), runner: timed }),
    fs: createFilesystemOps({ runner: timed, paths: hostPathsFor(profDir) }),
    paths: hostPathsFor(profDir),
    defaults: { sizeBytes: 2 ** 30, fs: 'ext4' },
    logger: silentLogger,
  });
  await manager.service.start();
  await manager.create('prof', {});
  await manager.mount('prof', 'p'.repeat(64));
  await manager.unmount('prof', 'p'.repeat(64));
  steps.clear();
  const mounts: number[] = [];
  const unmounts: number[] = [];
  for (let i = 0; i < profileCycles; i++) {
    let t0 = performance.now();
    await manager.mount('prof', 'p'.repeat(64));
    mounts.push(performance.now() - t0);
    t0 = performance.now();
    await manager.unmount('prof', 'p'.repeat(64));
    unmounts.push(performance.now() - t0);
  }
  const perCycle = (xs: number[]) => (xs.length / profileCycles) * median(xs);
  const programs = [...steps].map(([step, xs]) => [step, perCycle(xs)] as const);
  const inPrograms = programs.reduce((a, [, ms]) => a + ms, 0);
  console.log(`berth's share, median of ${profileCycles} Mount + Unmount cycles of a 1 GiB ext4 volume: Mount ${median(mounts).toFixed(1)} ms, Unmount ${median(unmounts).toFixed(1)} ms`);
  for (const [step, ms] of programs) console.log(`  ${step.padEnd(18)} ${ms.toFixed(1)} ms per cycle`);
  console.log(`  ${'the rest'.padEnd(18)} ${(median(mounts) + median(unmounts) - inPrograms).toFixed(1)} ms per cycle (mountinfo reads, sysfs checks, state file write + fsync, locks)`);
} finally {
  await docker(['volume', 'rm', '-f', berthVol, localVol]).catch(() => undefined);
  await stopChild(child, 'SIGTERM');
  tmp.cleanup();
  detachLoopDevicesUnder(dir);
}
