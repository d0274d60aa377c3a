// Our engine against llama.cpp (node-llama-cpp 3.21.1, CPU) on the same generated GGUF files:
// tokenization on a corpus of hard strings, and greedy continuations on several shapes and weight types.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate } from "../../src/engine/generate.ts";
import { readGguf } from "../../src/engine/gguf.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model/load.ts";
import { Tokenizer } from "../../src/engine/tokenizer.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { loadWasmBackend } from "../../src/hosts/node-wasm.ts";
import { TOKENIZER_CORPUS } from "../helpers/corpus.ts";
import { LlamaCppModel } from "../helpers/llama-cpp.ts";
import { testModel } from "../helpers/models.ts";
import type { TestModelShape } from "../../src/tools/make-test-model.ts";

const PROMPTS = [
  "Hello world",
  "The quick brown fox",
  "def main():\n    for i in range(10):",
  "日本語のテキスト",
  "Once upon a time there was",
  "🎉 emoji 👍 test",
  "JSON: {\"name\": ",
  // 64+ tokens: llama.cpp's tiled flash-attention path
  "The quick brown fox jumps over the lazy dog. Once upon a time there was a little model that wanted to answer every question on the edge of the network. ".repeat(3),
];
const GEN_TOKENS = 32;

describe("tokenization matches llama.cpp", () => {
  let ref: LlamaCppModel;
  let tok: Tokenizer;
  beforeAll(async () => {
    const m = await testModel("tiny", "q4_0");
    ref = await LlamaCppModel.load(m.path);
    tok = new Tokenizer(await readGguf(new MemoryByteSource(m.bytes)));
  });
  afterAll(async () => ref?.dispose());

  it(`has a corpus of at least 200 strings`, () => {
    expect(TOKENIZER_CORPUS.length).toBeGreaterThanOrEqual(200);
  });

  it("gives identical ids for every corpus string", () => {
    const mismatches: string[] = [];
    for (const text of TOKENIZER_CORPUS) {
      const ours = tok.encode(text);
      const theirs = ref.tokenize(text);
      if (JSON.stringify(ours) !== JSON.stringify(theirs)) mismatches.push(`${JSON.stringify(text)}: ours ${ours} theirs ${theirs}`);
    }
    expect(mismatches).toEqual([]);
  });
});

// Two shapes (1 KV head; 1 < KV heads < heads) x the weight types, and an odd shape: 5 heads of 64 (5 x 64 != 160),
// a vocabulary that is not a multiple of 8 (another LM-head kernel in llama.cpp), and a prompt that ends in <eos>.
const ODD: TestModelShape = { vocabSize: 1500, dim: 160, hiddenDim: 416, nLayers: 3, nHeads: 5, nKvHeads: 1, headDim: 64, contextLength: 512 };
const CASES: [string | TestModelShape, string][] = [];
for (const shape of ["tiny", "tiny-gqa"]) for (const type of ["q4_0", "q8_0", "f16", "bf16", "f32"]) CASES.push([shape, type]);
CASES.push([ODD, "f16"], [{ ...ODD, vocabSize: 1501 }, "q4_0"]);
// RoPE on part of each head only (gemma.rope.dimension_count < key_length)
CASES.push([{ ...ODD, ropeDims: 32 }, "q8_0"]);
// K-quants (off-the-shelf files are mostly Q4_K_M): all-Q4_K, all-Q5_K, all-Q6_K and llama.cpp's Q4_K_M mix
// (Q4_K repacked, so prompts take its gemm and gemv orders; Q5_K and Q6_K vec_dot's)
for (const type of ["q4_k", "q5_k", "q6_k", "q4_k_m"]) CASES.push(["tiny-k", type]);

describe.each(CASES)("greedy generation matches llama.cpp: %j %s", (shape, type) => {
  let ref: LlamaCppModel;
  let m: LoadedModel;
  beforeAll(async () => {
    const file = await testModel(shape, type);
    ref = await LlamaCppModel.load(file.path);
    m = await loadModel(new MemoryByteSource(file.bytes), await loadWasmBackend(), { contextSize: 512 });
  });
  afterAll(async () => ref?.dispose());

  it.each(PROMPTS)("%j", async (prompt) => {
    const ids = m.tokenizer.encode(prompt, { addBos: true });
    expect(ids).toEqual([m.tokenizer.bosId, ...ref.tokenize(prompt)]);
    const theirs = await ref.greedy(ids, GEN_TOKENS);
    const ours: number[] = [];
    for await (const ev of generate(m, { prompt: { ids }, maxTokens: GEN_TOKENS, sampling: { temperature: 0 } })) {
      if (ev.type === "token") ours.push(ev.id);
      // llama.cpp does not hand out the end-of-generation token that stops it
      else if (typeof ev.stoppedBy === "number") ours.pop();
    }
    expect(ours).toEqual(theirs);
  });
});

describe("a generation that ends at the end-of-generation token", () => {
  it("stops where llama.cpp stops, and the CLI's ids leave the stop token out", async () => {
    const file = await testModel(ODD, "f16");
    const ref = await LlamaCppModel.load(file.path);
    try {
      const m = await loadModel(new MemoryByteSource(file.bytes), await loadWasmBackend(), { contextSize: 512 });
      const ids = m.tokenizer.encode(PROMPTS[2]!, { addBos: true });
      const events = [];
      for await (const ev of generate(m, { prompt: { ids }, maxTokens: GEN_TOKENS, sampling: { temperature: 0 } })) events.push(ev);
      const done = events.at(-1)!;
      expect(done.type === "done" && done.finishReason).toBe("stop");
      expect(done.type === "done" && m.tokenizer.stopIds.includes(done.stoppedBy as number)).toBe(true);
      const generated = events.flatMap((e) => (e.type === "token" ? [e.id] : [])).slice(0, -1);
      expect(generated).toEqual(await ref.greedy(ids, GEN_TOKENS));
    } finally {
      await ref.dispose();
    }
  });
});
