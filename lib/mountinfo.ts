import { readFile } from 'node:fs/promises';

/** One line of /proc/self/mountinfo (proc(5)). */
export interface MountEntry {
  mountId: number;
  parentId: number;
  /** Device number of the mounted filesystem as "major:minor". */
  majorMinor: string;
  root: string;
  mountpoint: string;
  fstype: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal (\040 …). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 3) continue;
    out.push({
      mountId: Number(fields[0]),
      parentId: Number(fields[1]),
      majorMinor: fields[2]!,
      root: unescape(fields[3]!),
      mountpoint: unescape(fields[4]!),
      fstype: fields[sep + 1]!,
      source: unescape(fields[sep + 2]!),
    });
  }
  return out;
}

/** Reads a mount table; `path` is the caller's (the agent's HostPaths.mountinfoPath). */
export async function readMountinfo(path: string): Promise<MountEntry[]> {
  return parseMountinfo(await readFile(path, 'utf8'));
}

/** "major:minor" of a device number as stat() reports it in rdev. */
export function majorMinorOf(rdev: number): string {
  // Linux encodes dev_t with a 12-bit major split around a 20-bit minor.
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/** The topmost mount at a mountpoint (later lines shadow earlier ones). */
export function mountAt(entries: readonly MountEntry[], mountpoint: string): MountEntry | undefined {
  let found: MountEntry | undefined;
  for (const e of entries) if (e.mountpoint === mountpoint) found = e;
  return found;
}
