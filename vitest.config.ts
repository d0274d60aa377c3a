import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      {
        // engine, CLI and llama.cpp comparisons: Node
        test: {
          name: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/worker/**"],
          // llama.cpp comparisons load native code; keep them in forked processes
          pool: "forks",
          // WebGPU tests need a Vulkan driver; without a GPU, SwiftShader (set up here, inherited by the forks)
          globalSetup: ["test/setup/system.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        // the WebGPU tests once more on Mesa's lavapipe: another shader compiler, which folds and fuses float
        // operations that SwiftShader leaves alone
        test: {
          name: "webgpu-lavapipe",
          include: ["test/webgpu/**/*.test.ts"],
          pool: "forks",
          globalSetup: ["test/setup/system.ts"],
          env: { GEMMA_EDGE_GPU: "lavapipe" },
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        // the Worker: inside workerd, with the R2 bucket and the Durable Object of wrangler.toml
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: { bindings: { KEEPALIVE_MS: "50", MODEL_ID: "gemma-edge-tiny", MODEL_KEY: "gemma-edge-tiny.gguf" } },
          }),
        ],
        test: { name: "workers", include: ["test/worker/**/*.test.ts"], testTimeout: 120_000, hookTimeout: 120_000 },
      },
    ],
  },
});
