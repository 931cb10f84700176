import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // vitest's default leaves one core free: one worker on CI's 2 cores, where the suite then ran file by file
    // (757 s); the tests spend much of their time in child processes and file I/O, and two workers take 490 s.
    maxWorkers: availableParallelism(),
  },
});
