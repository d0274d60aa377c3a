// `npm run bench:serve`: many users at once, as they see it. `gemma-edge serve` on the Gemma-2B-shape Q4_0 file
// (1 thread) over HTTP with the official `openai` client:
//  1. N concurrent streaming clients (CLIENTS, default 1,4,8), each with its own PROMPT-token prompt (default 128)
//     and GEN tokens (default 64), greedy and at temperature 1: aggregate generated tok/s, p50/p95 time to first
//     token, p50 inter-token latency; and llama.cpp (node-llama-cpp, one context with N sequences, 1 thread) on
//     the same file and prompts;
//  2. a TURNS-turn chat (default 6) whose history grows to ~1,000 tokens: time to first token per turn with the
//     prompt cache and without it (cache_prompt: false), and a fresh prompt of each turn's new length, alternating;
// SECTIONS=clients,chat,path,llama picks what runs (default all).
//  3. the serving path's cost: one client's decode rate at temperature 1 against the engine's raw decode, alternating.
// Prints markdown tables (docs/batching.md shows one run).
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import OpenAI from "openai";
import { startServe } from "./bench-server.ts";

const root = resolve(import.meta.dirname, "..");
const model = resolve(root, process.env.MODEL ?? "models/gemma-2b-shape-q4_0.gguf");
const clientsList = (process.env.CLIENTS ?? "1,4,8").split(",").map(Number);
const gen = Number(process.env.GEN ?? 64);
const promptLen = Number(process.env.PROMPT ?? 128);
const turns = Number(process.env.TURNS ?? 6);
const context = Number(process.env.CONTEXT ?? 2048);
const batch = Number(process.env.MAX_BATCH_SIZE ?? Math.max(...clientsList));
/** SECTIONS: which parts run (default all): clients, chat, path, llama. */
const sections = new Set((process.env.SECTIONS ?? "clients,chat,path,llama").split(","));
const skipLlama = !sections.has("llama");
if (!existsSync(model)) throw new Error(`${model} is missing: npm run bench makes it`);

const { base, stop } = await startServe(model, ["--context", String(context), "--max-batch-size", String(batch), "--prompt-cache", "2", "--max-queue", "64"]);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "none", maxRetries: 0, timeout: 3_600_000 });
const modelId = (await client.models.list()).data[0]!.id;
const say = (s: string) => process.stderr.write(s + "\n");

const quantile = (v: number[], q: number) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))]!;
};

interface Stream {
  ttft: number;
  times: number[];
  tokens: number;
}

/** `n` words of plain text, distinct per seed (about a token each in the synthetic vocabulary). */
const words = (n: number, seed: number) => Array.from({ length: n }, (_, j) => `w${(seed * 1009 + j * 31) % 997}`).join(" ");

/** One streaming completion; times of its chunks in ms from `t0`. */
async function streamText(prompt: string, sampling: Record<string, unknown>, t0: number): Promise<Stream> {
  const s = (await client.completions.create({
    model: modelId, prompt, max_tokens: gen, stream: true, stream_options: { include_usage: true }, cache_prompt: false, ...sampling,
  } as never)) as unknown as AsyncIterable<{ choices: { text: string }[]; usage?: { completion_tokens: number; prompt_tokens: number } }>;
  const times: number[] = [];
  let tokens = 0;
  for await (const c of s) {
    if (c.choices[0]) times.push(performance.now() - t0);
    if (c.usage) tokens = c.usage.completion_tokens;
  }
  return { ttft: times[0]!, times, tokens };
}

/** A prompt of `n` tokens (BOS included) of plain text, distinct per seed, measured with TGI's /tokenize. */
async function textPrompt(n: number, seed: number): Promise<string> {
  const count = async (text: string) =>
    ((await (await fetch(`${base}/tokenize`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ inputs: text }) })).json()) as unknown[]).length + 1;
  let lo = 1, hi = n;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((await count(words(mid, seed))) <= n) lo = mid;
    else hi = mid - 1;
  }
  return words(lo, seed);
}

