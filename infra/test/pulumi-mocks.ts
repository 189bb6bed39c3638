import * as pulumi from '@pulumi/pulumi';

/** A resource a program declared under setMocks. */
export interface Declared {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  /** The `import` option's id, when the resource was declared with one. */
  importId?: string;
}

export interface MockOptions {
  /** Outputs of the stacks a program references, by the name given to its StackReference. */
  readonly stacks?: Readonly<Record<string, Record<string, unknown>>>;
  /** Answers for provider functions, by token (e.g. `aws:ssm/getParameter:getParameter`). */
  readonly calls?: Readonly<Record<string, (inputs: Record<string, unknown>) => Record<string, unknown>>>;
  /** Answers a resource's registration instead of the echo (a test's model of a provider); undefined: the echo. */
  readonly resource?: (args: pulumi.runtime.MockResourceArgs) => pulumi.runtime.MockResourceResult | undefined;
}

/**
 * Installs Pulumi mocks that record every declared resource (its state echoes
 * its inputs, plus an arn and a name) and refuse any unexpected provider call
 * or stack reference. Call before importing the component under test.
 */
export function recordResources(options: MockOptions = {}): Declared[] {
  const declared: Declared[] = [];
  void pulumi.runtime.setMocks(
    {
      newResource: (a) => {
        declared.push({ type: a.type, name: a.name, inputs: a.inputs as Record<string, unknown>, ...(a.id ? { importId: a.id } : {}) });
        const answer = options.resource?.(a);
        if (answer) return answer;
        if (a.type === 'pulumi:pulumi:StackReference') {
          const stack = String(a.inputs.name ?? a.name);
          const outputs = options.stacks?.[stack];
          if (!outputs) throw new Error(`unexpected stack reference ${stack}`);
          return { id: stack, state: { name: stack, outputs, secretOutputNames: [] } };
        }
        const id = `${a.name}-id`;
        return { id, state: { ...a.inputs, arn: `arn:aws:mock:::${a.name}`, name: a.inputs.name ?? a.name, ...computed(a.type, id, a.inputs as Record<string, unknown>) } };
      },
      call: (a) => {
        const answer = options.calls?.[a.token];
        if (!answer) throw new Error(`unexpected call ${a.token}`);
        return answer(a.inputs as Record<string, unknown>);
      },
    },
    'berth',
    'test',
    false,
  );
  return declared;
}

let eips = 0;

/** Outputs AWS computes that programs pass on, with plausible values. */
function computed(type: string, id: string, inputs: Record<string, unknown>): Record<string, unknown> {
  switch (type) {
    case 'aws:s3/bucket:Bucket': return { bucket: inputs['bucket'] ?? `${String(inputs['bucketPrefix'] ?? 'bucket-')}0001` };
    case 'aws:ecr/repository:Repository': return { repositoryUrl: `111122223333.dkr.ecr.eu-west-1.amazonaws.com/${String(inputs['name'])}` };
    case 'aws:ec2/eip:Eip': return { publicIp: `203.0.113.${++eips}`, allocationId: id };
    case 'aws:ec2/launchTemplate:LaunchTemplate': return { latestVersion: 1 };
    case 'aws:kms/key:Key': return { keyId: id };
    default: return {};
  }
}

/** Resources that wait on others' outputs register a few ticks later: wait until nothing new arrives. */
export async function settled(declared: readonly Declared[]): Promise<void> {
  let last = -1;
  while (declared.length !== last) {
    last = declared.length;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The resources of one type, e.g. `aws:ec2/subnet:Subnet`. */
export const ofType = (declared: readonly Declared[], type: string): Declared[] => declared.filter((d) => d.type === type);

/** Counts declared resources by type. */
export function countByType(declared: readonly Declared[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const d of declared) counts[d.type] = (counts[d.type] ?? 0) + 1;
  return counts;
}

/** Splits a cloud-init multipart document into its parts' file names and bodies. */
export function userdataParts(base64: string): Array<{ filename: string; body: string }> {
  const doc = Buffer.from(base64, 'base64').toString('utf8');
  const boundary = /boundary="([^"]+)"/.exec(doc)![1]!;
  return doc.split(`--${boundary}`).slice(1, -1).map((p) => ({
    filename: /filename="([^"]+)"/.exec(p)![1]!,
    body: p.slice(p.indexOf('\n\n') + 2),
  }));
}
