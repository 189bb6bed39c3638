import type { Declared } from '../test/pulumi-mocks.js';

/**
 * Which AWS API call each Pulumi resource type declared by berth becomes, and the input it
 * sends, built from the resource's inputs: the constraint test checks that input against the
 * call's shape in AWS's model. A type declared but missing here fails the test: map it.
 *
 * Names AWS or Pulumi generate are modelled at their longest: Pulumi's auto-name is the logical
 * name plus `-` and 7 hex characters; a `namePrefix`/`bucketPrefix` gets 26 characters from the
 * provider (terraform-provider-aws `internal/create/naming.go`, `id.UniqueId()`).
 */
export interface ApiCall {
  readonly service: string;
  readonly operation: string;
  readonly input: Record<string, unknown>;
}

type Mapper = (d: Declared) => ApiCall[];

/** The physical name Pulumi or AWS would use for a name property (explicit, prefixed, or auto). */
export function physicalName(d: Declared, prop = 'name', prefixProp = 'namePrefix'): string {
  const explicit = d.inputs[prop];
  if (typeof explicit === 'string') return explicit;
  const prefix = d.inputs[prefixProp];
  if (typeof prefix === 'string') return `${prefix}${'0'.repeat(26)}`;
  return `${d.name}-0000000`;
}

const tagSpec = (resourceType: string, tags: unknown) => (tags ? [{ ResourceType: resourceType, Tags: tags }] : undefined);
const call = (service: string, operation: string, input: Record<string, unknown>): ApiCall => ({ service, operation, input });
const without = (o: Record<string, unknown>, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));

/** Resources that make no AWS call of their own. */
export const NO_API_CALL = new Set(['pulumi:pulumi:Stack', 'pulumi:pulumi:StackReference', 'pulumi:providers:aws']);

