import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { ofType, userdataParts, type Declared } from './pulumi-mocks.js';

/** Assertions every program test makes over what the program declared (test helpers). */

/** Ports the regional stack may open to the internet (docs/design.md §8). */
export const PUBLIC_PORTS = [4000, 8090, 8860];

/** Every ingress rule open to 0.0.0.0/0 or ::/0, as `proto:from-to` of `group`. */
export function openToWorld(declared: readonly Declared[]): string[] {
  const open: string[] = [];
  for (const sg of ofType(declared, 'aws:ec2/securityGroup:SecurityGroup')) {
    for (const r of (sg.inputs['ingress'] as Array<{ protocol: string; fromPort: number; toPort: number; cidrBlocks?: string[]; ipv6CidrBlocks?: string[] }> | undefined) ?? []) {
      if ((r.cidrBlocks ?? []).includes('0.0.0.0/0') || (r.ipv6CidrBlocks ?? []).includes('::/0')) open.push(`${r.protocol}:${r.fromPort}-${r.toPort} of ${sg.name}`);
    }
  }
  for (const rule of ofType(declared, 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule')) {
    if (rule.inputs['cidrIpv4'] === '0.0.0.0/0' || rule.inputs['cidrIpv6'] === '::/0') open.push(`${String(rule.inputs['ipProtocol'])}:${String(rule.inputs['fromPort'])}-${String(rule.inputs['toPort'])} of ${rule.name}`);
  }
  return open;
}

interface Statement { Sid?: string; Effect: string; Action: string | string[]; Resource: string | string[]; Condition?: unknown }

/** Every IAM statement of every role policy the program declared. */
export function policyStatements(declared: readonly Declared[]): Array<Statement & { policy: string }> {
  return ofType(declared, 'aws:iam/rolePolicy:RolePolicy').flatMap((p) =>
    (JSON.parse(p.inputs['policy'] as string) as { Statement: Statement[] }).Statement.map((s) => ({ ...s, policy: p.name })));
}

const EBS_MUTATING = /^ec2:(AttachVolume|DetachVolume|ModifyVolume|CreateVolume|DeleteVolume|CreateTags|DeleteTags|CreateSnapshot|DeleteSnapshot)$/;

/** Statements granting an EBS-mutating action without a berth tag (or create-action) condition. */
export function unconditionedEbsMutations(declared: readonly Declared[]): string[] {
  return policyStatements(declared)
    .filter((s) => s.Effect === 'Allow' && [s.Action].flat().some((a) => EBS_MUTATING.test(a) || a === 'ec2:*' || a === '*'))
    .filter((s) => !/aws:(Resource|Request)Tag\/berth:|ec2:CreateAction/.test(JSON.stringify(s.Condition ?? {})))
    .map((s) => `${s.policy}/${s.Sid ?? '?'}`);
}

/** EC2 refuses userdata larger than 16 KiB (before base64). */
export const USERDATA_LIMIT = 16 * 1024;

/** Problems with each launch template's userdata: too large for EC2, placeholders left, or shellcheck findings. */
export function userdataProblems(declared: readonly Declared[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'berth-userdata-'));
  const problems: string[] = [];
  try {
    for (const lt of ofType(declared, 'aws:ec2/launchTemplate:LaunchTemplate')) {
      const size = Buffer.from(lt.inputs['userData'] as string, 'base64').length;
      if (size > USERDATA_LIMIT) problems.push(`${lt.name}: userdata is ${size} bytes, over EC2's ${USERDATA_LIMIT}`);
      for (const part of userdataParts(lt.inputs['userData'] as string)) {
        if (/@@[A-Z_]+@@/.test(part.body)) problems.push(`${lt.name}/${part.filename}: unresolved placeholder`);
        const file = join(dir, `${lt.name}-${part.filename}`);
        writeFileSync(file, part.body);
        try {
          execFileSync('/usr/bin/shellcheck', ['-s', 'bash', file], { encoding: 'utf8' });
        } catch (e) {
          problems.push(`${lt.name}/${part.filename}: ${String((e as { stdout?: string }).stdout ?? e)}`);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return problems;
}

/** Resolves every output a program returned (nested records and lists included). */
export async function resolveAll(outputs: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve) => pulumi.output(outputs).apply((v) => resolve(v as Record<string, unknown>)));
}
