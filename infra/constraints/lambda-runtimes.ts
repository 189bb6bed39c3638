/**
 * Lambda's Node.js runtimes and their deprecation dates, from AWS's table ("Lambda runtimes",
 * https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html, "Supported runtimes" and
 * "Deprecated runtimes"), read on 2026-12-06 through copies of it (this machine has no internet:
 * each entry's `source` says which), not the live page. After the deprecation date Lambda stops patching a
 * runtime; after "block function create" CreateFunction refuses it (a new stack, or a function
 * Pulumi replaces, fails); after "block function update" UpdateFunctionCode and
 * UpdateFunctionConfiguration refuse it too (every `pulumi up` that touches the function fails).
 *
 * AWS moves these dates (the table says they are projections): nodejs20.x was first announced
 * with blocks on 2026-06-01 / 2026-07-01 and now reads 2027-02-01 / 2027-03-03 (as quoted from
 * the table in aws-cloudformation/cfn-lint#4531, 2026-06-02). Re-read the table when a date here
 * comes near, and write the date you read it in READ_ON.
 *
 * The conformance test (constraints.test.ts) checks every declared function against this table
 * with the test's clock: a runtime past its block-create date fails it, and so does a runtime the
 * table does not know. Nothing here allow-lists a runtime: its dates come with it.
 */
export interface RuntimeDates {
  /** Lambda stops security patches; functions keep running. */
  readonly deprecated: string;
  /** CreateFunction refuses the runtime from this day. */
  readonly blockCreate: string;
  /** UpdateFunctionCode/UpdateFunctionConfiguration refuse it from this day. */
  readonly blockUpdate: string;
  /** Where the dates were read. */
  readonly source: string;
}

export const READ_ON = '2026-12-06';

const TABLE = 'AWS Lambda Developer Guide, "Lambda runtimes"';

export const LAMBDA_RUNTIMES: Readonly<Record<string, RuntimeDates>> = {
  'nodejs18.x': { deprecated: '2025-09-01', blockCreate: '2027-02-01', blockUpdate: '2027-03-03', source: `${TABLE}, deprecated runtimes (as quoted in aws/aws-rfdk#1703, 2026-07-08)` },
  'nodejs20.x': { deprecated: '2026-04-30', blockCreate: '2027-02-01', blockUpdate: '2027-03-03', source: `${TABLE}, supported runtimes (as quoted in aws-cloudformation/cfn-lint#4531, 2026-06-02)` },
  'nodejs22.x': { deprecated: '2027-04-30', blockCreate: '2027-06-01', blockUpdate: '2027-07-01', source: `${TABLE}, supported runtimes (deprecation and update block as listed by endoflife.date/aws-lambda; block-create by the table's pattern, not read directly)` },
  'nodejs24.x': { deprecated: '2028-04-30', blockCreate: '2028-06-01', blockUpdate: '2028-07-01', source: `${TABLE}, supported runtimes (deprecation and update block as listed by endoflife.date/aws-lambda; block-create by the table's pattern, not read directly)` },
};

const day = (iso: string) => Date.parse(`${iso}T00:00:00Z`);

/**
 * Why a function on `runtime` would not deploy at `now`: past the block-create date (a create
 * fails), or unknown to the table. Empty when it deploys. A deprecated runtime whose blocks are
 * still ahead deploys and is reported by `runtimeNotices`.
 */
export function runtimeProblems(runtime: string, now: Date, table: Readonly<Record<string, RuntimeDates>> = LAMBDA_RUNTIMES): string[] {
  const dates = table[runtime];
  if (!dates) return [`Lambda runtime "${runtime}" is not in infra/constraints/lambda-runtimes.ts: read its dates from AWS's runtimes table and add them`];
  const at = now.getTime();
  if (at >= day(dates.blockUpdate)) return [`Lambda runtime "${runtime}": functions can be neither created nor updated since ${dates.blockUpdate} (deprecated ${dates.deprecated}; ${dates.source})`];
  if (at >= day(dates.blockCreate)) return [`Lambda runtime "${runtime}": CreateFunction refuses it since ${dates.blockCreate}, updates stop on ${dates.blockUpdate} (deprecated ${dates.deprecated}; ${dates.source})`];
  return [];
}

/** A runtime already deprecated, whose blocks are still ahead: worth a line in the test's output. */
export function runtimeNotices(runtime: string, now: Date, table: Readonly<Record<string, RuntimeDates>> = LAMBDA_RUNTIMES): string[] {
  const dates = table[runtime];
  if (!dates || now.getTime() < day(dates.deprecated) || now.getTime() >= day(dates.blockCreate)) return [];
  return [`Lambda runtime "${runtime}" is deprecated since ${dates.deprecated}: CreateFunction refuses it from ${dates.blockCreate}`];
}
