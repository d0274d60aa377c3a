// The model split across shard Workers under one wrangler dev (`SHARD_BUDGET_MB=0.6 npm start`): 3 layer shards
// and 2 vocabulary shards, each a Worker script of its own with a WebAssembly memory of at most 0.6 MB. Greedy
// tokens and logprobs identical to the single-process engine and to llama.cpp, streaming on both APIs, every
// shard within its budget after concurrent requests, a shard reset mid-stream, a client that disconnects, and a
// shard that cannot load its part (then can).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { generate } from "../../src/engine/generate.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model/load.ts";
import { MB, planShards } from "../../src/engine/shard-plan.ts";
import { loadWasmBackend } from "../../src/hosts/node-wasm.ts";
import { putLocal } from "../../src/tools/r2.ts";
import { shardedConfigs } from "../../src/tools/shard-configs.ts";
import { LlamaCppModel } from "../helpers/llama-cpp.ts";
import { testModel } from "../helpers/models.ts";
import { freePort, startWranglerDev, type DevServer } from "../helpers/wrangler-dev.ts";

const root = resolve(import.meta.dirname, "../..");
const SHAPE = { vocabSize: 8192, dim: 96, hiddenDim: 320, nLayers: 3, nHeads: 4, nKvHeads: 2, headDim: 32, contextLength: 512 };
const BUDGET_MB = 0.6;
const LONG = "The quick brown fox jumps over the lazy dog. Once upon a time there was a little model that wanted to answer every question on the edge of the network. ".repeat(5);
const PROMPTS = ["Hello world", "The quick brown fox", LONG];

let model: { path: string; bytes: Uint8Array };
let child: ChildProcess;
let base = "";
let log = "";
let local: LoadedModel;
let MODEL_ID = "";

async function get(path: string): Promise<any> {
  return (await fetch(`${base}${path}`)).json();
}
async function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${base}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}
/** TGI /generate with details: the ids and logprobs of the greedy continuation. */
async function tgiGreedy(inputs: string, n: number, at = base): Promise<{ ids: number[]; logprobs: number[]; text: string }> {
  // cache_prompt: false: a prefix reused from the prompt cache may differ in the last bits (docs/batching.md)
  const body = JSON.stringify({ inputs, parameters: { max_new_tokens: n, details: true, do_sample: false, cache_prompt: false } });
  const r = (await (await fetch(`${at}/generate`, { method: "POST", headers: { "Content-Type": "application/json" }, body })).json()) as any;
  return { ids: r.details.tokens.map((t: any) => t.id), logprobs: r.details.tokens.map((t: any) => t.logprob), text: r.generated_text };
}
/** The same in this process, one part, no shards. */
async function localGreedy(inputs: string, n: number): Promise<{ prompt: number[]; ids: number[]; logprobs: number[] }> {
  const prompt = local.tokenizer.encode(inputs, { addBos: true });
  const ids: number[] = [], logprobs: number[] = [];
  for await (const ev of generate(local, { prompt: { ids: prompt }, maxTokens: n, sampling: { temperature: 0 } })) {
    if (ev.type === "token") ids.push(ev.id), logprobs.push(ev.logprob);
  }
  return { prompt, ids, logprobs };
}

