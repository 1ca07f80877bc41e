import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    // Network tests build namespaces and start processes: keep files serial per worker, bounded.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
