import { afterEach, describe, expect, it } from 'vitest';
import { CliError, run, type CliEnv } from '../../agent/cli.js';
import { CONFIG_DEFAULTS } from '../../agent/config.js';
import { tagKeys } from '../../lib/node-contract.js';
import { createZoneMover } from '../../volume-plugin/backends/ebs/zone-move.js';
import { Ec2Model } from '../aws/ec2-model.js';

/** `berth move` (issue 22) over the EC2 model: what the operator types and reads. */
const k = tagKeys();
const TAGS = { [k.volume]: 'c1-db1', [k.host]: 'h1', [k.managedBy]: 'berth' };
let model: Ec2Model;
afterEach(() => model?.dispose());

function cli(now = Date.now, settleMs = 2) {
  const lines: string[] = [];
  const env: CliEnv = { config: CONFIG_DEFAULTS, out: (l) => lines.push(l), zoneMover: async (progress) => createZoneMover({ ec2: model.port(), keys: k, pollMs: 2, settleMs, progress, now }) };
  return { lines, run: (...argv: string[]) => run(argv, env) };
}

describe('berth move (unit)', () => {
  it('moves a stopped node, shows each step, and says the old volume is retired and kept', async () => {
    model = new Ec2Model({ throttling: false, snapshotLatencyMs: 4, createLatencyMs: 2 });
    const old = model.addVolume({ az: 'eu-west-1a', size: 50, tags: TAGS });
    const c = cli();
    expect(await c.run('move', 'c1-db1', '--zone', 'eu-west-1b', '--host', 'h2')).toBe(0);
    const text = c.lines.join('\n');
    expect(text).toMatch(/step snapshot[\s\S]*step cutover[\s\S]*moved c1-db1: vol-\w+ \(eu-west-1a\) -> vol-\w+ \(eu-west-1b\)/);
    expect(text).toMatch(new RegExp(`${old} is retired \\(tagged, not deleted\\) and kept until \\d{4}-\\d\\d-\\d\\d`));
    const fresh = model.volumes().find((v) => v.volumeId !== old)!;
    expect(fresh.tags).toMatchObject({ [k.volume]: 'c1-db1', [k.host]: 'h2' });
    expect(await c.run('move', 'c1-db1', '--status')).toBe(0);
    expect(c.lines.at(-1)).toBe('c1-db1 is not moving');
  });

  it('refuses bad input before EC2 is called', async () => {
    model = new Ec2Model({ throttling: false });
    const c = cli();
    await expect(c.run('move', 'c1-db1')).rejects.toThrow(/exactly one of --zone ZONE, --status or --abort/);
    await expect(c.run('move', 'c1-db1', '--zone', 'nowhere')).rejects.toThrow(/not an availability zone name/);
    await expect(c.run('move', 'c1-db1', '--zone', 'eu-west-1b', '--from-snapshot', 'yesterday')).rejects.toThrow(/takes latest or a snapshot id/);
    await expect(c.run('move', 'bad/name', '--zone', 'eu-west-1b')).rejects.toBeInstanceOf(CliError);
    expect(model.calls()).toBe(0);
  });

  it('--from-snapshot latest tells the snapshot and its age and changes nothing; the named snapshot then restores', async () => {
    const t = Date.parse('2026-12-06T12:00:00Z');
    model = new Ec2Model({ throttling: false, now: () => t, createLatencyMs: 2 });
    const old = model.addVolume({ az: 'eu-west-1a', size: 20, tags: TAGS });
    const snap = model.addSnapshot({ size: 20, volumeId: old, startTime: new Date(t - (3 * 60 + 12) * 60_000) });
    const c = cli(() => t);
    expect(await c.run('move', 'c1-db1', '--zone', 'eu-west-1b', '--from-snapshot', 'latest')).toBe(1);
    expect(c.lines.join('\n')).toMatch(new RegExp(`is ${snap}, taken 2026-12-06T08:48:00.000Z, 3 h 12 min ago: everything written to ${old} since then is lost[\\s\\S]*--from-snapshot ${snap}[\\s\\S]*nothing was changed`));
    expect(model.calls('CreateTags') + model.calls('CreateVolume')).toBe(0);
    expect(await c.run('move', 'c1-db1', '--zone', 'eu-west-1b', '--from-snapshot', snap)).toBe(0);
    expect(model.volume(old).tags[k.retired]).toBeDefined();
    expect(model.calls('CreateSnapshot')).toBe(0);
  });

  it('two operators moving one node at once (within EC2\'s tag lag): one moves it, the other is told who holds the move since when, and exits 1', async () => {
    model = new Ec2Model({ throttling: false, snapshotLatencyMs: 4, createLatencyMs: 2, tagLagMs: 40 });
    const old = model.addVolume({ az: 'eu-west-1a', size: 50, tags: TAGS });
    const [one, two] = [cli(Date.now, 150), cli(Date.now, 150)];
    const results = await Promise.allSettled([one.run('move', 'c1-db1', '--zone', 'eu-west-1b'), two.run('move', 'c1-db1', '--zone', 'eu-west-1b')]);
    expect(results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<number>).value)).toEqual([0]);
    const loser = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as CliError;
    expect(loser).toBeInstanceOf(CliError);
    expect(loser.exitCode).toBe(1);
    expect(loser.message).toMatch(new RegExp(`^another move of c1-db1 \\(${old}\\) is in progress since \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ \\(to eu-west-1b, step snapshot\\); run it again to resume it \\(berth move c1-db1 --zone eu-west-1b\\), or --abort \\(berth move c1-db1 --abort\\)$`));
    await model.settled();
    expect(model.volumes().filter((v) => !v.tags[k.retired])).toHaveLength(1);
    expect(model.snapshotList()).toHaveLength(1);
  });
});
