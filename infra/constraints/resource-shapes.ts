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

type Mapper = (d: Declared, all: readonly Declared[]) => ApiCall[];

/** The physical name Pulumi or AWS would use for a name property (explicit, prefixed, or auto). */
export function physicalName(d: Declared, prop = 'name', prefixProp = 'namePrefix'): string {
  const explicit = d.inputs[prop];
  if (typeof explicit === 'string') return explicit;
  const prefix = d.inputs[prefixProp];
  if (typeof prefix === 'string') return `${prefix}${'0'.repeat(26)}`;
  return `${d.name}-0000000`;
}

const first = (v: unknown): Record<string, unknown> | undefined => (Array.isArray(v) ? v[0] as Record<string, unknown> | undefined : v as Record<string, unknown> | undefined);

/**
 * The ResourceRecordSet a Pulumi `aws.route53.Record` sends (terraform-provider-aws
 * `internal/service/route53/record.go`, expandResourceRecordSet): each routing-policy block
 * becomes its API field, an alias its AliasTarget; TTL and values only when given.
 */
export function recordSet(d: Declared): Record<string, unknown> {
  const i = d.inputs;
  const alias = first(i['aliases']);
  const geo = first(i['geolocationRoutingPolicies']);
  const records = i['records'] as string[] | undefined;
  return {
    Name: i['name'], Type: i['type'], TTL: i['ttl'], SetIdentifier: i['setIdentifier'],
    Region: first(i['latencyRoutingPolicies'])?.['region'],
    Weight: first(i['weightedRoutingPolicies'])?.['weight'],
    Failover: first(i['failoverRoutingPolicies'])?.['type'],
    GeoLocation: geo ? { ContinentCode: geo['continent'], CountryCode: geo['country'], SubdivisionCode: geo['subdivision'] } : undefined,
    MultiValueAnswer: i['multivalueAnswerRoutingPolicy'],
    CidrRoutingConfig: i['cidrRoutingPolicy'] ? { CollectionId: first(i['cidrRoutingPolicy'])?.['collectionId'], LocationName: first(i['cidrRoutingPolicy'])?.['locationName'] } : undefined,
    GeoProximityLocation: i['geoproximityRoutingPolicy'] ? { AWSRegion: first(i['geoproximityRoutingPolicy'])?.['awsRegion'], Bias: first(i['geoproximityRoutingPolicy'])?.['bias'] } : undefined,
    HealthCheckId: i['healthCheckId'],
    AliasTarget: alias ? { HostedZoneId: alias['zoneId'], DNSName: alias['name'], EvaluateTargetHealth: alias['evaluateTargetHealth'] ?? false } : undefined,
    ResourceRecords: records?.map((Value) => ({ Value })),
  };
}

/**
 * A value one resource takes from another's `name` output. Under the mocks that output is the
 * other resource's logical name; AWS would see its physical name (a `namePrefix` plus 26
 * characters, or Pulumi's auto-name), so that is what is checked.
 */
function nameOf(all: readonly Declared[], type: string, value: unknown): unknown {
  const other = all.find((o) => o.type === type && o.name === value);
  return other ? physicalName(other) : value;
}

const tagSpec = (resourceType: string, tags: unknown) => (tags ? [{ ResourceType: resourceType, Tags: tags }] : undefined);
const call = (service: string, operation: string, input: Record<string, unknown>): ApiCall => ({ service, operation, input });
const without = (o: Record<string, unknown>, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));

/** Resources that make no AWS call of their own. */
export const NO_API_CALL = new Set(['pulumi:pulumi:Stack', 'pulumi:pulumi:StackReference', 'pulumi:providers:aws']);

