// The engine in the chat page runs Gemma 2 and Gemma 3: `gemma-edge serve` (in process) on a tiny file of each,
// its chat page in headless Chromium running the model in the page, on WebAssembly and on WebGPU (SwiftShader),
// each giving the greedy reply the server's own API gives.
import type { ServerType } from "@hono/node-server";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNodeServer } from "../../src/hosts/node-server.ts";
import { testModel } from "../helpers/models.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"; // set by test/setup/system.ts

describe.each(["gemma2", "gemma3"] as const)("the chat page's own engine on a %s file", (arch) => {
  let server: ServerType;
  let base = "";
  beforeAll(async () => {
    if (process.env.GEMMA_EDGE_CHROMIUM_ERROR) throw new Error(`no Chromium for the browser tests: ${process.env.GEMMA_EDGE_CHROMIUM_ERROR}`);
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: set CHROMIUM_PATH`);
    const { path } = await testModel(`tiny-${arch}`, "q8_0");
    const s = await startNodeServer({ model: path, port: 0, modelId: `tiny-${arch}` });
    server = s.server;
    base = s.url;
    await s.service.load();
  }, 60_000);
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  // WebGPU in the page once (Gemma 3); test/webgpu runs both architectures on it bit for bit against WebAssembly
  it.each(arch === "gemma3" ? (["wasm", "webgpu"] as const) : (["wasm"] as const))("in the page on %s: the server's greedy reply", async (backend) => {
    const api = (await (await fetch(`${base}/v1/chat/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: `tiny-${arch}`, messages: [{ role: "user", content: "Hello there, how are you today?" }], max_tokens: 24, temperature: 0 }),
    })).json()) as { choices: { message: { content: string } }[] };
    const args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
    const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), `gemma-edge-chromium-${arch}-`)), {
      executablePath: CHROMIUM,
      headless: true,
      args: backend === "webgpu" ? [...args, "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"] : [...args, "--disable-gpu"],
    });
    try {
      const p = browser.pages()[0] ?? (await browser.newPage());
      await p.goto(`${base}/`);
      await p.locator("#model option").first().waitFor({ state: "attached" });
      await p.check("#local");
      await p.selectOption("#localBackend", backend);
      await p.fill("#temperature", "0");
      await p.fill("#maxTokens", "24");
      await p.fill("#input", "Hello there, how are you today?");
      await p.click("#send");
      // the reply finishes, or the page shows why not
      await p.waitForFunction(() => document.querySelector(".msg.assistant[data-finish]") || document.getElementById("error")?.textContent, null, { timeout: 90_000 });
      expect(await p.textContent("#error")).toBe("");
      const bubble = p.locator(".msg.assistant[data-finish]");
      expect(await p.textContent("#status")).toMatch(backend === "webgpu" ? /^running in this browser \(webgpu\)$/ : /^running in this browser \(wasm-(relaxed|simd)\)$/);
      expect(await bubble.getAttribute("data-raw")).toBe(api.choices[0]!.message.content);
    } finally {
      await browser.close();
    }
  }, 180_000);
});
