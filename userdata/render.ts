import { readFileSync } from 'node:fs';

export interface BootstrapValues {
  readonly CLUSTER: string;
  readonly HOST_ID: string;
  readonly REGION: string;
  readonly ARTIFACT_URI: string;
  readonly SWAP_MIB: number;
}

const SAFE = /^[A-Za-z0-9._:/@+-]+$/;

/** Renders userdata/bootstrap.sh; refuses values that could break out of the single-quoted assignments. */
export function renderBootstrap(values: BootstrapValues): string {
  const template = readFileSync(new URL('./bootstrap.sh', import.meta.url), 'utf8');
  return template.replace(/@@([A-Z_]+)@@/g, (_, key: string) => {
    const v = (values as unknown as Record<string, string | number | undefined>)[key];
    if (v === undefined) throw new Error(`bootstrap.sh placeholder @@${key}@@ has no value`);
    if (!SAFE.test(String(v))) throw new Error(`value for ${key} ("${String(v)}") has characters not allowed in userdata`);
    return String(v);
  });
}
