import * as pulumi from '@pulumi/pulumi';

/** A resource a program declared under setMocks. */
export interface Declared {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}

/**
 * Installs Pulumi mocks that record every declared resource (its state echoes
 * its inputs, plus an arn and a name) and refuse any unexpected provider call.
 * Call before importing the component under test.
 */
export function recordResources(): Declared[] {
  const declared: Declared[] = [];
  void pulumi.runtime.setMocks(
    {
      newResource: (a) => {
        declared.push({ type: a.type, name: a.name, inputs: a.inputs as Record<string, unknown> });
        return { id: `${a.name}-id`, state: { ...a.inputs, arn: `arn:aws:mock:::${a.name}`, name: a.inputs.name ?? a.name } };
      },
      call: (a) => {
        throw new Error(`unexpected call ${a.token}`);
      },
    },
    'berth',
    'test',
    false,
  );
  return declared;
}

/** Resources that wait on others' outputs register a few ticks later: wait until nothing new arrives. */
export async function settled(declared: readonly Declared[]): Promise<void> {
  let last = -1;
  while (declared.length !== last) {
    last = declared.length;
    await new Promise((r) => setTimeout(r, 50));
  }
}
