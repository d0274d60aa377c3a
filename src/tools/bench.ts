// `gemma-edge bench`: load time, prefill and decode throughput, time to first token and peak memory of our engine,
// and (with --vs-llama-cpp) of llama.cpp on the same file with the same thread count. Each measurement runs in its
// own process (so that memory and load time are its own), ours and llama.cpp's alternately.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

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

/** One measurement of our engine (runs in the calling process). */
export async function measureOurs(o: BenchOptions): Promise<RunFigures> {
  const { FileByteSource } = await import("../hosts/node-file-source.ts");
  const { loadNodeModel } = await import("../hosts/node-backend.ts");
  const t0 = performance.now();
  const src = await FileByteSource.open(o.model);
  const m = await loadNodeModel(src, o.backend, { threads: o.backend === "wasm" ? o.threads : 1, contextSize: benchContext(o) });
  await src.close();
  const load = (performance.now() - t0) / 1000;
  const prompt = await promptFor(o);
  const argmax = (l: Float32Array) => {
    let b = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[b]!) b = i;
    return b;
  };
  // time to first token of a 16-token prompt
  let t = performance.now();
  argmax(await m.forward(prompt.slice(0, 16), 0));
  const ttft = (performance.now() - t) / 1000;
  // prefill of the whole prompt, then decode
  t = performance.now();
  let next = argmax(await m.forward(prompt, 0));
  const prefill = (performance.now() - t) / 1000;
  t = performance.now();
  for (let i = 0; i < o.genTokens; i++) next = argmax(await m.forward([next], prompt.length + i));
  const decode = (performance.now() - t) / 1000;
  return {
    load_s: load,
    prefill_tok_s: prompt.length / prefill,
    decode_tok_s: o.genTokens / decode,
    ttft_s: ttft,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  };
}

/** One measurement of llama.cpp (node-llama-cpp, CPU), in the calling process. */
export async function measureLlamaCpp(o: BenchOptions): Promise<RunFigures> {
  let mod: typeof import("node-llama-cpp");
  try {
    mod = await import("node-llama-cpp");
  } catch {
    throw new Error("--vs-llama-cpp needs the node-llama-cpp package (a devDependency: run npm install in the project)");
  }
  const llama = await mod.getLlama({ gpu: false, build: "never", logLevel: "error" as never, progressLogs: false } as never);
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
  // flash attention on, as llama.cpp's own default (node-llama-cpp would turn it off for Gemma 2 files by itself)
  const context = await model.createContext({ contextSize: benchContext(o), threads: o.threads, sequences: 2, flashAttention: true });
  const load = (performance.now() - t0) / 1000;
  const prompt = await promptFor(o);
  const ttftSeq = context.getSequence();
  let t = performance.now();
  await ttftSeq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 16) as never);
  const ttft = (performance.now() - t) / 1000;
  ttftSeq.dispose();
  // prefill: until the first generated token; decode: the tokens after it
  const seq = context.getSequence();
  t = performance.now();
  let prefill = 0;
  let n = 0;
  let tDecode = 0;
  for await (const tok of seq.evaluate(prompt as never, { temperature: 0 } as never)) {
    void tok;
    if (n === 0) {
      prefill = (performance.now() - t) / 1000;
      tDecode = performance.now();
    }
    if (++n > o.genTokens) break;
  }
  const decode = (performance.now() - tDecode) / 1000;
  n -= 1;
  const figures = {
    load_s: load,
    prefill_tok_s: prompt.length / prefill,
    decode_tok_s: n / decode,
    ttft_s: ttft,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  };
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

export function fmt(r: RunFigures): string {
  return `load ${r.load_s.toFixed(2)} s, prefill ${r.prefill_tok_s.toFixed(2)} tok/s, decode ${r.decode_tok_s.toFixed(2)} tok/s, ttft(16) ${r.ttft_s.toFixed(3)} s, peak RSS ${r.peak_rss_mb.toFixed(0)} MB`;
}
