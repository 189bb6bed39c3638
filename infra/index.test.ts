import { describe, expect, it } from 'vitest';

describe('infra workspace', () => {
  it('resolves the Pulumi SDK', async () => {
    const pulumi = await import('@pulumi/pulumi');
    expect(typeof pulumi.runtime.setMocks).toBe('function');
  });
});
