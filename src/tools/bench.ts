// `gemma-edge bench`: load time, prefill and decode throughput, time to first token and peak memory of our engine,
// and (with --vs-llama-cpp) of llama.cpp on the same file with the same thread count. Each measurement runs in its
// own process (so that memory and load time are its own), ours and llama.cpp's alternately.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { RunnableModel } from "../engine/model/load.ts";

export interface BenchOptions {
  model: string;
  promptTokens: number;
  genTokens: number;
  threads: number;
  backend: string;
  repeats: number;
}

export interface RunFigures {
  load_s: number;
  prefill_tok_s: number;
  decode_tok_s: number;
  ttft_s: number;
  peak_rss_mb: number;
}

/** Deterministic prompt token ids (ordinary vocabulary tokens, after BOS). */
export function benchPrompt(n: number, vocabSize: number, bos: number): number[] {
  const ids = [bos];
  let s = 12345;
  while (ids.length < n) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    ids.push(1000 + (s % Math.max(1, vocabSize - 2000)));
  }
  return ids;
}

/** The benchmark prompt for a model file: read from its GGUF header, the same for both engines. */
async function promptFor(o: BenchOptions): Promise<number[]> {
  const { FileByteSource } = await import("../hosts/node-file-source.ts");
  const { readGguf } = await import("../engine/gguf.ts");
  const { Tokenizer } = await import("../engine/tokenizer.ts");
  const src = await FileByteSource.open(o.model);
  try {
    const tok = new Tokenizer(await readGguf(src));
    return benchPrompt(o.promptTokens, tok.vocabSize, tok.bosId);
  } finally {
    await src.close();
  }
}

/** The context both engines are given: the prompt, the generation and a little room. */
const benchContext = (o: BenchOptions) => Math.max(o.promptTokens + o.genTokens + 16, 64);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Our engine on the bench's file, backend and threads. */
async function loadOurs(o: BenchOptions): Promise<RunnableModel> {
  const { FileByteSource } = await import("../hosts/node-file-source.ts");
  const { loadNodeModel } = await import("../hosts/node-backend.ts");
  const src = await FileByteSource.open(o.model);
  try {
    return await loadNodeModel(src, o.backend, { threads: o.backend === "wasm" ? o.threads : 1, contextSize: benchContext(o) });
  } finally {
    await src.close();
  }
}

/** One measurement of our engine (runs in the calling process). */
export async function measureOurs(o: BenchOptions): Promise<RunFigures> {
  const t0 = performance.now();
  const m = await loadOurs(o);
  const load = (performance.now() - t0) / 1000;
  const prompt = await promptFor(o);
  // time to first token of a 16-token prompt
  const t = performance.now();
  argmax(await m.forward(prompt.slice(0, 16), 0));
  const ttft = (performance.now() - t) / 1000;
  return { load_s: load, ...(await oursRound(m, prompt, o.genTokens)), ttft_s: ttft, peak_rss_mb: process.resourceUsage().maxRSS / 1024 };
}

const argmax = (l: Float32Array) => {
  let b = 0;
  for (let i = 1; i < l.length; i++) if (l[i]! > l[b]!) b = i;
  return b;
};

/** Our engine: a prefill of the prompt from position 0, then `gen` greedy decode steps. */
async function oursRound(m: RunnableModel, prompt: number[], gen: number): Promise<RoundFigures> {
  let t = performance.now();
  let next = argmax(await m.forward(prompt, 0));
  const prefill = (performance.now() - t) / 1000;
  t = performance.now();
  for (let i = 0; i < gen; i++) next = argmax(await m.forward([next], prompt.length + i));
  return { prefill_tok_s: prompt.length / prefill, decode_tok_s: gen / ((performance.now() - t) / 1000) };
}

/** llama.cpp: a prefill of the prompt in an empty sequence (until its first generated token), then `gen` greedy tokens. */
async function llamaRound(seq: import("node-llama-cpp").LlamaContextSequence, prompt: number[], gen: number): Promise<RoundFigures> {
  const t = performance.now();
  let prefill = 0;
  let n = 0;
  let tDecode = 0;
  for await (const tok of seq.evaluate(prompt as never, { temperature: 0 } as never)) {
    void tok;
    if (n === 0) {
      prefill = (performance.now() - t) / 1000;
      tDecode = performance.now();
    }
    if (++n > gen) break;
  }
  return { prefill_tok_s: prompt.length / prefill, decode_tok_s: (n - 1) / ((performance.now() - tDecode) / 1000) };
}

