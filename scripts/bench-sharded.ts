// `npm run bench:sharded`: the Gemma-2B-shape Q4_0 file served two ways under wrangler dev, measured alternately
// over HTTP (TGI /generate_stream, greedy): by one Durable Object (`npm start`, no budget) and split by the plan
// for a budget of SHARD_BUDGET_MB (default 100) per isolate (`SHARD_BUDGET_MB=100 npm start`). Prints, and writes
// between the <!-- bench-sharded:start/end --> markers of docs/sharding.md and of docs/performance.md:
// load time, each shard's WebAssembly memory, decode and prefill tok/s (medians, min–max, ratios), the cost per
// hop between Durable Objects. BENCH_JSON=docs/bench-sharded.json redraws the tables from a saved run.
// Locally every Durable Object runs in one workerd process on this machine's cores: the sharded figures pay
// for the hops but gain nothing from isolates running side by side, as they would in production.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readModelHeader } from "../src/engine/model/load.ts";
import { FileByteSource } from "../src/hosts/node-file-source.ts";
import { freePort } from "../test/helpers/wrangler-dev.ts";

const root = resolve(import.meta.dirname, "..");
const PROMPT_TOKENS = 128, GEN_TOKENS = 64;

interface Figures { prefill: number; decode: number }
interface Shard { index: number; layers?: number[]; vocab?: number[]; wasm_memory_bytes: number; budget_bytes: number }
interface Result {
  date: string; cpu: string; budgetMb: number; promptTokens: number; genTokens: number; repeats: number;
  load_s: { single: number; sharded: number }; shards: Shard[]; figures: { single: Figures[]; sharded: Figures[] };
}
interface Server { name: string; base: string; child: ChildProcess; log: string; loadS: number }

async function start(name: string, model: string, env: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const state = join(mkdtempSync(join(tmpdir(), `gemma-edge-bench-${name}-`)), "state");
  const child = spawn("npm", ["start"], {
    cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env, PORT: String(port), MODEL: model, GEMMA_EDGE_STATE_DIR: state, CLOUDFLARE_CF_FETCH_ENABLED: "false" },
  });
  const s: Server = { name, base: `http://127.0.0.1:${port}`, child, log: "", loadS: 0 };
  let ready = 0;
  const onData = (d: Buffer) => {
    s.log += d;
    if (!ready && /Ready on http/.test(s.log)) ready = performance.now();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  process.stderr.write(`starting ${name} (copies the file into its own local R2 first) ...\n`);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name}: npm start exited:\n${s.log}`);
    if (/gemma-edge is serving/.test(s.log)) break;
    if (/failed to load/.test(s.log)) throw new Error(`${name}: ${s.log.split("\n").slice(-5).join("\n")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  s.loadS = (performance.now() - ready) / 1000; // wrangler ready -> the model answers /health (start.ts polls every 0.5 s)
  process.stderr.write(`${name}: loaded in ${s.loadS.toFixed(1)} s\n`);
  return s;
}

/** One greedy stream: prompt tokens over the time to the first token, and decode tok/s over the rest. */
async function run(s: Server, prompt: string, promptTokens: number): Promise<Figures> {
  // the model may have been evicted while the other server ran: load it again first, unmeasured
  while ((await fetch(`${s.base}/health`)).status !== 200) await new Promise((res) => setTimeout(res, 500));
  const t0 = performance.now();
  const res = await fetch(`${s.base}/generate_stream`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ inputs: prompt, parameters: { max_new_tokens: GEN_TOKENS, do_sample: false } }),
  });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const times: number[] = [];
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += value;
    for (let at = buf.indexOf("\n\n"); at >= 0; at = buf.indexOf("\n\n")) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      if (!ev.startsWith("data:")) continue;
      const j = JSON.parse(ev.slice(5));
      if (j.error) throw new Error(`${s.name}: ${j.error}`);
      times.push(performance.now());
    }
  }
  if (times.length !== GEN_TOKENS) throw new Error(`${s.name}: ${times.length} tokens instead of ${GEN_TOKENS}`);
  return { prefill: promptTokens / ((times[0]! - t0) / 1000), decode: (GEN_TOKENS - 1) / ((times.at(-1)! - times[0]!) / 1000) };
}

