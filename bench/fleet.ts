/**
 * A fleet sharing one AWS account (issue 23): per scenario, the floor the account's token
 * buckets allow, then berth and the seed's approach on the same model with the same latency
 * draws: time to every host ready (its tasks' Mounts done, /readyz ready), per-host p50/p99,
 * calls and throttled calls per action, hosts stuck, Mounts failed (and how many for throttling),
 * and the steady state's DescribeVolumes per host per minute. test/fakes/fleet.ts is the
 * simulation; docs/operations.md has the figures and docs/design.md §6 the design.
 *
 *   node --import tsx bench/fleet.ts [--hosts 1000] [--volumes 8] [--scenarios replace,rolling,brownout,shared]
 *        [--agents berth,seed] [--real] [--scale 10] [--brownout-at 300] [--brownout-for 300] [--steady 600] [--schedule on|off]
 *
 * Virtual clock unless --real. --real runs in real time with the buckets' refills and the
 * latencies divided by --scale (default 1): 100 hosts × 8 at --scale 1 is a few minutes.
 *
 * Targets (issue 23): replace at 1 000 × 8 ready within 1.15× the floor, 0 stuck, 0 Mounts failed
 * for throttling, throttled < 5 % of calls; the same at 100 × 8 in real time within 1.2×;
 * brownout: ready within 1.2× the floor of the work left when it ends; steady state ≤ 2
 * DescribeVolumes per host per minute; never slower than the seed.
 */
import { parseArgs } from 'node:util';
import type { Ec2Timing } from '../volume-plugin/backends/ebs/ec2-timing.js';
import { DEFAULT_BUCKETS, type BucketLimit, type BucketName } from '../test/aws/ec2-model.js';
import { runFleet, warmUpSdk, type FleetOptions, type FleetResult, type Scenario } from '../test/fakes/fleet.js';
import { VirtualClock } from '../test/fakes/virtual-clock.js';
import { percentile } from './lib.js';

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '1000' },
    volumes: { type: 'string', default: '8' },
    scenarios: { type: 'string', default: 'replace,rolling,brownout,shared' },
    agents: { type: 'string', default: 'berth,seed' },
    real: { type: 'boolean', default: false },
    scale: { type: 'string', default: '1' },
    'brownout-at': { type: 'string', default: '300' },
    'brownout-for': { type: 'string', default: '300' },
    'brownout-kind': { type: 'string', default: 'throttle' },
    steady: { type: 'string', default: '600' },
    seed: { type: 'string', default: '23' },
    /** on: berth's agents share the account's EC2 schedule (an in-memory store standing for S3); off: each paces itself. */
    schedule: { type: 'string', default: 'on' },
    /** JSON of Ec2Timing fields to try instead of the defaults, e.g. '{"mutationBackoff":1.5}'. */
    timing: { type: 'string', default: '' },
  },
});

const hosts = Number(values.hosts);
const volumesPerHost = Number(values.volumes);
const scale = Number(values.scale);
const scenarios = values.scenarios.split(',').filter(Boolean) as Scenario[];
const agents = values.agents.split(',').filter(Boolean) as ('berth' | 'seed')[];
/** --scale N: buckets refill N× slower and latencies are N× shorter… no: latencies ÷ N and refills stay, so a real run is N× shorter. */
const buckets = Object.fromEntries(Object.entries(DEFAULT_BUCKETS).map(([k, b]) => [k, { capacity: b.capacity, refillPerSecond: b.refillPerSecond * scale }])) as Record<BucketName, BucketLimit>;