/** node-llama-cpp's CPU runtime (its prebuilt binaries; never a build). */
async function llamaRuntime(): Promise<import("node-llama-cpp").Llama> {
  let mod: typeof import("node-llama-cpp");
  try {
    mod = await import("node-llama-cpp");
  } catch {
    throw new Error("--vs-llama-cpp needs the node-llama-cpp package (a devDependency: run npm install in the project)");
  }
  return mod.getLlama({ gpu: false, build: "never", logLevel: "error" as never, progressLogs: false } as never);
}

/** llama.cpp on the bench's file: the model and a context of `sequences` sequences with the bench's threads. */
async function loadLlamaCpp(llama: import("node-llama-cpp").Llama, o: BenchOptions, sequences: number) {
  // useMmap false (llama.cpp's --no-mmap): the weights in the process's own memory, as ours are. Mapped, the
  // tensors llama.cpp does not repack (Q8_0, Q6_K) stay page cache, which memory-reclaiming VMs page out between
  // tokens: on this project's machines (a DAMON "pageout" scheme) its Q4_K_M and Q8_0 decode fell to 1.5-3 tok/s in
  // some runs of three, from 8-12 in the others.
  const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0, useMmap: false });
  // flash attention on, as llama.cpp's own default (node-llama-cpp would turn it off for Gemma 2 files by itself)
  const context = await model.createContext({ contextSize: benchContext(o), threads: o.threads, sequences, flashAttention: true });
  return { model, context };
}

/** One measurement of llama.cpp (node-llama-cpp, CPU), in the calling process. */
export async function measureLlamaCpp(o: BenchOptions): Promise<RunFigures> {
  const llama = await llamaRuntime();
  const t0 = performance.now();
  const { model, context } = await loadLlamaCpp(llama, o, 2);
  const load = (performance.now() - t0) / 1000;
  const prompt = await promptFor(o);
  const ttftSeq = context.getSequence();
  let t = performance.now();
  await ttftSeq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 16) as never);
  const ttft = (performance.now() - t) / 1000;
  ttftSeq.dispose();
  const round = await llamaRound(context.getSequence(), prompt, o.genTokens);
  const figures = { load_s: load, ...round, ttft_s: ttft, peak_rss_mb: process.resourceUsage().maxRSS / 1024 };
  await context.dispose();
  await model.dispose();
  return figures;
}

/** Run one measurement in a child process: `gemma-edge bench --internal ours|llama-cpp ...`. */
async function measureInChild(engine: "ours" | "llama-cpp", o: BenchOptions): Promise<RunFigures> {
  const bin = new URL("../../bin/gemma-edge.js", import.meta.url).pathname;
  const args = [bin, "bench", "--internal", engine, "--model", o.model, "--prompt-tokens", String(o.promptTokens), "--gen-tokens", String(o.genTokens), "--threads", String(o.threads), "--backend", o.backend];
  const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as RunFigures;
}

/** The file's architecture and what one sequence's KV cache takes (sliding-window layers: rings). */
export interface KvFigures {
  architecture: string;
  kv_mb_bench_context: number;
  /** At the model's own context length, with the rings, and as it would be with a cell per position everywhere. */
  model_context: number;
  kv_mb_model_context: number;
  kv_mb_model_context_without_rings: number;
}

async function kvFigures(o: BenchOptions): Promise<KvFigures> {
  const { FileByteSource } = await import("../hosts/node-file-source.ts");
  const { readGguf } = await import("../engine/gguf.ts");
  const { configFromGguf } = await import("../engine/config.ts");
  const { KvCache } = await import("../engine/model/kv-cache.ts");
  const src = await FileByteSource.open(o.model);
  try {
    const cfg = configFromGguf(await readGguf(src));
    const MB = 1 << 20;
    return {
      architecture: cfg.arch,
      kv_mb_bench_context: KvCache.bytes(cfg, benchContext(o)) / MB,
      model_context: cfg.seqLen,
      kv_mb_model_context: KvCache.bytes(cfg, cfg.seqLen) / MB,
      kv_mb_model_context_without_rings: KvCache.bytes({ ...cfg, local: cfg.local.map(() => false) }, cfg.seqLen) / MB,
    };
  } finally {
    await src.close();
  }
}

export interface BenchResult extends RunFigures {
  runs: RunFigures[];
  kv: KvFigures;
  llama_cpp?: RunFigures & { runs: RunFigures[] };
  ratio_decode?: number;
  ratio_prefill?: number;
  options: BenchOptions;
}

const KEYS: (keyof RunFigures)[] = ["load_s", "prefill_tok_s", "decode_tok_s", "ttft_s", "peak_rss_mb"];
const medians = (runs: RunFigures[]) => Object.fromEntries(KEYS.map((k) => [k, median(runs.map((r) => r[k]))])) as unknown as RunFigures;