// ---- 1. concurrent clients ----
const settings: [string, Record<string, unknown>][] = [["greedy", { temperature: 0 }], ["temperature 1", { temperature: 1, seed: 7 }]];
const prompts: string[] = [];
for (let i = 0; i < Math.max(...clientsList); i++) prompts.push(await textPrompt(promptLen, i + 1));
await streamText(prompts[0]!, { temperature: 0, max_tokens: 4 }, performance.now()); // warm-up
const rows: string[] = [];
const oursAgg = new Map<string, number>();
for (const n of sections.has("clients") ? clientsList : []) {
  for (const [name, sampling] of settings) {
    const t0 = performance.now();
    const streams = await Promise.all(prompts.slice(0, n).map((p) => streamText(p, sampling, t0)));
    const end = Math.max(...streams.map((s) => s.times.at(-1)!));
    const total = streams.reduce((a, s) => a + s.tokens, 0);
    const itl = streams.flatMap((s) => s.times.slice(1).map((t, i) => t - s.times[i]!));
    const agg = total / (end / 1000);
    oursAgg.set(`${n} ${name}`, agg);
    rows.push(`| ${n} | ${name} | ${agg.toFixed(2)} | ${(quantile(streams.map((s) => s.ttft), 0.5) / 1000).toFixed(2)} / ${(quantile(streams.map((s) => s.ttft), 0.95) / 1000).toFixed(2)} | ${quantile(itl, 0.5).toFixed(0)} |`);
    say(rows.at(-1)!);
  }
}

// ---- 2. a growing chat: each turn with the prompt cache, then the same messages without it, then a fresh prompt
// of the turn's new length, one after another (the machine's speed drifts: alternate, never phase by phase) ----
const chatRows: string[] = [];
const perTurn = Math.round(1000 / turns) - 20;
const messages: { role: "user" | "assistant"; content: string }[] = [];
async function chatTurn(cache: boolean): Promise<{ ttft: number; prompt: number; cached: number; reply: string }> {
  const t0 = performance.now();
  const s = (await client.chat.completions.create({
    model: modelId, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true }, cache_prompt: cache,
  } as never)) as unknown as AsyncIterable<{ choices: { delta: { content?: string } }[]; usage?: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens: number } } }>;
  let ttft = 0, reply = "", prompt = 0, cached = 0;
  for await (const c of s) {
    if (c.choices[0] && !ttft) ttft = performance.now() - t0; // the first chunk: the role, sent with the first token
    reply += c.choices[0]?.delta.content ?? "";
    if (c.usage) (prompt = c.usage.prompt_tokens), (cached = c.usage.prompt_tokens_details?.cached_tokens ?? 0);
  }
  return { ttft, prompt, cached, reply };
}
if (sections.has("chat")) {
  for (let t = 0; t < turns; t++) {
    messages.push({ role: "user", content: await textPrompt(perTurn, 100 + t) });
    const withCache = await chatTurn(true);
    const without = await chatTurn(false);
    const fresh = withCache.prompt - withCache.cached;
    const f = await streamText(await textPrompt(fresh, 500 + t), { temperature: 0, max_tokens: 1 }, performance.now());
    messages.push({ role: "assistant", content: withCache.reply });
    chatRows.push(`| ${t + 1} | ${withCache.prompt} | ${withCache.cached} | ${(withCache.ttft / 1000).toFixed(2)} | ${(without.ttft / 1000).toFixed(2)} | ${fresh} | ${(f.ttft / 1000).toFixed(2)} | ${(withCache.ttft / f.ttft).toFixed(2)} |`);
    say(chatRows.at(-1)!);
  }
}

// ---- 3. the serving path against raw decode: one HTTP stream at temperature 1, then the engine in this process
// (greedy argmax over forward(), no HTTP, no sampler), alternating ----
const http: number[] = [], raw: number[] = [];
if (sections.has("path")) {
  const { FileByteSource } = await import("../src/hosts/node-file-source.ts");
  const { loadNodeModel } = await import("../src/hosts/node-backend.ts");
  const src = await FileByteSource.open(model);
  const m = await loadNodeModel(src, "wasm", { contextSize: context });
  await src.close();
  const ids = m.tokenizer.encode(prompts[0]!, { addBos: true });
  const argmax = (l: Float32Array) => {
    let b = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[b]!) b = i;
    return b;
  };
  for (let r = 0; r < 3; r++) {
    const s = await streamText(prompts[0]!, { temperature: 1, seed: r }, performance.now());
    http.push((s.times.length - 1) / ((s.times.at(-1)! - s.times[0]!) / 1000));
    let next = argmax(await m.forward(ids, 0));
    const t = performance.now();
    for (let i = 0; i < gen - 1; i++) next = argmax(await m.forward([next], ids.length + i));
    raw.push((gen - 1) / ((performance.now() - t) / 1000));
    await m.release?.();
    say(`serving path: HTTP ${http.at(-1)!.toFixed(2)} tok/s, raw ${raw.at(-1)!.toFixed(2)} tok/s`);
  }
}
const metrics = await (await fetch(`${base}/metrics`)).text();
stop();

