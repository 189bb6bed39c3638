import { afterEach, describe, expect, it } from 'vitest';
import { Pacer, RetryGate } from '../../../volume-plugin/backends/ebs/pacer.js';
import { DEFAULT_EC2_TIMING } from '../../../volume-plugin/backends/ebs/ec2-timing.js';
import { isServerFault, isThrottled } from '../../../volume-plugin/backends/ebs/ec2-errors.js';
import { TokenBucket } from '../../aws/token-bucket.js';
import { VirtualClock } from '../../fakes/virtual-clock.js';

/**
 * The pacing of an agent's EC2 calls on a shared account (docs/design.md §6, "Sharing the
 * account"): the mutations' pacer and the reads' retry gate, against EC2's rule that a call
 * finding the bucket empty is refused and takes no token (test/aws/token-bucket.ts; AWS,
 * "Request throttling for the Amazon EC2 API"). Time is virtual (test/fakes/virtual-clock.ts), so
 * minutes of pacing run in milliseconds.
 */
let clock: VirtualClock | undefined;
afterEach(() => {
  clock?.uninstall();
  clock = undefined;
});

/** A pacer with the agent's production settings (ec2-timing.ts), its jitter pinned. */
const productionPacer = () => {
  const t = DEFAULT_EC2_TIMING;
  return new Pacer({
    burst: t.mutationBurst,
    perSecond: t.mutationsPerSecond,
    backoff: t.mutationBackoff,
    recovery: t.mutationRecovery,
    maxGapMs: t.maxMutationGapMs,
    initialWindow: t.mutationInitialWindow,
    random: () => 0.5,
  });
};

const refused = () => Object.assign(new Error('Request limit exceeded.'), { name: 'RequestLimitExceeded', $fault: 'client' });

describe('the mutations pacer', () => {
  it('a host whose share of the account is 1 call/s gets it, and settles at no more than one refusal per accepted call', async () => {
    clock = VirtualClock.install();
    // The account's bucket as this host sees it once others take the rest: 1 token, 1/s.
    const share = new TokenBucket(1, 1, () => Date.now());
    const pacer = productionPacer();
    let accepted = 0;
    let refusals = 0;
    const started = Date.now();
    const worker = async () => {
      while (accepted < 120) {
        await pacer.take();
        const sentAt = Date.now();
        if (share.take()) {
          accepted += 1;
          pacer.succeeded();
        } else {
          refusals += 1;
          pacer.throttled(sentAt);
        }
      }
    };
    let finished = 0;
    const work = Promise.all(Array.from({ length: 8 }, () => worker().finally(() => (finished += 1))));
    await clock.runUntil(() => accepted >= 120, 3_600_000);
    const seconds = (Date.now() - started) / 1000;
    await clock.runUntil(() => finished === 8, 60_000);
    await work;
    // It uses its share (120 calls at 1/s take 120 s) and does not hammer the account for it: the
    // controller's equilibrium (×2 per refusal, once per round, ×0.5 per accepted call) is one
    // refusal per accepted call at most, whatever the share (and the 8 callers' last tries).
    expect(seconds).toBeLessThan(120 / 0.8);
    expect(refusals).toBeLessThanOrEqual(accepted + 8);
  });

  it('8 calls refused at once (a burst sent before the first answer) halve the rate once, not 8 times', async () => {
    const pacer = productionPacer();
    const sentAt = Date.now();
    await Promise.all(Array.from({ length: 2 }, () => pacer.take()));
    for (let i = 0; i < 2; i++) pacer.throttled(sentAt);
    expect(pacer.contended).toBe(true);
    expect(pacer.rate).toBeCloseTo(DEFAULT_EC2_TIMING.mutationsPerSecond / DEFAULT_EC2_TIMING.mutationBackoff);
  });

  it('however often EC2 refuses, the gap never passes maxMutationGapMs: no agent sleeps through a budget that came back', async () => {
    clock = VirtualClock.install();
    const pacer = productionPacer();
    for (let i = 0; i < 30; i++) {
      const turn = pacer.take();
      await clock.runUntil(() => false, 0);
      await clock.advance(DEFAULT_EC2_TIMING.maxMutationGapMs * 2);
      await turn;
      pacer.throttled(Date.now());
    }
    expect(pacer.rate).toBeGreaterThanOrEqual(1000 / DEFAULT_EC2_TIMING.maxMutationGapMs);
  });

  it('a caller whose signal aborts while queued leaves with its own reason and takes no token', async () => {
    clock = VirtualClock.install();
    const pacer = new Pacer({ burst: 1, perSecond: 1, backoff: 2, recovery: 0.5, maxGapMs: 10_000 });
    await pacer.take();
    pacer.succeeded();
    const gone = new AbortController();
    const queued = pacer.take(gone.signal);
    const outcome = queued.then(
      () => 'granted',
      (err: unknown) => (err as Error).message,
    );
    await clock.advance(300);
    gone.abort(new Error('the Mount gave up'));
    expect(await outcome).toBe('the Mount gave up');
    // The next caller gets the token the one that left did not take: at the first refill, 1 s after the first call.
    const t0 = Date.now();
    const next = pacer.take();
    await clock.runUntil(() => false, 1_000);
    await next;
    expect(Date.now() - t0).toBeLessThanOrEqual(1_000);
  });
});

