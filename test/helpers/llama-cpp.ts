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
  async dispose() {
    await this.model.dispose();
  }
}
