import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * Replaces `path` with `data` so that a reader sees either the old or the new
 * content, never a mix, even across a crash: write a temp file in the same
 * directory, fsync it, rename it over the target, fsync the directory.
 * On any failure the temp file is removed and the old file is untouched.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  const { tmp, handle } = await createTemp(dir, mode);
  try {
    try {
      await handle.writeFile(data);
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

/**
 * A new file beside the target. The name is short (the target's own may be near NAME_MAX,
 * 255 bytes) and needs to be unique, not unguessable: the directories are root's own. Not
 * node:crypto's randomBytes: loading node:crypto costs the agent ~1 MB of memory
 * (docs/operations.md "Where it stands"). `wx` refuses a name that exists; then another.
 */
async function createTemp(dir: string, mode: number): Promise<{ tmp: string; handle: FileHandle }> {
  for (let attempt = 1; ; attempt++) {
    const tmp = join(dir, `.tmp-${Math.random().toString(36).slice(2, 12)}`);
    try {
      return { tmp, handle: await open(tmp, 'wx', mode) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt === 5) throw err;
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