// ---- llama.cpp: one context with N sequences, each its prompt then GEN tokens, all at once ----
const llamaRows: string[] = [];
if (!skipLlama) {
  const { getLlama } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" as never, progressLogs: false } as never);
  const lm = await llama.loadModel({ modelPath: model, gpuLayers: 0, useMmap: false }); // as src/tools/bench.ts: weights in the process's memory
  for (const n of clientsList) {
    const ctx = await lm.createContext({ contextSize: n * (promptLen + gen + 32), sequences: n, threads: 1 });
    const ids = await Promise.all(prompts.slice(0, n).map((p) => lm.tokenize(p, false)));
    const t0 = performance.now();
    const streams = await Promise.all(ids.map(async (p) => {
      const seq = ctx.getSequence();
      const times: number[] = [];
      for await (const t of seq.evaluate([lm.tokens.bos!, ...p] as never, { temperature: 0 } as never)) {
        void t;
        times.push(performance.now() - t0);
        if (times.length >= gen) break;
      }
      return times;
    }));
    const end = Math.max(...streams.map((s) => s.at(-1)!));
    const agg = (n * gen) / (end / 1000);
    const itl = streams.flatMap((s) => s.slice(1).map((t, i) => t - s[i]!));
    llamaRows.push(`| ${n} | greedy | ${agg.toFixed(2)} | ${(quantile(streams.map((s) => s[0]!), 0.5) / 1000).toFixed(2)} / ${(quantile(streams.map((s) => s[0]!), 0.95) / 1000).toFixed(2)} | ${quantile(itl, 0.5).toFixed(0)} | ${(oursAgg.get(`${n} greedy`)! / agg).toFixed(2)} |`);
    say(llamaRows.at(-1)!);
    await ctx.dispose();
  }
}

const one1 = oursAgg.get(`1 greedy`);
const eight = oursAgg.get(`${Math.max(...clientsList)} greedy`);
process.stdout.write(`
### Concurrent streaming clients (gemma-edge serve, ${promptLen}-token prompts, ${gen} tokens each, 1 thread, max batch ${batch})

| clients | sampling | aggregate tok/s | time to first token p50 / p95 (s) | inter-token p50 (ms) |
|---|---|---|---|---|
${rows.join("\n")}
${one1 && eight ? `\n${Math.max(...clientsList)} clients give ${(eight / one1).toFixed(2)}x the aggregate tok/s of 1 (greedy).\n` : ""}
${skipLlama ? "" : `### llama.cpp (node-llama-cpp ${"3.21.1"}, one context with N sequences, 1 thread, its best CPU kernels)

| sequences | sampling | aggregate tok/s | time to first token p50 / p95 (s) | inter-token p50 (ms) | ours / llama.cpp |
|---|---|---|---|---|---|
${llamaRows.join("\n")}
`}
### A ${turns}-turn chat (greedy, 16-token replies): time to first token

| turn | prompt tokens | cached | with cache (s) | without (s) | new tokens | fresh prompt of that length (s) | with cache / fresh |
|---|---|---|---|---|---|---|---|
${chatRows.join("\n")}

### The serving path
${http.length ? `One client at temperature 1 over HTTP against the engine's raw greedy decode in the bench's own process (3 alternating rounds): ${http.map((h, i) => `${h.toFixed(2)} / ${raw[i]!.toFixed(2)}`).join(", ")} tok/s; median ratio ${quantile(http.map((h, i) => h / raw[i]!), 0.5).toFixed(3)}, so the serving path costs ${((1 - quantile(http.map((h, i) => h / raw[i]!), 0.5)) * 100).toFixed(1)}%.` : ""}

<details><summary>/metrics after the run</summary>

\`\`\`
${metrics.split("\n").filter((l) => l && !l.startsWith("#") && !l.includes("_bucket")).join("\n")}
\`\`\`
</details>
`);
process.exit(0);
