import { describe, expect, it } from 'vitest';
import { Ec2Facade } from '../volume-plugin/backends/ebs/ec2-facade.js';
import { Ec2Model } from './aws/ec2-model.js';
import { AZ, FAST_TIMING, modelClient, REGION } from './helpers/ebs.js';

describe('EC2 facade: attachments paced at EC2\'s bucket', () => {
  it('60 attaches at once: the burst goes at once, the rest at 5/s, none throttled (the SDK\'s limiter never slows the polls)', async () => {
    // The model's mutating bucket is EC2's: 50, refilling 5/s (test/aws/ec2-rules.ts).
    const model = new Ec2Model({ region: REGION, attachLatencyMs: 50, throttling: true });
    try {
      const instanceId = model.addInstance({ az: AZ });
      const ids = Array.from({ length: 60 }, () => model.addVolume({ az: AZ, size: 1 }));
      const ec2 = new Ec2Facade({ client: modelClient(model), instanceId, timing: FAST_TIMING, maxConcurrentAttachments: 60 });
      await Promise.all(ids.map((id) => ec2.attach(id)));
      for (const id of ids) expect(model.volume(id).attachment).toMatchObject({ instanceId, state: 'attached' });
      expect([model.throttledCalls('AttachVolume'), model.throttledCalls()]).toEqual([0, 0]);
      expect(model.calls('AttachVolume')).toBe(60);
      expect(model.throttledCalls()).toBe(0);
    } finally {
      model.dispose();
    }
  });
});

describe('EC2 facade: a caller that goes away while its attach waits for a slot', () => {
  it('leaves the queue at once with its own error and never calls AttachVolume; the attach ahead of it completes', async () => {
    const model = new Ec2Model({ region: REGION, attachLatencyMs: 1_500 });
    try {
      const instanceId = model.addInstance({ az: AZ });
      const [ahead, queued] = [model.addVolume({ az: AZ, size: 1 }), model.addVolume({ az: AZ, size: 1 })];
      const ec2 = new Ec2Facade({ client: modelClient(model), instanceId, timing: FAST_TIMING, maxConcurrentAttachments: 1 });
      const first = ec2.attach(ahead);
      const gone = new AbortController();
      const t0 = Date.now();
      const waiting = ec2.attach(queued, undefined, gone.signal);
      setTimeout(() => gone.abort(new Error('Mount queued: the caller has gone')), 100);
      await expect(waiting).rejects.toThrow('the caller has gone');
      expect(Date.now() - t0).toBeLessThan(1_000); // not after the 1.5 s attach ahead of it
      await first;
      expect(model.volume(ahead).attachment).toMatchObject({ instanceId, state: 'attached' });
      expect(model.volume(queued).attachment).toBeUndefined();
      expect(model.calls('AttachVolume')).toBe(1);
    } finally {
      model.dispose();
    }
  });
});
