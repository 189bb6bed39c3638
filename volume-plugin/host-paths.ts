import { join } from 'node:path';

/**
 * Every place on the host berth reads or writes, in one value the agent
 * builds from its configuration (agent/config.ts holds the defaults) and
 * passes down: nothing below agent/ names a host path of its own, so tests,
 * containers (the managed plugin sees the host's /sys and /dev elsewhere) and
 * a second front end can point each one somewhere else.
 */
export interface HostPaths {
  /** sysfs root (/sys): block devices (block/, dev/block/), NVMe serials, DMI. */
  sysfsRoot: string;
  /** Directory of block device nodes (/dev). */
  devRoot: string;
  /** The mount table the agent checks every mount against (/proc/self/mountinfo). */
  mountinfoPath: string;
  /** procfs root (/proc): tools an agent that died left running. */
  procRoot: string;
  /** State file, loop images (images/). */
  stateDir: string;
  /** Where volumes are mounted, one directory per name. */
  mountsDir: string;
}

/** Where the service mounts each volume. A CSI front end would pass its staging paths instead. */
export interface MountLayout {
  mountpointOf(name: string): string;
}

/** One directory per volume name under dir. */
export function mountsIn(dir: string): MountLayout {
  return { mountpointOf: (name) => join(dir, name) };
}
