import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { environmentEcsClusterPrefixes, roleNamePrefix } from './naming.js';

/**
 * The Node.js runtime of every berth Lambda (the certificate renewer and the operations jobs):
 * Node.js 24, which Lambda supports until its deprecation on 2028-04-30 (AWS Lambda runtimes
 * table; the dated table in infra/constraints/lambda-runtimes.ts fails the conformance test once
 * a runtime in use passes its block-create date). docs/deploy.md, "Lambda runtime".
 */
export const LAMBDA_RUNTIME = aws.lambda.Runtime.NodeJS24dX;

export interface ScheduledJobArgs {
  readonly description: string;
  /** Staged code (infra/lambdas/stage.sh) and the handler in it, e.g. `ecs-agent-update.handler`. */
  readonly code: pulumi.asset.Archive;
  readonly handler: string;
  /** The job's own IAM policy (JSON); logging is added. */
  readonly policy: pulumi.Input<string>;
  readonly schedule?: string;
  readonly environment?: Readonly<Record<string, pulumi.Input<string>>>;
  readonly timeoutSeconds?: number;
  readonly alarmTopicArn?: pulumi.Input<string>;
}

/**
 * An operations Lambda on an EventBridge schedule (daily by default), with its own role and
 * an alarm when a run fails (the jobs throw on partial failure).
 */
export class ScheduledJob extends pulumi.ComponentResource {
  readonly functionArn: pulumi.Output<string>;

  constructor(name: string, args: ScheduledJobArgs, opts?: pulumi.ComponentResourceOptions) {
    super('berth:ops:ScheduledJob', name, {}, opts);
    if (!/^[\w-]+\.handler$/.test(args.handler)) throw new Error(`ScheduledJob ${name}: handler must be <file>.handler, not ${args.handler}`);
    const parent = { parent: this };
    const role = new aws.iam.Role(`${name}-role`, { namePrefix: roleNamePrefix(`${name}-role`), assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: 'lambda.amazonaws.com' }) }, parent);
    new aws.iam.RolePolicyAttachment(`${name}-logs`, { role: role.name, policyArn: aws.iam.ManagedPolicy.AWSLambdaBasicExecutionRole }, parent);
    new aws.iam.RolePolicy(`${name}-policy`, { role: role.id, policy: args.policy }, parent);
    const fn = new aws.lambda.Function(`${name}-fn`, {
      description: args.description, runtime: LAMBDA_RUNTIME, handler: args.handler, code: args.code, role: role.arn,
      timeout: args.timeoutSeconds ?? 300, memorySize: 256,
      ...(args.environment ? { environment: { variables: { ...args.environment } } } : {}),
    }, parent);
    const rule = new aws.cloudwatch.EventRule(`${name}-schedule`, { scheduleExpression: args.schedule ?? 'rate(1 day)', description: args.description }, parent);
    new aws.cloudwatch.EventTarget(`${name}-target`, { rule: rule.name, arn: fn.arn }, parent);
    new aws.lambda.Permission(`${name}-invoke`, { action: 'lambda:InvokeFunction', function: fn.name, principal: 'events.amazonaws.com', sourceArn: rule.arn }, parent);
    new aws.cloudwatch.MetricAlarm(`${name}-errors`, {
      namespace: 'AWS/Lambda', metricName: 'Errors', dimensions: { FunctionName: fn.name }, statistic: 'Sum',
      period: 86_400, evaluationPeriods: 1, threshold: 1, comparisonOperator: 'GreaterThanOrEqualToThreshold', treatMissingData: 'notBreaching',
      alarmDescription: `${args.description} failed`,
      ...(args.alarmTopicArn ? { alarmActions: [args.alarmTopicArn] } : {}),
    }, parent);
    this.functionArn = fn.arn;
    this.registerOutputs({ functionArn: this.functionArn });
  }
}

/** What the daily ECS agent update may do: list the region's clusters and instances, update agents. */
export function agentUpdatePolicy(region: string, accountId: string, environment: string) {
  // Every ECS cluster of an environment starts with one of its prefixes (naming.ts); a container
  // instance ARN carries its cluster's name (`container-instance/<cluster>/<id>`, ECS's long ARN
  // format), so IAM itself keeps the job in its environment, and the job lists only those clusters.
  const own = Object.values(environmentEcsClusterPrefixes(environment));
  return {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'ListClusters', Effect: 'Allow', Action: ['ecs:ListClusters'], Resource: '*' },
      { Sid: 'ListInstances', Effect: 'Allow', Action: ['ecs:ListContainerInstances'], Resource: own.map((p) => `arn:aws:ecs:${region}:${accountId}:cluster/${p}*`) },
      { Sid: 'UpdateAgents', Effect: 'Allow', Action: ['ecs:UpdateContainerAgent'], Resource: own.map((p) => `arn:aws:ecs:${region}:${accountId}:container-instance/${p}*/*`) },
    ],
  };
}

/** What the state backup cleanup may do: list and delete under the backup prefix of one bucket. */
export function backupCleanupPolicy(bucket: string, prefix: string) {
  return {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'ListBackups', Effect: 'Allow', Action: ['s3:ListBucket'], Resource: `arn:aws:s3:::${bucket}`, Condition: { StringLike: { 's3:prefix': [`${prefix}*`] } } },
      { Sid: 'DeleteBackups', Effect: 'Allow', Action: ['s3:DeleteObject'], Resource: `arn:aws:s3:::${bucket}/${prefix}*` },
    ],
  };
}
