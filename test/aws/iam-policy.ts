/**
 * Evaluates an identity policy for one request the way IAM does for the parts berth's
 * policies use (IAM User Guide, "Policy evaluation logic" and "IAM JSON policy elements:
 * Condition operators"): an explicit Deny wins, else some Allow must match action, resource
 * and every condition; a condition key missing from the request fails the operator unless it
 * is an ...IfExists one; ForAllValues holds when every value of a multivalued key matches
 * (and vacuously when there is none). An operator it does not know is an error, never a pass.
 */
export interface PolicyDocument {
  readonly Statement: ReadonlyArray<{
    readonly Sid?: string;
    readonly Effect: string;
    readonly Action: string | readonly string[];
    readonly Resource: string | readonly string[];
    readonly Condition?: Readonly<Record<string, Readonly<Record<string, string | readonly string[]>>>>;
  }>;
}

/** Request context: single-valued keys as strings, multivalued ones (aws:TagKeys) as lists. */
export type RequestContext = Readonly<Record<string, string | readonly string[]>>;

const glob = (pattern: string) => new RegExp(`^${pattern.split('*').map((p) => p.split('?').map((q) => q.replace(/[.+^${}()|[\]\\]/g, '\\$&')).join('.')).join('.*')}$`, 'i');
const globCase = (pattern: string) => new RegExp(glob(pattern).source);
const list = <T>(v: T | readonly T[]): readonly T[] => (Array.isArray(v) ? v : [v as T]);

function operator(op: string): (actual: string, expected: string) => boolean {
  switch (op) {
    case 'StringEquals': case 'ArnEquals': return (a, e) => a === e;
    case 'StringLike': case 'ArnLike': return (a, e) => globCase(e).test(a);
    case 'StringNotEquals': return (a, e) => a !== e;
    case 'Bool': return (a, e) => a.toLowerCase() === e.toLowerCase();
    case 'NumericLessThan': return (a, e) => Number(a) < Number(e);
    default: throw new Error(`iam-policy: condition operator ${op} is not modelled`);
  }
}

function conditionHolds(op: string, key: string, expected: readonly string[], ctx: RequestContext): boolean {
  const setOp = /^(ForAllValues|ForAnyValue):(.+)$/.exec(op);
  const ifExists = op.endsWith('IfExists');
  const base = (setOp ? setOp[2]! : op).replace(/IfExists$/, '');
  const test = operator(base);
  const actual = ctx[key];
  const negated = base.startsWith('StringNot');
  const matches = (a: string) => (negated ? expected.every((e) => test(a, e)) : expected.some((e) => test(a, e)));
  if (setOp?.[1] === 'ForAllValues') return list(actual ?? []).every(matches);
  if (setOp?.[1] === 'ForAnyValue') return list(actual ?? []).some(matches);
  if (actual === undefined) return ifExists;
  return list(actual).some(matches);
}

function statementMatches(s: PolicyDocument['Statement'][number], action: string, resource: string, ctx: RequestContext): boolean {
  if (!list(s.Action).some((a) => glob(a).test(action))) return false;
  if (!list(s.Resource).some((r) => globCase(r).test(resource))) return false;
  for (const [op, keys] of Object.entries(s.Condition ?? {})) {
    for (const [key, expected] of Object.entries(keys)) if (!conditionHolds(op, key, list(expected), ctx)) return false;
  }
  return true;
}

/** Whether the policies together allow `action` on `resource` in `ctx`. */
export function allows(policies: readonly PolicyDocument[], action: string, resource: string, ctx: RequestContext = {}): boolean {
  const statements = policies.flatMap((p) => p.Statement);
  if (statements.some((s) => s.Effect === 'Deny' && statementMatches(s, action, resource, ctx))) return false;
  return statements.some((s) => s.Effect === 'Allow' && statementMatches(s, action, resource, ctx));
}