export async function bench(o: BenchOptions, vsLlamaCpp: boolean, log: (line: string) => void): Promise<BenchResult> {
  const ours: RunFigures[] = [];
  const theirs: RunFigures[] = [];
  for (let i = 0; i < o.repeats; i++) {
    const a = await measureInChild("ours", o);
    ours.push(a);
    log(`run ${i + 1}/${o.repeats} ours:      ${fmt(a)}`);
    if (vsLlamaCpp) {
      const b = await measureInChild("llama-cpp", o);
      theirs.push(b);
      log(`run ${i + 1}/${o.repeats} llama.cpp: ${fmt(b)}`);
    }
  }
  const kv = await kvFigures(o);
  log(
    `${kv.architecture}: KV cache ${kv.kv_mb_bench_context.toFixed(1)} MB per sequence here; at the model's context of ${kv.model_context} ` +
      `${kv.kv_mb_model_context.toFixed(0)} MB (${kv.kv_mb_model_context_without_rings.toFixed(0)} MB without sliding-window rings)`,
  );
  const result: BenchResult = { ...medians(ours), runs: ours, kv, options: o };
  if (vsLlamaCpp) {
    result.llama_cpp = { ...medians(theirs), runs: theirs };
    result.ratio_decode = result.decode_tok_s / result.llama_cpp.decode_tok_s;
    result.ratio_prefill = result.prefill_tok_s / result.llama_cpp.prefill_tok_s;
  }
  return result;
}

/** Prefill and decode speed of one round (interleaved mode). */
export interface RoundFigures {
  prefill_tok_s: number;
  decode_tok_s: number;
}

/** A per-round ratio, ours / llama.cpp's: median, min and max over the rounds. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface InterleavedResult {
  rounds: { ours: RoundFigures; llama_cpp: RoundFigures }[];
  /** Medians over the rounds. */
  ours: RoundFigures;
  llama_cpp: RoundFigures;
  ratio_decode: Spread;
  ratio_prefill: Spread;
  options: BenchOptions;
}

/**
 * Both engines loaded in this process, then `rounds` rounds, each a prefill of the prompt and a decode of
 * o.genTokens tokens by ours and by llama.cpp, back to back (ours first in even rounds, llama.cpp first in odd
 * ones), after one warm-up round each. The ratio is taken round by round, so that this machine's drift (minutes
 * of a slow core) lands on both engines alike: whole-process runs are a minute apart and their medians can be taken
 * in different minutes. Load time and memory are not measured here (both engines share the process).
 */
