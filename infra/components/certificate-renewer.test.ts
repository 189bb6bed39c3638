import * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { recordResources, settled, type Declared } from '../test/pulumi-mocks.js';

let declared: Declared[] = [];

beforeAll(() => {
  declared = recordResources();
});

const outputOf = <T>(o: pulumi.Output<T>): Promise<T> => new Promise((resolve) => o.apply(resolve));

describe('CertificateRenewer', () => {
  it('declares a scheduled Lambda with least-privilege IAM and a 14-day expiry alarm', async () => {
    const { CertificateRenewer } = await import('./certificate-renewer.js');
    const renewer = new CertificateRenewer('tls', {
      bucketName: 'env-bucket',
      bucketRegion: 'eu-west-1',
      kmsKeyArn: 'arn:aws:kms:eu-west-1:111:key/abc',
      hostedZoneId: 'Z123',
      domains: ['db.example.com', '*.db.example.com'],
      email: 'ops@example.com',
      code: new pulumi.asset.AssetArchive({}),
    });
    await Promise.all([outputOf(renewer.alarmArn), outputOf(renewer.functionArn)]);
    await settled(declared);

    const byType = (t: string) => declared.filter((d) => d.type === t);
    const fn = byType('aws:lambda/function:Function')[0]!;
    expect(fn.inputs).toMatchObject({ handler: 'traefik/renewer/handler.handler', runtime: 'nodejs24.x' });
    expect((fn.inputs.environment as { variables: Record<string, string> }).variables).toMatchObject({
      RENEWER_BUCKET: 'env-bucket',
      RENEWER_BUCKET_REGION: 'eu-west-1',
      RENEWER_DOMAINS: 'db.example.com,*.db.example.com',
      RENEWER_HOSTED_ZONE_ID: 'Z123',
    });
    expect(byType('aws:cloudwatch/eventRule:EventRule')[0]!.inputs.scheduleExpression).toBe('rate(1 day)');
    expect(byType('aws:cloudwatch/eventTarget:EventTarget')).toHaveLength(1);
    expect(byType('aws:lambda/permission:Permission')[0]!.inputs).toMatchObject({ action: 'lambda:InvokeFunction', principal: 'events.amazonaws.com' });

    const policy = JSON.parse(byType('aws:iam/rolePolicy:RolePolicy')[0]!.inputs.policy as string) as { Statement: Array<{ Action: string[]; Resource: string }> };
    for (const st of policy.Statement) {
      expect(st.Action.every((a) => !a.includes('*'))).toBe(true);
    }
    expect(policy.Statement.find((s) => s.Action.includes('s3:PutObject'))!.Resource).toBe('arn:aws:s3:::env-bucket/tls/*');
    expect(policy.Statement.find((s) => s.Action.includes('route53:ChangeResourceRecordSets'))!.Resource).toBe('arn:aws:route53:::hostedzone/Z123');

    const alarm = byType('aws:cloudwatch/metricAlarm:MetricAlarm')[0]!;
    expect(alarm.inputs).toMatchObject({ namespace: 'Berth/Certificates', metricName: 'DaysToExpiry', threshold: 14, comparisonOperator: 'LessThanThreshold', treatMissingData: 'breaching' });
  });

  it('refuses bad arguments before declaring anything', async () => {
    const { validateRenewerArgs } = await import('./certificate-renewer.js');
    expect(() => validateRenewerArgs({ domains: [], email: 'a@b.c' })).toThrow(/at least one/);
    expect(() => validateRenewerArgs({ domains: ['db.example.com', 'bad domain'], email: 'a@b.c' })).toThrow(/not DNS names: bad domain/);
    expect(() => validateRenewerArgs({ domains: ['a.example.com'], email: 'nobody' })).toThrow(/invalid email/);
    expect(() => validateRenewerArgs({ domains: ['a.example.com'], email: 'a@b.c', alarmDays: 40 })).toThrow(/alarmDays/);
  });
});
