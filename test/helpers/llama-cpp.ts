// The reference: llama.cpp through node-llama-cpp (CPU build, pinned 3.21.1), on the same GGUF file.
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";

let llama: Promise<Llama> | undefined;

export function getLlamaCpp(): Promise<Llama> {
  llama ??= getLlama({ gpu: false, build: "never", logLevel: "error" as never, progressLogs: false } as never);
  return llama;
}

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
  async greedy(promptIds: number[], maxTokens: number): Promise<number[]> {
    const ctx = await this.model.createContext({ contextSize: 512, sequences: 1, threads: 1 });
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
    const ctx = await this.model.createContext({ contextSize: 512, sequences: 1, threads: 1 });
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
