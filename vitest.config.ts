import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Removes the trial networks the tests' runtimes made.
    globalSetup: ["test/helpers/global-teardown.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start servers and containers; two cores are shared by all of them.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
