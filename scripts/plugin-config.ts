import { ConfigSchema, settingDescription } from '../agent/config.js';
import { AGENT_MAIN, AGENT_NODE_FLAGS } from '../agent/node-flags.js';

/**
 * config.json of berth as a Docker managed plugin (docker plugin create).
 * The layout the agent needs is fixed here rather than settable:
 *  - the socket: dockerd binds /run/docker/plugins of the plugin to its own
 *    exec root and dials <that>/berth.sock, so the agent's plugin name is berth
 *    (users name the driver by the plugin's name, e.g. berth:local);
 *  - the state directory is the propagatedMount: every mountpoint
 *    (<state dir>/mounts/<name>) is made in the plugin's mount namespace and
 *    must propagate to dockerd's; dockerd keeps the directory at
 *    /var/lib/docker/plugins/<id>/propagated-mount;
 *  - /dev from the host with every device allowed: loop devices appear after
 *    the plugin starts (losetup --find), EBS volumes when they attach.
 */
/** How the image starts the agent (Dockerfile.agent's ENTRYPOINT says the same; test/node-flags.test.ts checks it). */
export const AGENT_ENTRYPOINT = ['node', ...AGENT_NODE_FLAGS, AGENT_MAIN];
export const PLUGIN_STATE_DIR = '/var/lib/berth';
export const PLUGIN_SOCKET = 'berth.sock';
/** Loop images live on the host, outside dockerd's plugin directory, which `docker plugin rm` deletes. */
export const PLUGIN_IMAGES_SOURCE = '/var/lib/berth-plugin/images';

/** Root and the capabilities the agent's tools need, beyond Docker's default set. */
export function pluginCapabilities(withSysResource: boolean): string[] {
  return [
    'CAP_SYS_ADMIN', // mount, umount, loop device ioctls
    'CAP_LINUX_IMMUTABLE', // chattr +i on mountpoints that are not mounted
    ...(withSysResource ? ['CAP_SYS_RESOURCE'] : []), // resize2fs growing a mounted ext4 into reserved space
  ];
}

const FIXED: Record<string, string> = {
  BERTH_PLUGIN_NAME: 'berth',
  BERTH_PLUGIN_DIR: '/run/docker/plugins',
  BERTH_STATE_DIR: PLUGIN_STATE_DIR,
};

/**
 * Settings a managed plugin cannot honour: the certificate refresher writes
 * Traefik's files on the host, which the plugin's root filesystem is not.
 * Run the refresher from the systemd agent or the agent container. Nor is the
 * engine's socket inside a plugin, so references cannot be checked against it.
 */
const NOT_IN_PLUGIN = /^BERTH_(CERT_|S3_ENDPOINT$|SYSFS_ROOT$|DEV_ROOT$|DOCKER_HOST$|REFERENCE_CHECK_SECONDS$)/;

export interface PluginEnv {
  name: string;
  description: string;
  settable: string[];
  value: string;
}

export function pluginEnv(): PluginEnv[] {
  const env: PluginEnv[] = Object.entries(FIXED).map(([name, value]) => ({ name, description: `${settingDescription(name) ?? name} (fixed by the plugin layout)`, settable: [], value }));
  for (const name of Object.keys(ConfigSchema.shape)) {
    if (name in FIXED || NOT_IN_PLUGIN.test(name)) continue;
    // An empty value is "not set": the agent applies its default.
    env.push({ name, description: settingDescription(name) ?? name, settable: ['value'], value: '' });
  }
  return env;
}

export function pluginConfig(opts: { withSysResource: boolean; description?: string }) {
  return {
    description: opts.description ?? 'berth: Docker volumes on their own block device (loop or EBS), formatted only when blank',
    documentation: 'docs/operations.md',
    entrypoint: AGENT_ENTRYPOINT,
    workdir: '/opt/berth',
    interface: { types: ['docker.volumedriver/1.0'], socket: PLUGIN_SOCKET },
    network: { type: 'host' },
    propagatedMount: PLUGIN_STATE_DIR,
    mounts: [
      { name: 'dev', description: 'block devices: loop devices and EBS volumes appear here after start', source: '/dev', destination: '/dev', type: 'bind', options: ['rbind'] },
      { name: 'images', description: 'loop backend: the directory on the host holding the volume images (must exist)', source: PLUGIN_IMAGES_SOURCE, destination: `${PLUGIN_STATE_DIR}/images`, type: 'bind', options: ['rbind'], settable: ['source'] },
    ],
    linux: { capabilities: pluginCapabilities(opts.withSysResource), allowAllDevices: true, devices: [] },
    ipcHost: false,
    pidHost: false,
    args: { name: 'args', description: 'not used: configure with the settable env', settable: [], value: [] },
    env: pluginEnv(),
  };
}
