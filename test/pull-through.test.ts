// The pull-through cache, end to end: `wrangler dev` (the Worker, its Durable Object, local R2) with a model key
// missing from R2 and a source URL pointing at a loopback origin in this process. The origin drops the connection
// halfway, serves slowly, or serves bytes whose hash is not the configured one.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWrangler } from "../src/tools/r2.ts";
import { testModel } from "./helpers/models.ts";
import { startWranglerDev, type DevServer } from "./helpers/wrangler-dev.ts";

const dir = mkdtempSync(join(tmpdir(), "gemma-edge-pull-"));
let model: Buffer;
let origin: Server;
let originUrl = "";
/** What the origin does with the next request; every request is counted. */
let mode: "drop" | "slow" = "drop";
let requests = 0;
/** The Authorization header of each request. */
const auths: (string | undefined)[] = [];
const servers: DevServer[] = [];

async function startWorker(name: string, vars: Record<string, string>): Promise<{ base: string; persist: string }> {
  const persist = join(dir, name);
  const server = await startWranglerDev(["--persist-to", persist, ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`])]);
  servers.push(server);
  return { base: server.base, persist };
}

async function inR2(persist: string, key: string): Promise<Buffer | undefined> {
  const out = join(dir, `back-${Math.random().toString(36).slice(2)}.gguf`);
  const g = await runWrangler(["r2", "object", "get", `gemma-edge-models/${key}`, "--file", out, "--local", "--persist-to", persist], "pipe");
  return g.code === 0 ? readFileSync(out) : undefined;
}

type Health = { status: string; phase?: string; error?: string; total_bytes: number; loaded_bytes: number };
async function healthUntil(base: string, done: (h: Health) => boolean, seen: Health[] = []): Promise<Health> {
  for (let i = 0; i < 1200; i++) {
    const h = (await (await fetch(`${base}/health`)).json()) as Health;
    seen.push(h);
    if (done(h)) return h;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`health never got there; last: ${JSON.stringify(seen.at(-1))}`);
}

beforeAll(async () => {
  model = Buffer.from((await testModel("tiny")).bytes);
  origin = createHttpServer((req, res) => {
    requests++;
    auths.push(req.headers.authorization);
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": String(model.length) });
    if (mode === "drop") {
      res.write(model.subarray(0, model.length >> 1), () => res.destroy()); // half, then the connection is cut
      return;
    }
    // slow: eight pieces 150 ms apart, so a download is in progress long enough to be seen
    let i = 0;
    const step = Math.ceil(model.length / 8);
    const next = () => {
      const piece = model.subarray(i * step, (i + 1) * step);
      if (piece.length === 0) return res.end();
      i++;
      res.write(piece, () => setTimeout(next, 150));
    };
    next();
  });
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", () => r()));
  originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}/resolve/main/model.gguf`;
}, 60_000);

afterAll(() => {
  for (const s of servers) s.stop();
  origin?.close();
});

describe("pull-through cache (wrangler dev, loopback origin)", () => {
  it("a cut download leaves nothing and a clear error; the retry downloads once, verified, with progress, and serves", async () => {
    const sha = createHash("sha256").update(model).digest("hex");
    const { base, persist } = await startWorker("good", { MODEL_ID: "pulled", MODEL_KEY: "pulled.gguf", MODEL_SOURCE_URL: originUrl, MODEL_SOURCE_SHA256: sha, MODEL_SOURCE_AUTH: "Bearer hf_test" });
    mode = "drop";
    const failed = await healthUntil(base, (h) => h.status === "error");
    expect(failed.error).toMatch(new RegExp(`broke off after \\d+ of ${model.length} bytes.*nothing was stored under "pulled\\.gguf"`));
    expect(await inR2(persist, "pulled.gguf")).toBeUndefined();
    const chat = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "pulled", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }) });
    // a later request retries the download (cut again here) and answers 503 with the reason
    expect(chat.status).toBe(503);
    expect(((await chat.json()) as { error: { message: string } }).error.message).toMatch(/broke off after \d+ of \d+ bytes/);
    expect(requests).toBe(2);
    expect(await inR2(persist, "pulled.gguf")).toBeUndefined();

    mode = "slow";
    const seen: Health[] = [];
    // many concurrent probes while it downloads: still one download
    const probes = Promise.all(Array.from({ length: 6 }, () => healthUntil(base, (h) => h.status === "ready")));
    await healthUntil(base, (h) => h.status === "ready", seen);
    await probes;
    expect(requests).toBe(3);
    expect(auths).toEqual(["Bearer hf_test", "Bearer hf_test", "Bearer hf_test"]); // the secret goes to the source
    expect(seen.some((h) => h.status === "loading" && h.phase === "downloading" && h.total_bytes === model.length && h.loaded_bytes > 0 && h.loaded_bytes < model.length)).toBe(true);
    expect((await inR2(persist, "pulled.gguf"))?.equals(model)).toBe(true);
    const ok = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "pulled", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }) });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);
  }, 180_000);

  it("bytes that do not match the configured SHA-256 are never stored", async () => {
    const wrong = "0".repeat(64);
    const before = requests;
    mode = "slow";
    const { base, persist } = await startWorker("badhash", { MODEL_ID: "pulled", MODEL_KEY: "pulled.gguf", MODEL_SOURCE_URL: originUrl, MODEL_SOURCE_SHA256: wrong });
    const failed = await healthUntil(base, (h) => h.status === "error");
    const got = createHash("sha256").update(model).digest("hex");
    expect(failed.error).toContain(`has SHA-256 ${got}, not the configured ${wrong}; nothing was stored under "pulled.gguf"`);
    expect(requests).toBe(before + 1);
    expect(await inR2(persist, "pulled.gguf")).toBeUndefined();
  }, 180_000);
});
