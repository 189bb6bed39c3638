import { DescribeInstancesCommand, DescribeVolumesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeServicesCommand, DescribeTasksCommand, ECSClient, ListTasksCommand } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';

/**
 * Cluster `shop` ready as the cluster API reads it (cluster-api/readiness.ts): host shop-h1 tagged
 * ready, node shop-db1's volume mounted, its one task running. Mocks every EC2Client and ECSClient
 * until `restore()`.
 */
export function mockShopReady(): { restore(): void } {
  const ec2 = mockClient(EC2Client);
  ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [{ InstanceId: 'i-1', Tags: [{ Key: 'berth:host', Value: 'shop-h1' }, { Key: 'berth:ready', Value: 'true' }] }] }] });
  ec2.on(DescribeVolumesCommand).resolves({ Volumes: [{ VolumeId: 'vol-1', Tags: [{ Key: 'berth:volume', Value: 'shop-db1' }, { Key: 'berth:state', Value: 'mounted' }] }] });
  const ecs = mockClient(ECSClient);
  ecs.on(DescribeServicesCommand).resolves({ services: [{ serviceName: 'shop-db1', status: 'ACTIVE', taskDefinition: 'td:1', runningCount: 1 }] });
  ecs.on(ListTasksCommand, { desiredStatus: 'RUNNING' }).resolves({ taskArns: ['t1'] });
  ecs.on(ListTasksCommand, { desiredStatus: 'STOPPED' }).resolves({ taskArns: [] });
  ecs.on(DescribeTasksCommand).resolves({ tasks: [{ taskArn: 't1', lastStatus: 'RUNNING', desiredStatus: 'RUNNING', taskDefinitionArn: 'td:1' }] });
  return {
    restore() {
      ec2.restore();
      ecs.restore();
    },
  };
}
