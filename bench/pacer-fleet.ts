/**
 * The mutations pacer alone, at fleet scale (issue 23): N hosts' real Pacers (the agent's, with its
 * production settings from ec2-timing.ts or --timing) sending their V AttachVolume calls each
 * against one account bucket of 50 refilling 5/s (test/aws/token-bucket.ts: a call that finds it
 * empty is refused and takes no token, as EC2's; AWS, "Request throttling for the Amazon EC2 API"),
 * hosts starting 20–40 s after the replacement began, each call answered 50–150 ms later, on the
 * virtual clock. No SDK, backend or device: a second per run where bench/fleet.ts takes minutes at
 * 100 hosts and hours at 1 000, so a pacing idea can be tried at 1 000 hosts before it is run
 * through the whole agent. It prints the time to every host's last accepted call against the floor
 * (boot 20 s + (N × V − 50) / 5), and the calls refused.
 *
 *   node --import tsx bench/pacer-fleet.ts [--hosts 100,1000] [--volumes 8] [--timing '{"maxMutationGapMs":20000}'] [--brownout 60,300]
 */
import { parseArgs } from 'node:util';
import { sleep } from '../lib/sleep.js';
import { DEFAULT_EC2_TIMING, type Ec2Timing } from '../volume-plugin/backends/ebs/ec2-timing.js';
import { Pacer } from '../volume-plugin/backends/ebs/pacer.js';
import { TokenBucket } from '../test/aws/token-bucket.js';
import { VirtualClock } from '../test/fakes/virtual-clock.js';
import { rng } from '../test/helpers/rng.js';

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '100,1000' },
    volumes: { type: 'string', default: '8' },
    timing: { type: 'string', default: '' },
    /** Every call refused from the first to the second number of seconds. */
    brownout: { type: 'string', default: '' },
    seed: { type: 'string', default: '23' },
  },
});

async function run(hosts: number, volumes: number, timing: Ec2Timing): Promise<string> {
  const random = rng(Number(values.seed)).next;
  const clock = VirtualClock.install();
  try {
    const t0 = Date.now();
    const bucket = new TokenBucket(50, 5, () => Date.now());
    const [from = Infinity, to = Infinity] = values.brownout ? values.brownout.split(',').map((x) => Number(x) * 1000) : [];
    let calls = 0;
    let refused = 0;
    let acceptedAtBrownoutEnd: number | undefined;
    const done: number[] = [];
    const host = async () => {
      await sleep(20_000 + random() * 20_000);
      const pacer = new Pacer({
        burst: timing.mutationBurst,
        perSecond: timing.mutationsPerSecond,
        backoff: timing.mutationBackoff,
        recovery: timing.mutationRecovery,
        maxGapMs: timing.maxMutationGapMs,
        initialWindow: timing.mutationInitialWindow,
        random,
      });
      await Promise.all(
        Array.from({ length: volumes }, async () => {
          for (;;) {
            await pacer.take();
            const sentAt = Date.now();
            await sleep(50 + random() * 100);
            calls += 1;
            const at = Date.now() - t0;
            if (at >= to && acceptedAtBrownoutEnd === undefined) acceptedAtBrownoutEnd = calls - refused;
            if (!(at >= from && at < to) && bucket.take()) {
              pacer.succeeded();
              return;
            }
            refused += 1;
            pacer.throttled(sentAt);
          }
        }),
      );
      done.push(Date.now() - t0);
    };
    for (let i = 0; i < hosts; i++) void host();
    await clock.runUntil(() => done.length === hosts, 24 * 3_600_000);
    const all = Math.max(...done);
    const n = hosts * volumes;
    const floor = acceptedAtBrownoutEnd !== undefined ? to + (Math.max(0, n - acceptedAtBrownoutEnd - 50) / 5) * 1000 : Math.max(40_000, 20_000 + (Math.max(0, n - 50) / 5) * 1000);
    done.sort((a, b) => a - b);
    return (
      `${hosts} hosts × ${volumes}: all done ${(all / 1000).toFixed(1)} s, floor ${(floor / 1000).toFixed(1)} s (${(all / floor).toFixed(2)}×), ` +
      `host p50 ${(done[Math.floor(hosts / 2)]! / 1000).toFixed(1)} s; calls ${calls}, refused ${refused} (${((100 * refused) / calls).toFixed(1)} %, ${(refused / n).toFixed(2)} per volume)`
    );
  } finally {
    clock.uninstall();
  }
}

const timing: Ec2Timing = { ...DEFAULT_EC2_TIMING, ...(values.timing ? (JSON.parse(values.timing) as Partial<Ec2Timing>) : {}) };
console.log(`pacer only, one account bucket 50 + 5/s, virtual clock; timing ${values.timing || 'production'}${values.brownout ? `, every call refused ${values.brownout.replace(',', '–')} s` : ''}`);
for (const hosts of values.hosts.split(',').map(Number)) console.log(`  ${await run(hosts, Number(values.volumes), timing)}`);
