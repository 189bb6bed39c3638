import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderBootstrap } from '../userdata/render.js';
import { startImdsServer, type ImdsServer } from './aws/imds-server.js';
import { fakeRelease, hostStubs, S3RVER_CREDENTIALS, startS3 } from './helpers/boot.js';
import { noRootReason } from './helpers/env.js';
import { tempDir } from './helpers/loop.js';
import { step } from './helpers/step.js';

/**
 * The berth host's userdata part in a network namespace with no route out: a private
 * subnet while the Traefik/NAT instance is being replaced. Its one link is a veth to this
 * machine, where IMDS answers (link-local on EC2, always reachable) and where s3rver (it
 * checks SigV4 signatures) stands for S3. The route to S3's address is what the VPC's S3
 * gateway endpoint adds to the subnet's route table: without it the part retries, then
 * powers the instance off; with it (added while the part retries) the part succeeds.
 * curl, tar, sha256sum and bash are real; systemctl and shutdown are stand-ins.
 */
describe.skipIf(noRootReason)(`bootstrap.sh with no route out${noRootReason ? ` (skipped: ${noRootReason})` : ''}`, () => {
  const tmp = tempDir('berth-boot-offline');
  const n = process.pid % 250;
  const ns = `berth-boot-${process.pid}`;
  const hostIf = `bbh${process.pid}`.slice(0, 15);
  const nsIf = `bbn${process.pid}`.slice(0, 15);
  const hostAddr = `10.251.${n}.1`;
  const nsAddr = `10.251.${n}.2`;
  // Where "S3" answers: an address the namespace has no route to until the endpoint's route is added.
  const s3Addr = `198.18.${n}.10`;
  let s3: { endpoint: string; close: () => Promise<void> } | undefined;
  let imds: ImdsServer | undefined;
  const ip = (...args: string[]) => execa('ip', args);

  beforeAll(async () => {
    await step('network namespace and veth', async () => {
      await ip('netns', 'add', ns);
      await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
      await ip('link', 'set', nsIf, 'netns', ns);
      await ip('addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
      await ip('addr', 'add', `${s3Addr}/32`, 'dev', hostIf);
      await ip('link', 'set', hostIf, 'up');
      await ip('-n', ns, 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf);
      await ip('-n', ns, 'link', 'set', nsIf, 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    });
    await step('IMDS and S3', async () => {
      imds = await startImdsServer({ instanceId: 'i-0offline', az: 'eu-west-1a', region: 'eu-west-1', credentials: S3RVER_CREDENTIALS, host: hostAddr });
      s3 = await startS3(tmp.path, s3Addr, 'artifacts', { 'berth/src-1.tar.gz': fakeRelease(tmp.path) });
    });
  }, 60_000);

  afterAll(async () => {
    await s3?.close();
    await imds?.close();
    await execa('ip', ['link', 'del', hostIf], { reject: false });
    await execa('ip', ['netns', 'del', ns], { reject: false });
    tmp.cleanup();
  });

  const boot = (name: string, budgetSeconds: number) => {
    const dir = join(tmp.path, name);
    const root = join(dir, 'root');
    const calls = join(dir, 'calls.log');
    mkdirSync(join(root, 'run/docker/plugins'), { recursive: true });
    hostStubs(join(dir, 'bin'), calls, root);
    const file = join(dir, 'part.sh');
    writeFileSync(file, renderBootstrap({ ENVIRONMENT: 'prod', CLUSTER: 'shop', HOST_ID: 'shop-h1', REGION: 'eu-west-1', ARTIFACT_URI: 's3://artifacts/berth/src-1.tar.gz', SWAP_MIB: 0 }));
    const run = execa('ip', ['netns', 'exec', ns, 'bash', file], {
      env: { PATH: `${join(dir, 'bin')}:${process.env.PATH!}`, BERTH_ROOT: root, BERTH_IMDS_ENDPOINT: imds!.endpoint, BERTH_S3_ENDPOINT: s3!.endpoint, BERTH_RETRY_BUDGET_SECONDS: String(budgetSeconds) },
      extendEnv: false,
      reject: false,
      all: true,
    });
    return { root, run, calls: () => (existsSync(calls) ? readFileSync(calls, 'utf8') : '') };
  };

  it('without the endpoint: retries the S3 GET with growing waits, then powers off without installing or starting anything', async () => {
    expect((await ip('-n', ns, 'route', 'show')).stdout).not.toMatch(/default|198\.18/);
    const { root, run, calls } = boot('no-endpoint', 6);
    const res = await step('bootstrap until it gives up', () => run, 30_000);
    expect(res.exitCode).not.toBe(0);
    // IMDS answered; S3 did not: "Network is unreachable", tried again 1 s, then 2 s later.
    expect(res.all).toMatch(/GET s3:\/\/artifacts\/berth\/src-1\.tar\.gz: failed \(try 1\); again in 1s/);
    expect(res.all).toMatch(/failed \(try 2\); again in 2s/);
    expect(res.all).toMatch(/Network is unreachable|Couldn't connect/);
    expect(res.all).toMatch(/failed \d+ times in \d+s; giving up/);
    expect(res.all).toMatch(/powering off; the Auto Scaling group replaces this instance/);
    expect(calls()).toMatch(/^shutdown -P \+2 /m);
    expect(calls()).not.toContain('systemctl');
    expect(existsSync(join(root, 'opt/berth'))).toBe(false);
    expect(existsSync(join(root, 'etc/ecs/ecs.config'))).toBe(false);
  });

  it('the endpoint appears while it retries: the GET goes through it, berth is installed and started before ECS, and nothing powers off', async () => {
    const { root, run, calls } = boot('endpoint', 60);
    let seen = '';
    run.all!.on('data', (d: Buffer) => (seen += d.toString()));
    await step('first failed GET', async () => {
      while (!/failed \(try 1\)/.test(seen)) await new Promise((r) => setTimeout(r, 50));
    }, 20_000);
    // What the gateway endpoint puts in the subnet's route table: S3's addresses, through the VPC, not the NAT instance.
    await ip('-n', ns, 'route', 'add', `${s3Addr}/32`, 'dev', nsIf);
    const res = await step('bootstrap', () => run, 60_000);
    expect(res.all).toContain('installed berth');
    expect(res.exitCode).toBe(0);
    expect((await ip('-n', ns, 'route', 'show', 'default')).stdout).toBe('');
    expect(readFileSync(join(root, 'opt/berth/SHA256SUMS'), 'utf8')).toContain('bin/node');
    expect(readFileSync(join(root, 'etc/ecs/ecs.config'), 'utf8')).toContain('ECS_CLUSTER=shop');
    const log = calls();
    expect(log.indexOf('systemctl enable --now berth.service')).toBeLessThan(log.indexOf('ecs.service'));
    expect(log).not.toContain('shutdown');
  });
});