describe('the retry gate of reads and tags', () => {
  const gate = () => new RetryGate({ firstMs: 1_000, maxMs: 10_000, refused: (err) => isThrottled(err) || isServerFault(err), random: () => 0.5 });

  it('while EC2 refuses, an agent tries one call at a time, jittered, doubling to 10 s, however many callers wait; then all go through at once', async () => {
    clock = VirtualClock.install();
    const g = gate();
    const refuseUntil = Date.now() + 60_000;
    let calls = 0;
    const call = async () => {
      calls += 1;
      if (Date.now() < refuseUntil) throw refused();
      return 'ok';
    };
    const callers = Array.from({ length: 20 }, () => g.run(call, undefined, Date.now() + 120_000));
    const all = Promise.all(callers);
    await clock.runUntil(() => false, 60_000);
    // 20 first tries, then one call per pause (1, 2, 4, 8, 10, 10, … s): about a dozen in the minute, not 20 × 8 SDK attempts.
    expect(calls).toBeLessThan(20 + 15);
    await clock.runUntil(() => false, 20_000);
    expect(await all).toEqual(Array.from({ length: 20 }, () => 'ok'));
    expect(g.closed).toBe(false);
  });

  it('a caller whose time runs out while EC2 still refuses fails with EC2\'s refusal; one whose signal aborts leaves with its reason, having sent nothing more', async () => {
    clock = VirtualClock.install();
    const g = gate();
    let calls = 0;
    const call = async () => {
      calls += 1;
      throw refused();
    };
    const timedOut = g.run(call, undefined, Date.now() + 5_000).catch((err: unknown) => (err as Error).name);
    const gone = new AbortController();
    const aborted = g.run(call, gone.signal, Date.now() + 60_000).catch((err: unknown) => (err as Error).message);
    await clock.advance(100);
    const before = calls;
    gone.abort(new Error('dockerd gave up'));
    expect(await aborted).toBe('dockerd gave up');
    await clock.runUntil(() => false, 10_000);
    expect(await timedOut).toBe('RequestLimitExceeded');
    // The aborted caller sent nothing after it left; the other tried within its 5 s.
    expect(calls - before).toBeLessThanOrEqual(3);
  });

  it('an error that says nothing of the budget reaches the caller at once, untried again', async () => {
    const g = gate();
    let calls = 0;
    const err = await g
      .run(
        async () => {
          calls += 1;
          throw Object.assign(new Error('no such volume'), { name: 'InvalidVolume.NotFound', $fault: 'client' });
        },
        undefined,
        Date.now() + 60_000,
      )
      .catch((e: unknown) => e as Error);
    expect(err.name).toBe('InvalidVolume.NotFound');
    expect(calls).toBe(1);
    expect(g.closed).toBe(false);
  });
});