export const RESOURCE_CALLS: Readonly<Record<string, Mapper>> = {
  // IAM
  'aws:iam/role:Role': (d) => [call('iam', 'CreateRole', { RoleName: physicalName(d), AssumeRolePolicyDocument: typeof d.inputs['assumeRolePolicy'] === 'string' ? d.inputs['assumeRolePolicy'] : JSON.stringify(d.inputs['assumeRolePolicy']), Path: d.inputs['path'], Description: d.inputs['description'], Tags: d.inputs['tags'] })],
  'aws:iam/policy:Policy': (d) => [call('iam', 'CreatePolicy', { PolicyName: physicalName(d), PolicyDocument: d.inputs['policy'], Description: d.inputs['description'], Path: d.inputs['path'] })],
  'aws:iam/rolePolicy:RolePolicy': (d) => [call('iam', 'PutRolePolicy', { RoleName: d.inputs['role'], PolicyName: physicalName(d), PolicyDocument: d.inputs['policy'] })],
  'aws:iam/rolePolicyAttachment:RolePolicyAttachment': (d, all) => [call('iam', 'AttachRolePolicy', { RoleName: nameOf(all, 'aws:iam/role:Role', d.inputs['role']), PolicyArn: d.inputs['policyArn'] })],
  'aws:iam/instanceProfile:InstanceProfile': (d) => [call('iam', 'CreateInstanceProfile', { InstanceProfileName: physicalName(d), Path: d.inputs['path'] })],
  // DLM
  'aws:dlm/lifecyclePolicy:LifecyclePolicy': (d) => [call('dlm', 'CreateLifecyclePolicy', {
    ExecutionRoleArn: d.inputs['executionRoleArn'], Description: d.inputs['description'], State: d.inputs['state'], Tags: d.inputs['tags'], PolicyDetails: d.inputs['policyDetails'],
  })],
  // EC2
  'aws:ebs/volume:Volume': (d) => [call('ec2', 'CreateVolume', { ...without(d.inputs, 'tags', 'type', 'finalSnapshot'), VolumeType: d.inputs['type'], TagSpecifications: tagSpec('volume', d.inputs['tags']) })],
  'aws:ec2/launchTemplate:LaunchTemplate': (d) => [call('ec2', 'CreateLaunchTemplate', {
    LaunchTemplateName: physicalName(d), LaunchTemplateData: {
      ...without(d.inputs, 'name', 'namePrefix', 'updateDefaultVersion', 'tags', 'networkInterfaces'),
      // Pulumi's securityGroups is the API's Groups.
      NetworkInterfaces: (d.inputs['networkInterfaces'] as Array<Record<string, unknown>> | undefined)?.map((n) => ({ ...without(n, 'securityGroups'), Groups: n['securityGroups'] })),
    },
  })],
  'aws:ec2/securityGroup:SecurityGroup': (d) => [
    call('ec2', 'CreateSecurityGroup', { GroupName: physicalName(d), Description: d.inputs['description'], TagSpecifications: tagSpec('security-group', d.inputs['tags']) }),
    ...['ingress', 'egress'].map((dir) => call('ec2', dir === 'ingress' ? 'AuthorizeSecurityGroupIngress' : 'AuthorizeSecurityGroupEgress', {
      GroupId: `${d.name}-id`,
      IpPermissions: ((d.inputs[dir] as Array<Record<string, unknown>> | undefined) ?? []).map((r) => ({
        IpProtocol: r['protocol'], FromPort: r['fromPort'], ToPort: r['toPort'],
        IpRanges: ((r['cidrBlocks'] as string[] | undefined) ?? []).map((CidrIp) => ({ CidrIp, Description: r['description'] })),
      })),
    })),
  ],
  'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule': (d) => [call('ec2', 'AuthorizeSecurityGroupIngress', {
    GroupId: d.inputs['securityGroupId'],
    IpPermissions: [{ IpProtocol: d.inputs['ipProtocol'], FromPort: d.inputs['fromPort'], ToPort: d.inputs['toPort'], IpRanges: [{ CidrIp: d.inputs['cidrIpv4'], Description: d.inputs['description'] }] }],
  })],
  'aws:ec2/vpc:Vpc': (d) => [call('ec2', 'CreateVpc', { CidrBlock: d.inputs['cidrBlock'], TagSpecifications: tagSpec('vpc', d.inputs['tags']) })],
  'aws:ec2/subnet:Subnet': (d) => [call('ec2', 'CreateSubnet', { VpcId: d.inputs['vpcId'], CidrBlock: d.inputs['cidrBlock'], AvailabilityZone: d.inputs['availabilityZone'], TagSpecifications: tagSpec('subnet', d.inputs['tags']) })],
  'aws:ec2/internetGateway:InternetGateway': (d) => [call('ec2', 'CreateInternetGateway', { TagSpecifications: tagSpec('internet-gateway', d.inputs['tags']) })],
  'aws:ec2/routeTable:RouteTable': (d) => [call('ec2', 'CreateRouteTable', { VpcId: d.inputs['vpcId'], TagSpecifications: tagSpec('route-table', d.inputs['tags']) })],
  'aws:ec2/route:Route': (d) => [call('ec2', 'CreateRoute', {
    RouteTableId: d.inputs['routeTableId'], DestinationCidrBlock: d.inputs['destinationCidrBlock'], GatewayId: d.inputs['gatewayId'],
    NatGatewayId: d.inputs['natGatewayId'], VpcPeeringConnectionId: d.inputs['vpcPeeringConnectionId'],
  })],
  'aws:ec2/routeTableAssociation:RouteTableAssociation': (d) => [call('ec2', 'AssociateRouteTable', { RouteTableId: d.inputs['routeTableId'], SubnetId: d.inputs['subnetId'] })],
  'aws:ec2/eip:Eip': (d) => [call('ec2', 'AllocateAddress', { Domain: d.inputs['domain'], TagSpecifications: tagSpec('elastic-ip', d.inputs['tags']) })],
  'aws:ec2/vpcEndpoint:VpcEndpoint': (d) => [call('ec2', 'CreateVpcEndpoint', {
    VpcId: d.inputs['vpcId'], VpcEndpointType: d.inputs['vpcEndpointType'], ServiceName: d.inputs['serviceName'], RouteTableIds: d.inputs['routeTableIds'],
    TagSpecifications: tagSpec('vpc-endpoint', d.inputs['tags']),
  })],
  'aws:ec2/natGateway:NatGateway': (d) => [call('ec2', 'CreateNatGateway', { SubnetId: d.inputs['subnetId'], AllocationId: d.inputs['allocationId'], TagSpecifications: tagSpec('natgateway', d.inputs['tags']) })],
  'aws:ec2/vpcPeeringConnection:VpcPeeringConnection': (d) => [call('ec2', 'CreateVpcPeeringConnection', { VpcId: d.inputs['vpcId'], PeerVpcId: d.inputs['peerVpcId'], PeerRegion: d.inputs['peerRegion'], TagSpecifications: tagSpec('vpc-peering-connection', d.inputs['tags']) })],
  'aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter': (d) => [call('ec2', 'AcceptVpcPeeringConnection', { VpcPeeringConnectionId: d.inputs['vpcPeeringConnectionId'] })],
  // Auto Scaling
  'aws:autoscaling/group:Group': (d) => [call('autoscaling', 'CreateAutoScalingGroup', {
    ...without(d.inputs, 'name', 'namePrefix', 'vpcZoneIdentifiers', 'tags', 'launchTemplate', 'instanceRefresh'),
    AutoScalingGroupName: physicalName(d), VPCZoneIdentifier: ((d.inputs['vpcZoneIdentifiers'] as string[] | undefined) ?? []).join(','),
    Tags: ((d.inputs['tags'] as Array<{ key: string; value: string; propagateAtLaunch: boolean }> | undefined) ?? []).map((t) => ({ Key: t.key, Value: t.value, PropagateAtLaunch: t.propagateAtLaunch })),
  })],
  // Route 53
  'aws:route53/record:Record': (d) => [call('route53', 'ChangeResourceRecordSets', {
    HostedZoneId: d.inputs['zoneId'],
    ChangeBatch: { Changes: [{ Action: 'CREATE', ResourceRecordSet: recordSet(d) }] },
  })],
  // KMS
  'aws:kms/key:Key': (d) => [call('kms', 'CreateKey', { Description: d.inputs['description'], Tags: Object.entries((d.inputs['tags'] as Record<string, string> | undefined) ?? {}).map(([TagKey, TagValue]) => ({ TagKey, TagValue })) })],
  'aws:kms/alias:Alias': (d) => [call('kms', 'CreateAlias', { AliasName: physicalName(d), TargetKeyId: d.inputs['targetKeyId'] })],
  // ECR
  'aws:ecr/repository:Repository': (d) => [call('ecr', 'CreateRepository', {
    repositoryName: physicalName(d), imageTagMutability: d.inputs['imageTagMutability'], imageScanningConfiguration: d.inputs['imageScanningConfiguration'],
    encryptionConfiguration: (d.inputs['encryptionConfigurations'] as unknown[] | undefined)?.[0],
    tags: Object.entries((d.inputs['tags'] as Record<string, string> | undefined) ?? {}).map(([Key, Value]) => ({ Key, Value })),
  })],
  'aws:ecr/lifecyclePolicy:LifecyclePolicy': (d) => [call('ecr', 'PutLifecyclePolicy', { repositoryName: d.inputs['repository'], lifecyclePolicyText: d.inputs['policy'] })],
  // CloudWatch Logs, EventBridge, alarms
  'aws:cloudwatch/logGroup:LogGroup': (d) => [
    call('logs', 'CreateLogGroup', { logGroupName: physicalName(d) }),
    call('logs', 'PutRetentionPolicy', { logGroupName: physicalName(d), retentionInDays: d.inputs['retentionInDays'] }),
  ],
  'aws:cloudwatch/eventRule:EventRule': (d) => [call('events', 'PutRule', { Name: physicalName(d), ScheduleExpression: d.inputs['scheduleExpression'], EventPattern: d.inputs['eventPattern'], Description: d.inputs['description'] })],
  'aws:cloudwatch/eventTarget:EventTarget': (d, all) => [call('events', 'PutTargets', { Rule: nameOf(all, 'aws:cloudwatch/eventRule:EventRule', d.inputs['rule']), Targets: [{ Id: d.inputs['targetId'] ?? `${d.name}-0000000`, Arn: d.inputs['arn'], RoleArn: d.inputs['roleArn'] }] })],
  'aws:cloudwatch/dashboard:Dashboard': (d) => [call('cloudwatch', 'PutDashboard', { DashboardName: d.inputs['dashboardName'], DashboardBody: d.inputs['dashboardBody'] })],
  'aws:cloudwatch/metricAlarm:MetricAlarm': (d) => [call('cloudwatch', 'PutMetricAlarm', {
    ...without(d.inputs, 'name', 'dimensions'), AlarmName: physicalName(d),
    Dimensions: Object.entries((d.inputs['dimensions'] as Record<string, string> | undefined) ?? {}).map(([Name, Value]) => ({ Name, Value })),
  })],
  // Lambda
  'aws:lambda/function:Function': (d) => [call('lambda', 'CreateFunction', {
    ...without(d.inputs, 'name', 'code', 'role', 'environment'), FunctionName: physicalName(d), Role: d.inputs['role'],
    // The staged archive becomes the zip Pulumi uploads; its bytes are no shape's business.
    Code: d.inputs['code'] ? { ZipFile: 'archive' } : undefined,
    Environment: d.inputs['environment'] ? { Variables: (d.inputs['environment'] as { variables: unknown }).variables } : undefined,
  })],
  'aws:lambda/permission:Permission': (d, all) => [call('lambda', 'AddPermission', { FunctionName: nameOf(all, 'aws:lambda/function:Function', d.inputs['function']), SourceArn: d.inputs['sourceArn'], StatementId: d.inputs['statementId'] ?? `${d.name}-0000000`, Action: d.inputs['action'], Principal: d.inputs['principal'] })],
  // ECS
  'aws:ecs/cluster:Cluster': (d) => [call('ecs', 'CreateCluster', { clusterName: physicalName(d), settings: d.inputs['settings'], tags: Object.entries((d.inputs['tags'] as Record<string, string> | undefined) ?? {}).map(([key, value]) => ({ key, value })) })],
  'aws:ecs/taskDefinition:TaskDefinition': (d) => [call('ecs', 'RegisterTaskDefinition', {
    ...without(d.inputs, 'containerDefinitions', 'volumes'), containerDefinitions: JSON.parse(String(d.inputs['containerDefinitions'] ?? '[]')) as unknown,
    // Pulumi's hostPath is the API's host.sourcePath.
    volumes: (d.inputs['volumes'] as Array<Record<string, unknown>> | undefined)?.map((v) => ({ ...without(v, 'hostPath'), host: v['hostPath'] === undefined ? undefined : { sourcePath: v['hostPath'] } })),
  })],
  'aws:ecs/service:Service': (d) => [call('ecs', 'CreateService', {
    serviceName: physicalName(d), cluster: d.inputs['cluster'], taskDefinition: d.inputs['taskDefinition'], desiredCount: d.inputs['desiredCount'], launchType: d.inputs['launchType'], placementConstraints: d.inputs['placementConstraints'],
    deploymentConfiguration: { minimumHealthyPercent: d.inputs['deploymentMinimumHealthyPercent'], maximumPercent: d.inputs['deploymentMaximumPercent'] },
  })],
  // CodeBuild
  'aws:codebuild/project:Project': (d) => [call('codebuild', 'CreateProject', {
    ...without(d.inputs, 'name', 'buildTimeout', 'logsConfig'), name: physicalName(d), timeoutInMinutes: d.inputs['buildTimeout'],
    // The provider sends status ENABLED unless told otherwise (its schema's default).
    logsConfig: d.inputs['logsConfig'] ? { cloudWatchLogs: { status: 'ENABLED', ...first((first(d.inputs['logsConfig']) ?? {})['cloudwatchLogs']) } } : undefined,
  })],
  // S3
  'aws:s3/bucket:Bucket': (d) => [call('s3', 'CreateBucket', { Bucket: physicalName(d, 'bucket', 'bucketPrefix') })],
  'aws:s3/bucketOwnershipControls:BucketOwnershipControls': (d) => [call('s3', 'PutBucketOwnershipControls', { Bucket: d.inputs['bucket'], OwnershipControls: { Rules: [{ ObjectOwnership: (d.inputs['rule'] as { objectOwnership: string }).objectOwnership }] } })],
  'aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock': (d) => [call('s3', 'PutPublicAccessBlock', { Bucket: d.inputs['bucket'], PublicAccessBlockConfiguration: without(d.inputs, 'bucket') })],
  'aws:s3/bucketVersioning:BucketVersioning': (d) => [call('s3', 'PutBucketVersioning', { Bucket: d.inputs['bucket'], VersioningConfiguration: d.inputs['versioningConfiguration'] })],
  'aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration': (d) => [call('s3', 'PutBucketEncryption', {
    Bucket: d.inputs['bucket'],
    ServerSideEncryptionConfiguration: { Rules: ((d.inputs['rules'] as Array<Record<string, Record<string, unknown>>>) ?? []).map((r) => ({
      ApplyServerSideEncryptionByDefault: { SSEAlgorithm: r['applyServerSideEncryptionByDefault']!['sseAlgorithm'] }, BucketKeyEnabled: r['bucketKeyEnabled'],
    })) },
  })],
  'aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration': (d) => [call('s3', 'PutBucketLifecycleConfiguration', {
    Bucket: d.inputs['bucket'],
    LifecycleConfiguration: { Rules: ((d.inputs['rules'] as Array<Record<string, unknown>>) ?? []).map((r) => ({ ID: r['id'], Status: r['status'] })) },
  })],
  'aws:s3/bucketPolicy:BucketPolicy': (d) => [call('s3', 'PutBucketPolicy', { Bucket: d.inputs['bucket'], Policy: d.inputs['policy'] })],
  'aws:s3/bucketNotification:BucketNotification': (d) => [call('s3', 'PutBucketNotificationConfiguration', { Bucket: d.inputs['bucket'], NotificationConfiguration: { EventBridgeConfiguration: {} } })],
};

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