const s = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`);

function line(agent: string, r: FleetResult): string {
  const ready = r.hosts.map((h) => h.readyMs).filter((x): x is number => x !== undefined);
  const calls = [...r.calls].sort(([a], [b]) => a.localeCompare(b));
  const total = calls.reduce((a, [, c]) => a + c.calls, 0);
  const throttled = calls.reduce((a, [, c]) => a + c.throttled, 0);
  const ratio = r.allReadyMs === undefined ? '—' : `${(r.allReadyMs / r.floor.ms).toFixed(2)}×`;
  const perAction = calls.map(([k, c]) => `${k} ${c.calls}/${c.throttled}`).join(', ');
  return (
    `  ${agent.padEnd(5)} all ready ${s(r.allReadyMs).padStart(9)} (${ratio} the floor)  per host p50 ${s(ready.length ? percentile(ready, 50) : undefined)} p99 ${s(ready.length ? percentile(ready, 99) : undefined)}` +
    `  stuck ${r.stuck}  Mounts failed ${r.mountsFailed} (throttling ${r.mountsFailedThrottled})` +
    `  calls ${total}, throttled ${throttled} (${total ? ((100 * throttled) / total).toFixed(1) : '0'} %): ${perAction}` +
    (r.otherCalls.size ? `  the other tool: ${[...r.otherCalls].sort(([x], [y]) => x.localeCompare(y)).map(([k, c]) => `${k} ${c.calls}/${c.throttled}`).join(', ')}` : '') +
    (r.schedule ? `  schedule store: ${r.schedule.reads} reads, ${r.schedule.writes} writes, ${r.schedule.lostRaces} lost races${r.schedule.failed ? `, ${r.schedule.failed} failed` : ''}` : '') +
    (r.steadyDescribesPerHostMinute !== undefined ? `  steady DescribeVolumes/host/min ${r.steadyDescribesPerHostMinute.toFixed(2)}` : '') +
    `  [${r.realSeconds.toFixed(0)} s real, ${r.cpuSeconds.toFixed(0)} s CPU: ${((1000 * r.cpuSeconds) / r.hosts.length).toFixed(0)} ms per host]`
  );
}

await warmUpSdk();
console.log(
  `fleet: ${hosts} hosts × ${volumesPerHost} volumes, one account (AttachVolume/DetachVolume ${buckets.volumeMutating.capacity} + ${buckets.volumeMutating.refillPerSecond}/s, ` +
    `DescribeVolumes ${buckets.describeVolumes.capacity} + ${buckets.describeVolumes.refillPerSecond}/s, CreateTags ${buckets.tags.capacity} + ${buckets.tags.refillPerSecond}/s), ` +
    `berth ${values.schedule !== 'off' ? "on the account's shared EC2 schedule" : 'pacing itself alone (no schedule)'}, ` +
    `${values.real ? `real time${scale !== 1 ? `, latencies ÷ ${scale}, refills × ${scale}` : ''}` : 'virtual clock'}; calls shown as calls/throttled`,
);
for (const scenario of scenarios) {
  const results = new Map<string, FleetResult>();
  for (const agent of agents) {
    const clock = values.real ? undefined : VirtualClock.install();
    try {
      const opts: FleetOptions = {
        hosts,
        volumesPerHost,
        agent,
        scenario,
        seed: Number(values.seed),
        buckets,
        latencyScale: 1 / scale,
        brownout: { atMs: (Number(values['brownout-at']) * 1000) / scale, forMs: (Number(values['brownout-for']) * 1000) / scale, kind: values['brownout-kind'] as 'throttle' | '5xx' },
        steadyMs: scenario === 'replace' ? (Number(values.steady) * 1000) / scale : 0,
        schedule: values.schedule !== 'off',
        ...(clock ? { clock } : {}),
        progress: (l) => console.error(`${scenario} ${agent}${l}`),
        ...(values.timing ? { timing: JSON.parse(values.timing) as Partial<Ec2Timing> } : {}),
      };
      results.set(agent, await runFleet(opts));
    } finally {
      clock?.uninstall();
    }
  }
  const first = [...results.values()][0]!;
  console.log(`${scenario}: floor ${s(first.floor.ms)} (${first.floor.how})`);
  for (const [agent, r] of results) console.log(line(agent, r));
  const berth = results.get('berth');
  const seed = results.get('seed');
  if (berth?.allReadyMs !== undefined && seed) {
    const seedMs = seed.allReadyMs;
    // The boot (20–40 s) is in both and neither agent's doing: also compare from each agent's own start.
    const own = (r: FleetResult) => r.hosts.map((h) => h.ownMs).filter((x): x is number => x !== undefined);
    const berthOwn = percentile(own(berth), 50);
    const seedOwn = seed.stuck === 0 ? percentile(own(seed), 50) : undefined;
    console.log(
      `  berth vs seed: ${seedMs === undefined ? `seed never ready (${seed.stuck} hosts stuck)` : `×${(seedMs / berth.allReadyMs).toFixed(2)} faster`}` +
        (seedOwn === undefined ? '' : `; from each agent's start to ready, median host ${s(berthOwn)} vs ${s(seedOwn)}: ×${(seedOwn / berthOwn).toFixed(2)}`),
    );
  }
}