export async function benchInterleaved(o: BenchOptions, rounds: number, log: (line: string) => void): Promise<InterleavedResult> {
  const m = await loadOurs(o);
  const { model, context } = await loadLlamaCpp(await llamaRuntime(), o, 1);
  const seq = context.getSequence();
  const prompt = await promptFor(o);
  const theirs = async () => {
    await seq.clearHistory();
    return llamaRound(seq, prompt, o.genTokens);
  };
  try {
    await oursRound(m, prompt, 4);
    await theirs();
    const out: InterleavedResult["rounds"] = [];
    for (let r = 0; r < rounds; r++) {
      let a: RoundFigures, b: RoundFigures;
      if (r % 2 === 0) {
        a = await oursRound(m, prompt, o.genTokens);
        b = await theirs();
      } else {
        b = await theirs();
        a = await oursRound(m, prompt, o.genTokens);
      }
      out.push({ ours: a, llama_cpp: b });
      log(`round ${r + 1}/${rounds}: ours prefill ${a.prefill_tok_s.toFixed(2)} decode ${a.decode_tok_s.toFixed(2)} tok/s, llama.cpp ${b.prefill_tok_s.toFixed(2)} ${b.decode_tok_s.toFixed(2)}: ratios ${(a.prefill_tok_s / b.prefill_tok_s).toFixed(3)} ${(a.decode_tok_s / b.decode_tok_s).toFixed(3)}`);
    }
    const spread = (xs: number[]): Spread => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
    const med = (side: "ours" | "llama_cpp"): RoundFigures => ({ prefill_tok_s: median(out.map((x) => x[side].prefill_tok_s)), decode_tok_s: median(out.map((x) => x[side].decode_tok_s)) });
    return {
      rounds: out,
      ours: med("ours"),
      llama_cpp: med("llama_cpp"),
      ratio_decode: spread(out.map((x) => x.ours.decode_tok_s / x.llama_cpp.decode_tok_s)),
      ratio_prefill: spread(out.map((x) => x.ours.prefill_tok_s / x.llama_cpp.prefill_tok_s)),
      options: o,
    };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

export function fmt(r: RunFigures): string {
  return `load ${r.load_s.toFixed(2)} s, prefill ${r.prefill_tok_s.toFixed(2)} tok/s, decode ${r.decode_tok_s.toFixed(2)} tok/s, ttft(16) ${r.ttft_s.toFixed(3)} s, peak RSS ${r.peak_rss_mb.toFixed(0)} MB`;
}

/** One row of a profile: what, ms per decode step (or per prefill), share of the step, GMAC/s and weight GB/s. */
export interface ProfileRow { what: string; ms: number; share: number; gmacs?: number; gbs?: number }

/**
 * Where one prefill of the prompt and one decode step spend their time (our engine, a wasm or reference backend):
 * each kernel call timed by what it does, the rest of the forward pass (norms, RoPE, residuals, the embedding
 * lookup) as the step less the kernels, and the sampler (temperature 1, the OpenAI default) on the step's logits.
 */
export async function profileOurs(o: BenchOptions): Promise<{ prefill: ProfileRow[]; decode: ProfileRow[]; prefillMs: number; decodeMs: number }> {
  if (o.backend === "webgpu") throw new Error("--profile times the CPU kernels: use --backend wasm or reference");
  const { FileByteSource } = await import("../hosts/node-file-source.ts");
  const { createBackend } = await import("../hosts/node-backend.ts");
  const { loadModel } = await import("../engine/model/load.ts");
  const { BackendProfile } = await import("../engine/backend/profile.ts");
  const { DEFAULT_SAMPLING, Sampler } = await import("../engine/sampler.ts");
  const profile = new BackendProfile();
  const src = await FileByteSource.open(o.model);
  const m = await loadModel(src, profile.wrap(await createBackend(o.backend, o.threads)), { contextSize: benchContext(o) });
  await src.close();
  const prompt = await promptFor(o);
  // warm the JIT (WebAssembly and TypeScript are recompiled optimized once hot)
  let next = argmax(await m.forward(prompt.slice(0, 16), 0));
  for (let i = 0; i < 3; i++) next = argmax(await m.forward([next], 16 + i));
  const rows = (stepMs: number, steps: number, samplerMs?: number): ProfileRow[] => {
    const out: ProfileRow[] = [...profile.entries].map(([what, e]) => ({
      what, ms: e.ms / steps, share: e.ms / steps / stepMs,
      ...(e.macs ? { gmacs: e.macs / e.ms / 1e6, gbs: e.bytes / e.ms / 1e6 } : {}),
    }));
    out.sort((a, b) => b.ms - a.ms);
    const rest = stepMs - profile.totalMs() / steps;
    out.push({ what: "the rest (norms, RoPE, residuals, embedding; TypeScript)", ms: rest, share: rest / stepMs });
    if (samplerMs !== undefined) out.push({ what: "sampler, temperature 1 (after the step)", ms: samplerMs, share: samplerMs / stepMs });
    return out;
  };
  profile.reset();
  let t = performance.now();
  next = argmax(await m.forward(prompt, 0));
  const prefillMs = performance.now() - t;
  const prefill = rows(prefillMs, 1);
  profile.reset();
  const sampler = new Sampler({ ...DEFAULT_SAMPLING, temperature: 1, seed: 1 });
  let samplerMs = 0;
  t = performance.now();
  for (let i = 0; i < o.genTokens; i++) {
    const logits = await m.forward([next], prompt.length + i);
    next = argmax(logits);
    const s0 = performance.now();
    sampler.sample(logits);
    samplerMs += performance.now() - s0;
  }
  const decodeMs = (performance.now() - t - samplerMs) / o.genTokens;
  return { prefill, decode: rows(decodeMs, o.genTokens, samplerMs / o.genTokens), prefillMs, decodeMs };
}

/** A profile as two markdown tables. */
export function fmtProfile(p: Awaited<ReturnType<typeof profileOurs>>, o: BenchOptions): string {
  const table = (title: string, rs: ProfileRow[]) =>
    [`${title}`, "", "| | ms | share | GMAC/s | weight GB/s |", "|---|---|---|---|---|",
      ...rs.map((r) => `| ${r.what} | ${r.ms.toFixed(2)} | ${(100 * r.share).toFixed(1)}% | ${r.gmacs?.toFixed(1) ?? ""} | ${r.gbs?.toFixed(1) ?? ""} |`)].join("\n");
  return [
    table(`Prefill of ${o.promptTokens} tokens: ${p.prefillMs.toFixed(0)} ms (${((o.promptTokens / p.prefillMs) * 1000).toFixed(2)} tok/s)`, p.prefill),
    "",
    table(`One decode step (mean of ${o.genTokens}): ${p.decodeMs.toFixed(1)} ms (${(1000 / p.decodeMs).toFixed(2)} tok/s)`, p.decode),
  ].join("\n");
}