export const RESOURCE_CALLS: Readonly<Record<string, Mapper>> = {
  // IAM
  'aws:iam/role:Role': (d) => [call('iam', 'CreateRole', { RoleName: physicalName(d), AssumeRolePolicyDocument: typeof d.inputs['assumeRolePolicy'] === 'string' ? d.inputs['assumeRolePolicy'] : JSON.stringify(d.inputs['assumeRolePolicy']), Path: d.inputs['path'], Description: d.inputs['description'], Tags: d.inputs['tags'] })],
  'aws:iam/rolePolicy:RolePolicy': (d) => [call('iam', 'PutRolePolicy', { PolicyName: physicalName(d), PolicyDocument: d.inputs['policy'] })],
  'aws:iam/rolePolicyAttachment:RolePolicyAttachment': (d) => [call('iam', 'AttachRolePolicy', { PolicyArn: d.inputs['policyArn'] })],
  'aws:iam/instanceProfile:InstanceProfile': (d) => [call('iam', 'CreateInstanceProfile', { InstanceProfileName: physicalName(d), Path: d.inputs['path'] })],
  // DLM
  'aws:dlm/lifecyclePolicy:LifecyclePolicy': (d) => [call('dlm', 'CreateLifecyclePolicy', {
    Description: d.inputs['description'], State: d.inputs['state'], Tags: d.inputs['tags'], PolicyDetails: d.inputs['policyDetails'],
  })],
  // EC2
  'aws:ebs/volume:Volume': (d) => [call('ec2', 'CreateVolume', { ...without(d.inputs, 'tags', 'type', 'finalSnapshot'), VolumeType: d.inputs['type'], TagSpecifications: tagSpec('volume', d.inputs['tags']) })],
  'aws:ec2/launchTemplate:LaunchTemplate': (d) => [call('ec2', 'CreateLaunchTemplate', {
    LaunchTemplateName: physicalName(d), LaunchTemplateData: without(d.inputs, 'name', 'namePrefix', 'updateDefaultVersion', 'tags'),
  })],
  'aws:ec2/securityGroup:SecurityGroup': (d) => [
    call('ec2', 'CreateSecurityGroup', { GroupName: physicalName(d), Description: d.inputs['description'], TagSpecifications: tagSpec('security-group', d.inputs['tags']) }),
    ...['ingress', 'egress'].map((dir) => call('ec2', dir === 'ingress' ? 'AuthorizeSecurityGroupIngress' : 'AuthorizeSecurityGroupEgress', {
      IpPermissions: ((d.inputs[dir] as Array<Record<string, unknown>> | undefined) ?? []).map((r) => ({
        IpProtocol: r['protocol'], FromPort: r['fromPort'], ToPort: r['toPort'],
        IpRanges: ((r['cidrBlocks'] as string[] | undefined) ?? []).map((CidrIp) => ({ CidrIp, Description: r['description'] })),
      })),
    })),
  ],
  'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule': (d) => [call('ec2', 'AuthorizeSecurityGroupIngress', {
    IpPermissions: [{ IpProtocol: d.inputs['ipProtocol'], FromPort: d.inputs['fromPort'], ToPort: d.inputs['toPort'], IpRanges: [{ CidrIp: d.inputs['cidrIpv4'], Description: d.inputs['description'] }] }],
  })],
  'aws:ec2/vpc:Vpc': (d) => [call('ec2', 'CreateVpc', { CidrBlock: d.inputs['cidrBlock'], TagSpecifications: tagSpec('vpc', d.inputs['tags']) })],
  'aws:ec2/subnet:Subnet': (d) => [call('ec2', 'CreateSubnet', { CidrBlock: d.inputs['cidrBlock'], AvailabilityZone: d.inputs['availabilityZone'], TagSpecifications: tagSpec('subnet', d.inputs['tags']) })],
  'aws:ec2/internetGateway:InternetGateway': (d) => [call('ec2', 'CreateInternetGateway', { TagSpecifications: tagSpec('internet-gateway', d.inputs['tags']) })],
  'aws:ec2/routeTable:RouteTable': (d) => [call('ec2', 'CreateRouteTable', { TagSpecifications: tagSpec('route-table', d.inputs['tags']) })],
  'aws:ec2/route:Route': (d) => [call('ec2', 'CreateRoute', { DestinationCidrBlock: d.inputs['destinationCidrBlock'] })],
  'aws:ec2/routeTableAssociation:RouteTableAssociation': () => [call('ec2', 'AssociateRouteTable', {})],
  'aws:ec2/eip:Eip': (d) => [call('ec2', 'AllocateAddress', { Domain: d.inputs['domain'], TagSpecifications: tagSpec('elastic-ip', d.inputs['tags']) })],
  'aws:ec2/vpcEndpoint:VpcEndpoint': (d) => [call('ec2', 'CreateVpcEndpoint', {
    VpcEndpointType: d.inputs['vpcEndpointType'], ServiceName: d.inputs['serviceName'], TagSpecifications: tagSpec('vpc-endpoint', d.inputs['tags']),
  })],
  'aws:ec2/natGateway:NatGateway': (d) => [call('ec2', 'CreateNatGateway', { TagSpecifications: tagSpec('natgateway', d.inputs['tags']) })],
  'aws:ec2/vpcPeeringConnection:VpcPeeringConnection': (d) => [call('ec2', 'CreateVpcPeeringConnection', { PeerRegion: d.inputs['peerRegion'], TagSpecifications: tagSpec('vpc-peering-connection', d.inputs['tags']) })],
  'aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter': () => [call('ec2', 'AcceptVpcPeeringConnection', {})],
  // Auto Scaling
  'aws:autoscaling/group:Group': (d) => [call('autoscaling', 'CreateAutoScalingGroup', {
    ...without(d.inputs, 'name', 'namePrefix', 'vpcZoneIdentifiers', 'tags', 'launchTemplate', 'instanceRefresh'),
    AutoScalingGroupName: physicalName(d), VPCZoneIdentifier: ((d.inputs['vpcZoneIdentifiers'] as string[] | undefined) ?? []).join(','),
    Tags: ((d.inputs['tags'] as Array<{ key: string; value: string; propagateAtLaunch: boolean }> | undefined) ?? []).map((t) => ({ Key: t.key, Value: t.value, PropagateAtLaunch: t.propagateAtLaunch })),
  })],
  // Route 53
  'aws:route53/record:Record': (d) => [call('route53', 'ChangeResourceRecordSets', {
    ChangeBatch: { Changes: [{ Action: 'CREATE', ResourceRecordSet: {
      Name: d.inputs['name'], Type: d.inputs['type'], TTL: d.inputs['ttl'], SetIdentifier: d.inputs['setIdentifier'],
      Region: (d.inputs['latencyRoutingPolicies'] as Array<{ region: string }> | undefined)?.[0]?.region,
      ResourceRecords: ((d.inputs['records'] as string[] | undefined) ?? []).map((Value) => ({ Value })),
    } }] },
  })],
  // KMS
  'aws:kms/key:Key': (d) => [call('kms', 'CreateKey', { Description: d.inputs['description'], Tags: Object.entries((d.inputs['tags'] as Record<string, string> | undefined) ?? {}).map(([TagKey, TagValue]) => ({ TagKey, TagValue })) })],
  'aws:kms/alias:Alias': (d) => [call('kms', 'CreateAlias', { AliasName: physicalName(d) })],
  // ECR
  'aws:ecr/repository:Repository': (d) => [call('ecr', 'CreateRepository', {
    repositoryName: physicalName(d), imageTagMutability: d.inputs['imageTagMutability'], imageScanningConfiguration: d.inputs['imageScanningConfiguration'],
    encryptionConfiguration: (d.inputs['encryptionConfigurations'] as unknown[] | undefined)?.[0],
    tags: Object.entries((d.inputs['tags'] as Record<string, string> | undefined) ?? {}).map(([Key, Value]) => ({ Key, Value })),
  })],
  'aws:ecr/lifecyclePolicy:LifecyclePolicy': (d) => [call('ecr', 'PutLifecyclePolicy', { lifecyclePolicyText: d.inputs['policy'] })],
  // CloudWatch Logs, EventBridge, alarms
  'aws:cloudwatch/logGroup:LogGroup': (d) => [
    call('logs', 'CreateLogGroup', { logGroupName: physicalName(d) }),
    call('logs', 'PutRetentionPolicy', { logGroupName: physicalName(d), retentionInDays: d.inputs['retentionInDays'] }),
  ],
  'aws:cloudwatch/eventRule:EventRule': (d) => [call('events', 'PutRule', { Name: physicalName(d), ScheduleExpression: d.inputs['scheduleExpression'], EventPattern: d.inputs['eventPattern'], Description: d.inputs['description'] })],
  'aws:cloudwatch/eventTarget:EventTarget': (d) => [call('events', 'PutTargets', { Targets: [{ Id: d.inputs['targetId'] ?? `${d.name}-0000000`, Arn: d.inputs['arn'], RoleArn: d.inputs['roleArn'] }] })],
  'aws:cloudwatch/metricAlarm:MetricAlarm': (d) => [call('cloudwatch', 'PutMetricAlarm', {
    ...without(d.inputs, 'name', 'dimensions'), AlarmName: physicalName(d),
    Dimensions: Object.entries((d.inputs['dimensions'] as Record<string, string> | undefined) ?? {}).map(([Name, Value]) => ({ Name, Value })),
  })],
  // Lambda
  'aws:lambda/function:Function': (d) => [call('lambda', 'CreateFunction', {
    ...without(d.inputs, 'name', 'code', 'role', 'environment'), FunctionName: physicalName(d),
    Environment: d.inputs['environment'] ? { Variables: (d.inputs['environment'] as { variables: unknown }).variables } : undefined,
  })],
  'aws:lambda/permission:Permission': (d) => [call('lambda', 'AddPermission', { StatementId: d.inputs['statementId'] ?? `${d.name}-0000000`, Action: d.inputs['action'], Principal: d.inputs['principal'] })],
  // ECS
  'aws:ecs/cluster:Cluster': (d) => [call('ecs', 'CreateCluster', { clusterName: physicalName(d), settings: d.inputs['settings'], tags: Object.entries((d.inputs['tags'] as Record<string, string> | undefined) ?? {}).map(([key, value]) => ({ key, value })) })],
  'aws:ecs/taskDefinition:TaskDefinition': (d) => [call('ecs', 'RegisterTaskDefinition', {
    ...without(d.inputs, 'containerDefinitions', 'executionRoleArn', 'taskRoleArn'), containerDefinitions: JSON.parse(String(d.inputs['containerDefinitions'] ?? '[]')) as unknown,
  })],
  'aws:ecs/service:Service': (d) => [call('ecs', 'CreateService', {
    serviceName: physicalName(d), desiredCount: d.inputs['desiredCount'], launchType: d.inputs['launchType'], placementConstraints: d.inputs['placementConstraints'],
    deploymentConfiguration: { minimumHealthyPercent: d.inputs['deploymentMinimumHealthyPercent'], maximumPercent: d.inputs['deploymentMaximumPercent'] },
  })],
  // CodeBuild
  'aws:codebuild/project:Project': (d) => [call('codebuild', 'CreateProject', {
    ...without(d.inputs, 'name', 'serviceRole', 'vpcConfig', 'logsConfig', 'buildTimeout'), name: physicalName(d), timeoutInMinutes: d.inputs['buildTimeout'],
  })],
  // S3
  'aws:s3/bucket:Bucket': (d) => [call('s3', 'CreateBucket', { Bucket: physicalName(d, 'bucket', 'bucketPrefix') })],
  'aws:s3/bucketOwnershipControls:BucketOwnershipControls': (d) => [call('s3', 'PutBucketOwnershipControls', { OwnershipControls: { Rules: [{ ObjectOwnership: (d.inputs['rule'] as { objectOwnership: string }).objectOwnership }] } })],
  'aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock': (d) => [call('s3', 'PutPublicAccessBlock', { PublicAccessBlockConfiguration: without(d.inputs, 'bucket') })],
  'aws:s3/bucketVersioning:BucketVersioning': (d) => [call('s3', 'PutBucketVersioning', { VersioningConfiguration: d.inputs['versioningConfiguration'] })],
  'aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration': (d) => [call('s3', 'PutBucketEncryption', {
    ServerSideEncryptionConfiguration: { Rules: ((d.inputs['rules'] as Array<Record<string, Record<string, unknown>>>) ?? []).map((r) => ({
      ApplyServerSideEncryptionByDefault: { SSEAlgorithm: r['applyServerSideEncryptionByDefault']!['sseAlgorithm'] }, BucketKeyEnabled: r['bucketKeyEnabled'],
    })) },
  })],
  'aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration': (d) => [call('s3', 'PutBucketLifecycleConfiguration', {
    LifecycleConfiguration: { Rules: ((d.inputs['rules'] as Array<Record<string, unknown>>) ?? []).map((r) => ({ ID: r['id'], Status: r['status'] })) },
  })],
  'aws:s3/bucketPolicy:BucketPolicy': (d) => [call('s3', 'PutBucketPolicy', { Policy: d.inputs['policy'] })],
  'aws:s3/bucketNotification:BucketNotification': () => [call('s3', 'PutBucketNotificationConfiguration', { NotificationConfiguration: { EventBridgeConfiguration: {} } })],
};