async function measure(): Promise<Result> {
  const model = resolve(root, process.env.MODEL ?? "models/gemma-2b-shape-q4_0.gguf");
  const budgetMb = Number(process.env.SHARD_BUDGET_MB ?? 100);
  const repeats = Number(process.env.REPEATS ?? 3);
  if (!existsSync(model)) {
    mkdirSync(resolve(root, "models"), { recursive: true });
    await new Promise<void>((ok, fail) =>
      spawn(process.execPath, [resolve(root, "bin/gemma-edge.js"), "make-test-model", "--out", model, "--shape", "gemma-2b", "--type", "q4_0"], { stdio: "inherit" })
        .on("exit", (c) => (c === 0 ? ok() : fail(new Error(`make-test-model exited with ${c}`)))));
  }
  // a prompt of at most PROMPT_TOKENS tokens with its BOS: as many whole words of a text as fit
  const src = await FileByteSource.open(model);
  const { tokenizer } = await readModelHeader(src).finally(() => src.close());
  const words = "The quick brown fox jumps over the lazy dog. Once upon a time there was a little model that wanted to answer every question on the edge of the network. ".repeat(40).split(" ");
  let prompt = "";
  for (let n = 1; n <= words.length && tokenizer.encode(words.slice(0, n).join(" "), { addBos: true }).length <= PROMPT_TOKENS; n++) prompt = words.slice(0, n).join(" ");
  const promptTokens = tokenizer.encode(prompt, { addBos: true }).length;

  const servers: Server[] = [];
  const stopAll = () => servers.forEach((s) => { try { process.kill(-s.child.pid!, "SIGKILL"); } catch { /* gone */ } });
  process.on("exit", stopAll);
  try {
    const single = await start("single", model, {});
    servers.push(single);
    const sharded = await start("sharded", model, { SHARD_BUDGET_MB: String(budgetMb) });
    servers.push(sharded);
    const { shards } = (await (await fetch(`${sharded.base}/health`)).json()) as { shards: Shard[] };
    // keep both Durable Objects (and the shards behind one) from being evicted while the other is measured
    const keep = setInterval(() => servers.forEach((s) => void fetch(`${s.base}/health`).catch(() => {})), 10_000);
    const figures: Result["figures"] = { single: [], sharded: [] };
    for (const s of servers) await run(s, prompt, promptTokens); // warm-up, unmeasured
    for (let i = 0; i < repeats; i++) {
      for (const s of [single, sharded]) {
        const f = await run(s, prompt, promptTokens);
        figures[s.name as "single" | "sharded"].push(f);
        process.stderr.write(`${s.name} run ${i + 1}: prefill ${f.prefill.toFixed(2)} tok/s, decode ${f.decode.toFixed(2)} tok/s\n`);
      }
    }
    clearInterval(keep);
    return {
      date: new Date().toISOString().slice(0, 10), cpu: cpus()[0]?.model ?? "unknown CPU", budgetMb, promptTokens, genTokens: GEN_TOKENS, repeats,
      load_s: { single: single.loadS, sharded: sharded.loadS }, shards, figures,
    };
  } catch (e) {
    for (const s of servers) process.stderr.write(`\n--- ${s.name} server, last lines ---\n${s.log.split("\n").slice(-15).join("\n")}\n`);
    throw e;
  } finally {
    stopAll();
  }
}

function render(r: Result): string {
  const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const col = (k: keyof Figures, w: "single" | "sharded") => r.figures[w].map((f) => f[k]);
  const cell = (v: number[]) => `${med(v).toFixed(2)} (${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)})`;
  const ratio = (k: keyof Figures) => (med(col(k, "sharded")) / med(col(k, "single"))).toFixed(2);
  const layerParts = r.shards.filter((s) => s.layers).length, vocabParts = r.shards.filter((s) => s.vocab).length;
  const hops = 1 + layerParts + vocabParts; // per decoded token: one embedding row, each layer shard, each LM-head slice
  const perTokenMs = 1000 / med(col("decode", "sharded")) - 1000 / med(col("decode", "single"));
  const mems = r.shards.map((s) => s.wasm_memory_bytes);
  const within = r.shards.every((s) => s.wasm_memory_bytes <= s.budget_bytes);
  return `<!-- bench-sharded:start -->
Gemma-2B-shape GGUF (generated, Q4_0, 1416.3 MB) under \`wrangler dev\`, greedy over HTTP (TGI \`/generate_stream\`),
prompt ${r.promptTokens} tokens, ${r.genTokens} generated, ${r.cpu}, ${r.date}, ${r.repeats} alternating runs each: one Durable Object
holding the whole model against \`SHARD_BUDGET_MB=${r.budgetMb}\`, ${r.shards.length} shards (${layerParts} layer shards, ${vocabParts} vocabulary slices)
whose WebAssembly memory was ${(Math.min(...mems) / 1e6).toFixed(1)}–${(Math.max(...mems) / 1e6).toFixed(1)} MB each (${within ? "every one at or under" : "NOT all within"} its budget of ${r.budgetMb} MB, as /health reports it).

| | one Durable Object (median, min–max) | ${r.shards.length} shards (median, min–max) | sharded / one |
|---|---|---|---|
| decode, tok/s | ${cell(col("decode", "single"))} | ${cell(col("decode", "sharded"))} | ${ratio("decode")} |
| prefill of ${r.promptTokens} tokens, tok/s | ${cell(col("prefill", "single"))} | ${cell(col("prefill", "sharded"))} | ${ratio("prefill")} |
| load (wrangler ready to /health 200), s | ${r.load_s.single.toFixed(1)} | ${r.load_s.sharded.toFixed(1)} (4 shards at a time) | |

A decoded token crosses ${hops} hops (one embedding row, ${layerParts} layer shards, ${vocabParts} LM-head slices in parallel); the sharded
token took ${perTokenMs.toFixed(1)} ms longer than one Durable Object's, ${(perTokenMs / hops).toFixed(2)} ms per hop (medians; the machine is shared and noisy).
Reproduce: \`npm run bench:sharded\` (\`SHARD_BUDGET_MB=N\`, \`REPEATS=N\`).
<!-- bench-sharded:end -->`;
}

const result: Result = process.env.BENCH_JSON ? JSON.parse(readFileSync(resolve(root, process.env.BENCH_JSON), "utf8")) : await measure();
if (!process.env.BENCH_JSON) {
  mkdirSync(resolve(root, "docs"), { recursive: true });
  writeFileSync(resolve(root, "docs/bench-sharded.json"), JSON.stringify(result) + "\n");
}
const section = render(result);
process.stdout.write(`\n${section}\n`);
const re = /<!-- bench-sharded:start -->[\s\S]*<!-- bench-sharded:end -->/;
for (const file of ["docs/sharding.md", "docs/performance.md"]) {
  const path = resolve(root, file);
  const text = readFileSync(path, "utf8");
  if (!re.test(text)) throw new Error(`${file} has no <!-- bench-sharded:start/end --> markers`);
  writeFileSync(path, text.replace(re, section));
}
process.stdout.write("\nwrote the measured sections of docs/sharding.md and docs/performance.md, and docs/bench-sharded.json\n");
