// The reference: llama.cpp through node-llama-cpp (CPU build, pinned 3.21.1), on the same GGUF file.
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";

let llama: Promise<Llama> | undefined;

/**
 * llama.cpp as the reference: its x86-64 AVX2 CPU kernels (ggml's "haswell" variant), whose sums our engine
 * reproduces. node-llama-cpp ships one CPU library per x86 level and ggml loads the best one for the machine
 * from the folder of the addon (on AVX-512 machines "zen4" or "skylakex", whose kernels sum in other orders).
 * So on x86-64 the addon is loaded from a copy of its folder that holds only the AVX2 CPU library, through
 * node-llama-cpp's own Llama._create (what getLlama does with the folder it finds; pinned 3.21.1), and the log
 * line that names the CPU library it loaded is checked.
 */
export function getLlamaCpp(): Promise<Llama> {
  llama ??= (async () => {
    const options = { gpu: false, build: "never", logLevel: "error", progressLogs: false } as never;
    const [fs, { tmpdir }, { join, resolve }, { createRequire }, { pathToFileURL }] = await Promise.all([
      import("node:fs"), import("node:os"), import("node:path"), import("node:module"), import("node:url"),
    ]);
    const pkg = resolve(import.meta.dirname, "../../node_modules/node-llama-cpp");
    const bins = resolve(pkg, "../@node-llama-cpp/linux-x64/bins/linux-x64");
    if (process.arch !== "x64" || process.platform !== "linux") return getLlama(options);
    const dir = fs.mkdtempSync(join(tmpdir(), "llama-cpp-avx2-"));
    for (const f of fs.readdirSync(bins)) if (!f.startsWith("libggml-cpu-") || f === "libggml-cpu-haswell.so") fs.copyFileSync(join(bins, f), join(dir, f));
    const { Llama } = await import(pathToFileURL(join(pkg, "dist/bindings/Llama.js")).href);
    const { defaultLlamaVramPadding, defaultLlamaRamPadding } = await import(pathToFileURL(join(pkg, "dist/bindings/getLlama.js")).href);
    const bindingPath = join(dir, "llama-addon.node");
    const logs: string[] = [];
    const l = (await Llama._create({
      bindings: createRequire(import.meta.url)(bindingPath), bindingPath, buildType: "prebuilt",
      buildMetadata: JSON.parse(fs.readFileSync(join(dir, "_nlcBuildMetadata.json"), "utf8")),
      logLevel: "debug", logger: (_level: string, message: string) => void logs.push(message),
      vramPadding: defaultLlamaVramPadding, ramPadding: defaultLlamaRamPadding, debug: false,
    })) as Llama;
    for (let i = 0; i < 100 && !logs.some((m) => /loaded CPU backend from/.test(m)); i++) await new Promise((r) => setTimeout(r, 10)); // the addon logs asynchronously
    const loaded = logs.find((m) => /loaded CPU backend from/.test(m));
    if (!loaded || !loaded.includes("libggml-cpu-haswell.so")) throw new Error(`llama.cpp did not load its AVX2 CPU kernels: ${loaded ?? logs.join(" | ")}`);
    (l as unknown as { logLevel: string }).logLevel = "error";
    return l;
  })();
  return llama;
}

/**
 * Context options of the reference: one sequence, one thread, and flash attention on as llama.cpp's own default
 * ("auto", which the CPU backend resolves to on). node-llama-cpp turns it off by itself for Gemma 2 files (it
 * believes the two incompatible; llama.cpp runs Gemma 2's soft-capping inside flash attention), which would make
 * the reference compute Gemma 2's attention as no llama.cpp server or CLI does.
 */
const CONTEXT = { sequences: 1, threads: 1, flashAttention: true } as const;

export class LlamaCppModel {
  readonly model: LlamaModel;
  private constructor(model: LlamaModel) {
    this.model = model;
  }
  static async load(path: string): Promise<LlamaCppModel> {
    const l = await getLlamaCpp();
    return new LlamaCppModel(await l.loadModel({ modelPath: path, gpuLayers: 0 }));
  }
  /** Tokenize as user text: no BOS, no special-token parsing. */
  tokenize(text: string): number[] {
    return Array.from(this.model.tokenize(text, false) as number[]);
  }
  /** Greedy continuation of `promptIds` (stops at an end-of-generation token, which is included). */
  async greedy(promptIds: number[], maxTokens: number, contextSize = 512): Promise<number[]> {
    const ctx = await this.model.createContext({ contextSize, ...CONTEXT });
    try {
      const seq = ctx.getSequence();
      const out: number[] = [];
      for await (const t of seq.evaluate(promptIds as never, { temperature: 0 } as never)) {
        out.push(t as number);
        if (this.model.isEogToken(t)) break;
        if (out.length >= maxTokens) break;
      }
      return out;
    } finally {
      await ctx.dispose();
    }
  }
  /** llama.cpp's probabilities of its `k` most likely next tokens after `promptIds`, most likely first. */
  async nextTokenProbabilities(promptIds: number[], k: number): Promise<[number, number][]> {
    const ctx = await this.model.createContext({ contextSize: 512, ...CONTEXT });
    try {
      const seq = ctx.getSequence() as unknown as {
        evaluateWithMetadata(t: number[], m: { probabilities: true }, o: { temperature: 0 }): AsyncIterable<{ probabilities: Map<number, number> }>;
      };
      for await (const t of seq.evaluateWithMetadata(promptIds, { probabilities: true }, { temperature: 0 })) return [...t.probabilities].slice(0, k);
      throw new Error("llama.cpp produced no token");
    } finally {
      await ctx.dispose();
    }
  }
  async dispose() {
    await this.model.dispose();
  }
}

/** Greedy tokens of our engine (WASM backend) and of llama.cpp from the same file, for each prompt (with BOS). */
export async function greedyBothWays(path: string, prompts: string[], maxTokens = 24): Promise<{ ours: number[]; ref: number[] }[]> {
  const [{ readFileSync }, { MemoryByteSource }, { loadModel }, { loadWasmBackend }, { generate }] = await Promise.all([
    import("node:fs"), import("../../src/engine/byte-source.ts"), import("../../src/engine/model/load.ts"),
    import("../../src/hosts/node-wasm.ts"), import("../../src/engine/generate.ts"),
  ]);
  const ref = await LlamaCppModel.load(path);
  try {
    const m = await loadModel(new MemoryByteSource(new Uint8Array(readFileSync(path))), await loadWasmBackend(), { contextSize: 256 });
    const out: { ours: number[]; ref: number[] }[] = [];
    for (const prompt of prompts) {
      const ids = m.tokenizer.encode(prompt, { addBos: true });
      const ours: number[] = [];
      for await (const ev of generate(m, { prompt: { ids }, maxTokens, sampling: { temperature: 0 } })) {
        if (ev.type === "token") ours.push(ev.id);
        else if (typeof ev.stoppedBy === "number") ours.pop(); // llama.cpp's list ends at the stop token
      }
      out.push({ ours, ref: await ref.greedy(ids, maxTokens) });
    }
    return out;
  } finally {
    await ref.dispose();
  }
}
