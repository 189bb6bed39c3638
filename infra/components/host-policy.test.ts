import { describe, expect, it } from 'vitest';
import { allows, type RequestContext } from '../../test/aws/iam-policy.js';
import { ec2ScheduleStatements, hostEbsPolicy } from './host-policy.js';

/** What a compromised host could do with its instance profile, evaluated as IAM evaluates it. */
const policy = hostEbsPolicy({ region: 'eu-west-1', accountId: '111122223333', environment: 'prod', cluster: 'shop', hostId: 'shop-h1' });
const volume = 'arn:aws:ec2:eu-west-1:111122223333:volume/vol-1';
const instance = 'arn:aws:ec2:eu-west-1:111122223333:instance/i-1';
const onVolumeOf = (cluster: string, host: string, environment = 'prod'): RequestContext => ({
  'aws:ResourceTag/berth:cluster': cluster, 'aws:ResourceTag/berth:environment': environment, 'aws:ResourceTag/berth:host': host, 'aws:ResourceTag/berth:managed-by': 'berth',
});
const tagging = (tags: Record<string, string>, resource: RequestContext = onVolumeOf('shop', 'shop-h2')): RequestContext => ({
  ...resource, 'aws:TagKeys': Object.keys(tags), ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:RequestTag/${k}`, v])),
});
const can = (action: string, resource: string, ctx: RequestContext) => allows([policy], action, resource, ctx);

describe('host policy: tags', () => {
  it('lets a host claim a volume of its cluster for itself and record attachment and state', () => {
    expect(can('ec2:CreateTags', volume, tagging({ 'berth:host': 'shop-h1' }))).toBe(true);
    expect(can('ec2:CreateTags', volume, tagging({ 'berth:state': 'attached', 'berth:attached-to': 'i-1' }))).toBe(true);
    expect(can('ec2:CreateTags', instance, tagging({ 'berth:ready': 'true', 'berth:ready-count': '3' }, { 'aws:ResourceTag/berth:cluster': 'shop', 'aws:ResourceTag/berth:environment': 'prod' }))).toBe(true);
  });
  it('refuses retagging a volume to another host, moving it to another cluster, or any key that is not berth\'s', () => {
    expect(can('ec2:CreateTags', volume, tagging({ 'berth:host': 'shop-h2' }))).toBe(false);
    expect(can('ec2:CreateTags', volume, tagging({ 'berth:cluster': 'other' }))).toBe(false);
    expect(can('ec2:CreateTags', volume, tagging({ 'berth:cluster': 'shop' }))).toBe(false); // never changeable, not even to itself
    expect(can('ec2:CreateTags', volume, tagging({ 'berth:managed-by': 'someone' }))).toBe(false);
    expect(can('ec2:CreateTags', volume, tagging({ Owner: 'me' }))).toBe(false);
    expect(can('ec2:CreateTags', volume, tagging({ 'berth:host': 'shop-h1' }, onVolumeOf('other', 'other-h1')))).toBe(false);
  });
  it('tags a new volume only for its own cluster and host', () => {
    const atCreate = (tags: Record<string, string>) => ({ ...tagging(tags, {}), 'ec2:CreateAction': 'CreateVolume' });
    const fresh = { 'berth:managed-by': 'berth', 'berth:cluster': 'shop', 'berth:environment': 'prod', 'berth:volume': 'pg', Name: 'pg' };
    expect(can('ec2:CreateTags', volume, atCreate({ ...fresh, 'berth:host': 'shop-h1' }))).toBe(true);
    expect(can('ec2:CreateTags', volume, atCreate({ ...fresh, 'berth:host': 'shop-h2' }))).toBe(false);
    expect(can('ec2:CreateTags', volume, atCreate({ ...fresh, 'berth:cluster': 'other', 'berth:host': 'shop-h1' }))).toBe(false);
    expect(can('ec2:CreateVolume', volume, tagging({ ...fresh, 'berth:host': 'shop-h2' }, {}))).toBe(false);
    expect(can('ec2:CreateTags', volume, atCreate({ ...fresh, 'berth:environment': 'staging', 'berth:host': 'shop-h1' }))).toBe(false);
    expect(can('ec2:CreateVolume', volume, tagging({ ...fresh, 'berth:environment': 'staging', 'berth:host': 'shop-h1' }, {}))).toBe(false);
  });
  it('touches nothing of another environment, though cluster and host names are the same', () => {
    const staging = onVolumeOf('shop', 'shop-h1', 'staging');
    for (const action of ['ec2:AttachVolume', 'ec2:DetachVolume', 'ec2:DeleteVolume']) expect(can(action, volume, staging), action).toBe(false);
    expect(can('ec2:AttachVolume', instance, { 'aws:ResourceTag/berth:cluster': 'shop', 'aws:ResourceTag/berth:environment': 'staging' })).toBe(false);
    expect(can('ec2:CreateTags', volume, tagging({ 'berth:host': 'shop-h1' }, staging))).toBe(false);
    expect(can('ec2:DeleteTags', volume, { ...staging, 'aws:TagKeys': ['berth:host'] })).toBe(false);
    // An untagged (older) volume is refused too: docs/deploy.md, "Environments", says how to tag it.
    const { ['aws:ResourceTag/berth:environment']: _, ...untagged } = onVolumeOf('shop', 'shop-h1');
    expect(can('ec2:AttachVolume', volume, untagged)).toBe(false);
    expect(can('ec2:AttachVolume', volume, onVolumeOf('shop', 'shop-h1'))).toBe(true);
  });
  it('removes berth\'s claim and state only from volumes tagged to itself', () => {
    const untag = (host: string) => ({ ...onVolumeOf('shop', host), 'aws:TagKeys': ['berth:host', 'berth:attached-to', 'berth:state'] });
    expect(can('ec2:DeleteTags', volume, untag('shop-h1'))).toBe(true);
    expect(can('ec2:DeleteTags', volume, untag('shop-h2'))).toBe(false);
    expect(can('ec2:DeleteTags', volume, { ...onVolumeOf('shop', 'shop-h1'), 'aws:TagKeys': ['berth:cluster'] })).toBe(false);
  });
});

describe('host policy: restore from a snapshot', () => {
  it('may create a volume from a snapshot of its own cluster, not from anyone else\'s', () => {
    const snapshot = 'arn:aws:ec2:eu-west-1::snapshot/snap-1';
    expect(can('ec2:CreateVolume', snapshot, { 'aws:ResourceTag/berth:cluster': 'shop', 'aws:ResourceTag/berth:environment': 'prod' })).toBe(true);
    expect(can('ec2:CreateVolume', snapshot, { 'aws:ResourceTag/berth:cluster': 'shop', 'aws:ResourceTag/berth:environment': 'staging' })).toBe(false);
    expect(can('ec2:CreateVolume', snapshot, { 'aws:ResourceTag/berth:cluster': 'other' })).toBe(false);
    expect(can('ec2:CreateVolume', snapshot, {})).toBe(false);
  });
  it('takes every tag key from the node contract, so another BERTH_TAG_PREFIX gets a policy that works with it', () => {
    const acme = hostEbsPolicy({ region: 'eu-west-1', accountId: '111122223333', environment: 'prod', cluster: 'shop', hostId: 'shop-h1', tagPrefix: 'acme:' });
    expect(JSON.stringify(acme)).not.toContain('berth:');
    const ctx = { 'aws:ResourceTag/acme:cluster': 'shop', 'aws:ResourceTag/acme:environment': 'prod', 'aws:ResourceTag/acme:managed-by': 'berth' };
    expect(allows([acme], 'ec2:AttachVolume', volume, ctx)).toBe(true);
    expect(allows([acme], 'ec2:AttachVolume', volume, { 'aws:ResourceTag/berth:cluster': 'shop', 'aws:ResourceTag/berth:managed-by': 'berth' })).toBe(false);
  });
});

describe('host policy: the account\'s EC2 schedule', () => {
  const prod = { Statement: ec2ScheduleStatements({ bucket: 'env-prod', bucketRegion: 'us-east-1', region: 'eu-west-1', kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/b' }) };
  const may = (action: string, resource: string, ctx: RequestContext = {}) => allows([prod], action, resource, ctx);
  it('reads and writes its Region\'s schedule and the store\'s check object, nothing else of the bucket', () => {
    for (const key of ['ec2-schedule/eu-west-1.json', 'ec2-schedule/eu-west-1.json.check']) {
      for (const action of ['s3:GetObject', 's3:PutObject']) expect(may(action, `arn:aws:s3:::env-prod/${key}`), `${action} ${key}`).toBe(true);
      expect(may('s3:DeleteObject', `arn:aws:s3:::env-prod/${key}`)).toBe(false);
    }
    expect(may('s3:PutObject', 'arn:aws:s3:::env-prod/ec2-schedule/us-east-1.json')).toBe(false); // another Region's
    expect(may('s3:PutObject', 'arn:aws:s3:::env-prod/ec2-schedule/eu-west-1.jsonx')).toBe(false);
    expect(may('s3:PutObject', 'arn:aws:s3:::env-prod/other/eu-west-1.json')).toBe(false);
    expect(may('s3:GetObject', 'arn:aws:s3:::env-prod/tls/key.pem')).toBe(false);
    expect(may('s3:ListBucket', 'arn:aws:s3:::env-prod')).toBe(false);
  });
  it('two environments of one account each write only their own schedule (their own bucket)', () => {
    const staging = { Statement: ec2ScheduleStatements({ bucket: 'env-staging', bucketRegion: 'us-east-1', region: 'eu-west-1' }) };
    expect(may('s3:PutObject', 'arn:aws:s3:::env-staging/ec2-schedule/eu-west-1.json')).toBe(false);
    expect(allows([staging], 's3:PutObject', 'arn:aws:s3:::env-prod/ec2-schedule/eu-west-1.json')).toBe(false);
    expect(allows([staging], 's3:PutObject', 'arn:aws:s3:::env-staging/ec2-schedule/eu-west-1.json')).toBe(true);
  });
  it('uses the bucket\'s key only through S3 and for this bucket\'s objects', () => {
    const key = 'arn:aws:kms:us-east-1:111122223333:key/b';
    const viaS3 = { 'kms:ViaService': 's3.us-east-1.amazonaws.com', 'kms:EncryptionContext:aws:s3:arn': 'arn:aws:s3:::env-prod' };
    expect(may('kms:GenerateDataKey', key, viaS3)).toBe(true);
    expect(may('kms:Decrypt', key, viaS3)).toBe(true);
    expect(may('kms:Decrypt', key, { ...viaS3, 'kms:EncryptionContext:aws:s3:arn': 'arn:aws:s3:::env-staging' })).toBe(false);
    expect(may('kms:Decrypt', key, { ...viaS3, 'kms:ViaService': 'ec2.us-east-1.amazonaws.com' })).toBe(false);
    expect(may('kms:Encrypt', key, viaS3)).toBe(false);
    expect(ec2ScheduleStatements({ bucket: 'env-prod', bucketRegion: 'us-east-1', region: 'eu-west-1' }).flatMap((s) => s.Action)).toEqual(['s3:GetObject', 's3:PutObject']);
  });
});