beforeAll(async () => {
  model = await testModel(SHAPE, "q4_0", 7);
  MODEL_ID = basename(model.path, ".gguf");
  local = await loadModel(new MemoryByteSource(model.bytes), await loadWasmBackend(), { contextSize: 512 });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  child = spawn("npm", ["start"], {
    cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"],
    env: {
      // no prompt cache: the tests below watch each shard's sequence slot being freed when a request ends
      ...process.env, PORT: String(port), MODEL: model.path, SHARD_BUDGET_MB: String(BUDGET_MB), ALLOW_SHARD_RESET: "1", PROMPT_CACHE_SLOTS: "0",
      GEMMA_EDGE_STATE_DIR: join(mkdtempSync(join(tmpdir(), "gemma-edge-sharded-")), "state"), CLOUDFLARE_CF_FETCH_ENABLED: "false",
    },
  });
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  for (let i = 0; i < 900; i++) {
    try {
      if ((await fetch(`${base}/health`)).status === 200) return;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) throw new Error(`npm start exited early:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the sharded server did not become ready:\n${log}`);
}, 240_000);

afterAll(() => {
  if (child?.pid) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

describe("SHARD_BUDGET_MB=0.6 npm start", () => {
  it("prints the plan, and /health lists 3 layer shards and 2 vocabulary shards, each within its budget", async () => {
    expect(log).toMatch(/5 part\(s\) for a budget of 0\.60 MB each/);
    expect(log).toMatch(/shard 3: vocab \[0, 4096\)/);
    const h = await get("/health");
    expect(h.status).toBe("ready");
    expect(h.shards.map((s: any) => [s.layers ?? null, s.vocab ?? null])).toEqual([
      [[0, 1], null], [[1, 2], null], [[2, 3], null], [null, [0, 4096]], [null, [4096, 8192]],
    ]);
    for (const s of h.shards) {
      expect(s.status).toBe("ready");
      expect(s.budget_bytes).toBe(BUDGET_MB * MB);
      expect(s.wasm_memory_bytes).toBeGreaterThan(0);
      expect(s.wasm_memory_bytes).toBeLessThanOrEqual(s.budget_bytes);
    }
  });

  it("greedy ids and logprobs equal the unsharded Durable Object's (in workerd too) bit for bit, the ids the Node engine's and llama.cpp's", async () => {
    // the same file served by today's single Durable Object (wrangler.toml, no budget), in a wrangler dev of its own
    const state = join(mkdtempSync(join(tmpdir(), "gemma-edge-unsharded-")), "state");
    await putLocal({ file: model.path, key: "one.gguf", persistTo: state });
    const one = await startWranglerDev(["--var", "MODEL_ID:one", "--var", "MODEL_KEY:one.gguf", "--persist-to", state]);
    const ref = await LlamaCppModel.load(model.path);
    try {
      for (const p of PROMPTS) {
        const sharded = await tgiGreedy(p, 24);
        const unsharded = await tgiGreedy(p, 24, one.base);
        expect(sharded).toEqual(unsharded); // ids, logprobs and text: the logits were the same
        const node = await localGreedy(p, 24);
        if (p === LONG) expect(node.prompt.length).toBeGreaterThanOrEqual(64); // the tiled attention, in 8-token chunks
        expect(sharded.ids).toEqual(node.ids);
        // (Node's logprobs agree to ~1e-15: the sampler's double log-sum-exp uses the Math.exp of another V8)
        sharded.logprobs.forEach((lp, i) => expect(Math.abs(lp - node.logprobs[i]!)).toBeLessThan(1e-12));
        expect(sharded.ids).toEqual((await ref.greedy(node.prompt, 24)).slice(0, sharded.ids.length));
      }
    } finally {
      await ref.dispose();
      one.stop();
    }
  });

  it("streams through the OpenAI and TGI routes: the same text and tokens as whole answers", async () => {
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "none", maxRetries: 0 });
    expect((await client.models.list()).data.map((m) => m.id)).toEqual([MODEL_ID]);
    const req = { model: MODEL_ID, messages: [{ role: "user" as const, content: "Hi there" }], max_tokens: 20, temperature: 0 };
    const whole = (await client.chat.completions.create(req)).choices[0]!.message.content;
    let text = "";
    for await (const c of await client.chat.completions.create({ ...req, stream: true })) text += c.choices[0]?.delta.content ?? "";
    expect(text).toBe(whole);
    const tgi = await tgiGreedy("Once upon a time", 16);
    const raw = await (await post("/generate_stream", { inputs: "Once upon a time", parameters: { max_new_tokens: 16, do_sample: false } })).text();
    const events = raw.split("\n").filter((l) => l.startsWith("data:")).map((l) => JSON.parse(l.slice(5)));
    expect(events.map((e) => e.token.id)).toEqual(tgi.ids);
    expect(events.at(-1).generated_text).toBe(tgi.text);
  });

  it("serves concurrent requests (queued), each the tokens it gets alone; every shard within budget afterwards", async () => {
    const alone = [];
    for (const p of PROMPTS) alone.push(await localGreedy(p, 12)); // one sequence at a time on the local model
    const together = await Promise.all([...PROMPTS, ...PROMPTS].map((p) => tgiGreedy(p, 12)));
    expect(together.map((t) => t.ids)).toEqual([...alone, ...alone].map((a) => a.ids));
    for (const s of (await get("/health")).shards) expect(s.wasm_memory_bytes).toBeLessThanOrEqual(s.budget_bytes);
  });

  it("a client that disconnects mid-stream frees every shard's sequence slot", async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/v1/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: ac.signal,
      body: JSON.stringify({ model: MODEL_ID, prompt: "Hello", max_tokens: 400, temperature: 0, stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    const during = await get("/health");
    expect(during.shards.filter((s: any) => s.layers).map((s: any) => s.sequences_in_use)).toEqual([1, 1, 1]);
    ac.abort();
    await reader.cancel().catch(() => {});
    let h: any;
    for (let i = 0; i < 40; i++) {
      h = await get("/health");
      if (h.queue_length === 0 && h.shards.every((s: any) => s.sequences_in_use === 0)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(h.queue_length).toBe(0);
    expect(h.shards.map((s: any) => s.sequences_in_use)).toEqual([0, 0, 0, 0, 0]);
  });

  it("a shard reset mid-stream ends the stream with an error event naming it; the next request reloads it and succeeds", async () => {
    const expected = await tgiGreedy("The quick brown fox", 16);
    const res = await post("/v1/completions", { model: MODEL_ID, prompt: "Hello", max_tokens: 450, temperature: 0, stream: true });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let raw = (await reader.read()).value ?? "";
    raw += (await reader.read()).value ?? "";
    expect((await fetch(`${base}/__test/reset-shard/1`, { method: "POST" })).status).toBe(200);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      raw += value;
    }
    const last = JSON.parse(raw.trim().split("\n\n").at(-1)!.slice("data: ".length));
    expect(last.error.message).toMatch(/shard 1 \(layers \[1, 2\)\)/);
    expect(raw).not.toContain("[DONE]");
    expect(await tgiGreedy("The quick brown fox", 16)).toEqual(expected);
    expect((await get("/health")).shards[1].status).toBe("ready");
  });
});

describe("a shard that cannot load its part", () => {
  let dev: DevServer;
  let persist: string;
  afterAll(() => dev?.stop());

  it("makes /health and requests answer 503 naming the shard and the reason; the others keep their weights; a later request retries", async () => {
    const m = await testModel(SHAPE, "q4_0", 8);
    const dir = mkdtempSync(join(tmpdir(), "gemma-edge-shard-fault-"));
    persist = join(dir, "state");
    const src = new MemoryByteSource(m.bytes);
    const header = await (await import("../../src/engine/model/load.ts")).readModelHeader(src);
    const plan = planShards(header.cfg, (n) => header.gguf.tensors.get(n), { budgetBytes: BUDGET_MB * MB, contextSize: 512 });
    // shard 2 reads another bucket, which lacks the object (a misconfigured deployment)
    const configs = shardedConfigs({ plan, modelId: "fault", modelKey: "fault.gguf", budgetMb: BUDGET_MB }, dir).map((c) =>
      c.name === "gemma-edge-shard-2" ? { ...c, toml: c.toml.replace('bucket_name = "gemma-edge-models"', 'bucket_name = "gemma-edge-other"') } : c);
    for (const c of configs) writeFileSync(join(dir, `${c.name}.toml`), c.toml);
    await putLocal({ file: m.path, key: "fault.gguf", persistTo: persist });
    dev = await startWranglerDev([...configs.flatMap((c) => ["-c", join(dir, `${c.name}.toml`)]), "--persist-to", persist]);
    let h: any;
    for (let i = 0; i < 200; i++) {
      const r = await fetch(`${dev.base}/health`);
      h = await r.json();
      if (h.status === "error") {
        expect(r.status).toBe(503);
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(h.error).toMatch(/shard 2 \(layers \[2, 3\)\) failed to load: R2 object "fault\.gguf" was not found/);
    const r = await fetch(`${dev.base}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "fault", prompt: "Hi", max_tokens: 4 }) });
    expect(r.status).toBe(503);
    expect(((await r.json()) as any).error.message).toMatch(/shard 2 \(layers \[2, 3\)\) failed to load/);
    const states = h.shards.map((s: any) => s.status);
    expect(states[2]).toBe("error");
    expect(states.filter((s: string) => s === "ready")).toHaveLength(4);
    // the object appears where shard 2 looks: the next attempt loads it, the others answer at once
    await putLocal({ file: m.path, key: "fault.gguf", bucket: "gemma-edge-other", persistTo: persist });
    await new Promise((r) => setTimeout(r, 5200)); // a failed load is retried after 5 s
    const ok = await fetch(`${dev.base}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "fault", prompt: "Hi", max_tokens: 4, temperature: 0 }) });
    expect(ok.status).toBe(200);
    expect(((await (await fetch(`${dev.base}/health`)).json()) as any).shards.map((s: any) => s.status)).toEqual(Array(5).fill("ready"));
  });
});
