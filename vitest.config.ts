import { defineConfig } from 'vitest/config';

/**
 * Two groups: every test, in parallel; then, alone, the `*.disruptive.test.ts` files, which stop
 * and restart a shared test server (scripts/services.sh) and would break the tests of other
 * files that use it at the same time.
 */
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: { name: 'tests', include: ['src/**/*.test.ts', 'test/**/*.test.ts'], exclude: ['**/*.disruptive.test.ts', '**/node_modules/**'] },
      },
      {
        extends: true,
        test: { name: 'disruptive', include: ['src/**/*.disruptive.test.ts', 'test/**/*.disruptive.test.ts'], sequence: { groupOrder: 1 } },
      },
    ],
  },
});