/**
 * Enum values AWS added after the model Debian ships (python3-botocore 1.29, December 2022):
 * Lambda's nodejs20.x runtime came in November 2023 (Lambda Developer Guide, "Lambda runtimes").
 * Only these are let through; any other value outside a model's enum is a problem.
 */
export const NEWER_THAN_MODEL: Readonly<Record<string, readonly string[]>> = { 'lambda Runtime': ['nodejs20.x', 'nodejs22.x'] };

/**
 * Rules AWS documents that the models do not carry (botocore's S3 BucketName has no pattern):
 * S3 bucket names are 3-63 lowercase letters, digits, "." and "-", starting and ending with a
 * letter or digit (S3 User Guide, "Bucket naming rules").
 */
export function documentedProblems(c: ApiCall): string[] {
  if (c.service === 'lambda' && c.operation === 'CreateFunction' && String(c.input['FunctionName']).length > 64) {
    return [`lambda CreateFunction FunctionName: "${String(c.input['FunctionName'])}" is over the 64 characters a bare function name may have`];
  }
  if (c.service === 's3' && c.operation === 'CreateBucket') {
    const b = String(c.input['Bucket']);
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(b)) return [`s3 CreateBucket Bucket: "${b}" breaks S3's bucket naming rules (3-63 of a-z 0-9 . -)`];
  }
  return [];
}
