import type { automation } from '@pulumi/pulumi';
import { describe, expect, it } from 'vitest';
import { fromEngineEvent } from './progress.js';
import { classifyFailure } from './retry.js';

const step = (op: string, type: string, kind: 'resourcePreEvent' | 'resOutputsEvent' | 'resOpFailedEvent' = 'resourcePreEvent', planning = false) =>
  ({ sequence: 1, timestamp: 0, [kind]: { metadata: { op, type, urn: `urn:pulumi:shop::berth-unit::${type}::shop-db1` }, planning, status: 1, steps: 1 } }) as unknown as automation.EngineEvent;

describe('fromEngineEvent', () => {
  it('reports resource steps as started, done or failed, with their op, type and name', () => {
    expect(fromEngineEvent(step('create', 'aws:ebs/volume:Volume'))).toEqual({
      phase: 'resource', message: 'create of aws:ebs/volume:Volume shop-db1', resource: { op: 'create', type: 'aws:ebs/volume:Volume', name: 'shop-db1', status: 'started' },
    });
    expect(fromEngineEvent(step('delete', 'aws:ecs/service:Service', 'resOutputsEvent'))?.message).toBe('delete done: aws:ecs/service:Service shop-db1');
    expect(fromEngineEvent(step('update', 'aws:ecs/service:Service', 'resOpFailedEvent'))?.resource?.status).toBe('failed');
  });
  it('leaves out what a person need not see: unchanged resources, the stack, providers, planning, info and ephemeral diagnostics', () => {
    expect(fromEngineEvent(step('same', 'aws:ebs/volume:Volume'))).toBeUndefined();
    expect(fromEngineEvent(step('create', 'pulumi:pulumi:Stack'))).toBeUndefined();
    expect(fromEngineEvent(step('create', 'pulumi:providers:aws'))).toBeUndefined();
    expect(fromEngineEvent(step('create', 'aws:ebs/volume:Volume', 'resourcePreEvent', true))).toBeUndefined();
    const diag = (severity: string, ephemeral = false) => ({ sequence: 2, timestamp: 0, diagnosticEvent: { message: ' quota close \n', color: 'never', severity, ephemeral, urn: 'urn:pulumi:shop::p::aws:ec2/instance:Instance::h1' } }) as unknown as automation.EngineEvent;
    expect(fromEngineEvent(diag('info'))).toBeUndefined();
    expect(fromEngineEvent(diag('warning', true))).toBeUndefined();
    expect(fromEngineEvent(diag('warning'))).toEqual({ phase: 'diagnostic', message: 'warning (h1): quota close' });
  });
});

describe('classifyFailure', () => {
  it('retries a concurrent update and AWS throttling or 5xx, nothing else', () => {
    expect(classifyFailure(Object.assign(new Error('x'), { name: 'ConcurrentUpdateError' }))).toBe('concurrent-update');
    expect(classifyFailure(new Error('error: [409] Conflict: Another update is currently in progress.'))).toBe('concurrent-update');
    expect(classifyFailure(new Error('creating EBS Volume: RequestLimitExceeded: Request limit exceeded'))).toBe('transient');
    expect(classifyFailure(new Error('ThrottlingException: Rate exceeded'))).toBe('transient');
    expect(classifyFailure(new Error('api error ServiceUnavailable: try later'))).toBe('transient');
    expect(classifyFailure(new Error('creating IAM Role: AccessDenied'))).toBe('permanent');
    expect(classifyFailure(new Error('InvalidParameterValue: ScheduleName'))).toBe('permanent');
  });
});
