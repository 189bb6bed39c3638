import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import type { Backend } from './backends/backend.js';
import type { FilesystemOps } from './fs/types.js';
import { dict, held, refCount, type PersistedState } from './state-store.js';

export interface RecoveryDeps {
  backend: Pick<Backend, 'list' | 'recover'>;
  fs: Pick<FilesystemOps, 'isMounted' | 'unmount'>;
  mountpointOf(name: string): string;
  log: Logger;
}

/**
 * Recovery at start (docs/design.md §4): the state file as loaded, checked
 * against the backend and mountinfo, changed in place.
 *
 * - The backend's volumes join the view; a recorded volume the backend no
 *   longer lists (a Remove cut short after the delete) leaves it, unless it
 *   is mounted (mountinfo decides).
 * - A recorded mount that is no longer there is dropped with its references.
 * - A mount found without a record is an interrupted Mount when the state
 *   file was intact (no container got it: unmounted), and a mount of unknown
 *   users when the file was lost (`rebuilt`: kept, its references unknown
 *   until the engine or the next Unmount resolves them).
 * - A volume marked in its unmount grace (unmount-grace.ts) that the last
 *   agent never finished is unmounted when no container holds it.
 * - Then the backend undoes what a dead agent left (strays, orphan devices).
 *
 * Nothing here fails the start: a backend that cannot list leaves the view
 * to the state file, and a failed cleanup is logged.
 */
export async function recoverAtStart(state: PersistedState, rebuilt: boolean, deps: RecoveryDeps): Promise<void> {
  const { backend, fs, log } = deps;
  try {
    const listed = await backend.list();
    for (const record of listed) {
      const known = state.volumes[record.name];
      if (known) known.record = record;
      else state.volumes[record.name] = { record, mounts: dict(), mounted: false };
    }
    const names = new Set(listed.map((r) => r.name));
    for (const [name, vol] of Object.entries(state.volumes)) {
      if (names.has(name) || vol.mounted) continue;
      log.warn({ name }, 'recorded volume no longer in the backend; dropped from the list');
      delete state.volumes[name];
    }
  } catch (err) {
    log.warn({ err: errorMessage(err) }, "could not list the backend's volumes at start; answering from the state file");
  }
  const mounted = new Set<string>();
  for (const [name, vol] of Object.entries(state.volumes)) {
    const mountpoint = deps.mountpointOf(name);
    const reallyMounted = vol.devicePath ? await fs.isMounted(mountpoint, vol.devicePath).catch(() => false) : await fs.isMounted(mountpoint);
    if (vol.unmountPending && reallyMounted && !held(vol)) {
      // A grace the last agent never finished (killed, crashed): no container has the volume.
      log.warn({ name }, 'found mounted in an unmount grace the last agent did not finish; unmounting');
      await fs.unmount(mountpoint).then(
        () => ((vol.mounted = false), delete vol.devicePath),
        (err: unknown) => (vol.lastError = errorMessage(err)),
      );
    } else if (vol.mounted && !reallyMounted) {
      log.warn({ name, refs: refCount(vol) }, 'state file says mounted but mountinfo does not; dropping its mount references');
      vol.mounted = false;
      vol.mounts = dict();
      delete vol.unknownRefs;
      delete vol.devicePath;
    } else if (!vol.mounted && reallyMounted && rebuilt) {
      log.warn({ name }, 'found mounted without a record of who uses it; keeping it mounted, its references unknown');
      vol.mounted = true;
      vol.unknownRefs = true;
    } else if (!vol.mounted && reallyMounted) {
      log.warn({ name }, 'found mounted by a Mount that never completed (no container has it); unmounting');
      await fs.unmount(mountpoint).catch((err: unknown) => {
        vol.mounted = true;
        vol.unknownRefs = true;
        vol.lastError = errorMessage(err);
      });
    }
    delete vol.unmountPending;
    if (vol.mounted) mounted.add(vol.record.id);
  }
  await backend.recover?.(mounted).catch((err: unknown) => log.error({ err: errorMessage(err) }, 'could not clean up after an earlier agent'));
}
