import { defineConfig } from 'vitest/config';

// Tests that use the real Docker engine and loop devices share host-wide
// resources (dockerd, /dev/loop*, mounts), so files run one at a time; tests
// inside a file can still be concurrent where they say so.
export default defineConfig({
  test: {
    include: ['agent/**/*.test.ts', 'volume-plugin/**/*.test.ts', 'traefik/**/*.test.ts', 'lib/**/*.test.ts', 'test/**/*.test.ts', 'userdata/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
