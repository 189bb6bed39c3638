import { defineConfig } from 'vitest/config';

/**
 * Two groups (docs/testing.md). `unit`: tests beside the code and under
 * test/unit, test/fakes and test/aws. Each keeps to its own temp dirs, private
 * sockets and port-0 listeners, so files run in parallel. `system`: every other
 * file under test/. These share host-wide resources (the shared dockerd,
 * /dev/loop*, /run/docker/plugins, mounts, tmpfs), so files run one at a time,
 * after the unit group. A new file is a system test unless it is placed in the
 * unit group's paths.
 */
const unit = ['agent/**/*.test.ts', 'volume-plugin/**/*.test.ts', 'traefik/**/*.test.ts', 'lib/**/*.test.ts', 'userdata/**/*.test.ts', 'test/unit/**/*.test.ts', 'test/fakes/**/*.test.ts', 'test/aws/**/*.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // A failed test names the step it was in (test/helpers/step.ts).
    setupFiles: ['test/helpers/step-setup.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: unit, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: {
          name: 'system',
          include: ['test/**/*.test.ts'],
          exclude: unit,
          fileParallelism: false,
          // With BERTH_TEST_EARLY_DEBOOTSTRAP=1 (npm test): the Debian rootfs of test/systemd-host.test.ts is made in the background from the start of the run.
          globalSetup: ['test/helpers/debian-rootfs-setup.ts'],
          // Runs after the unit group: vitest runs groups in order, and refuses two groups with different worker counts at one order.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
