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

// K-quant files (off-the-shelf GGUFs are mostly Q4_K_M): all-Q4_K, all-Q5_K, all-Q6_K and llama.cpp's Q4_K_M mix.
// Our K-quant products follow ggml's vec_dot order up to f32 rounding (quant-k.ts dotKRow; ggml's own vec_dot is
// compared in test/unit/quant-numeric.test.ts); llama.cpp runs these matrices through its repacked kernels, whose
// rounding differs again, and these deliberately chaotic test models (residual gain 16) blow rounding differences
// up over a few tokens. So what is compared here is the first next-token distribution, not greedy continuations.
describe.each(["q4_k", "q5_k", "q6_k", "q4_k_m"])("K-quant file (%s): the next-token distribution after <bos> is llama.cpp's", (type) => {
  it("within 1e-4 in log-probability for llama.cpp's 8 most likely tokens, in its order", async () => {
    const file = await testModel("tiny-k", type);
    const ref = await LlamaCppModel.load(file.path);
    try {
      const m = await loadModel(new MemoryByteSource(file.bytes), await loadWasmBackend(), { contextSize: 512 });
      const ids = [m.tokenizer.bosId];
      const theirs = await ref.nextTokenProbabilities(ids, 8);
      const logits = Array.from(m.model.forward(ids, 0, m.cache));
      const max = Math.max(...logits);
      const lse = max + Math.log(logits.reduce((s, v) => s + Math.exp(v - max), 0));
      expect(theirs.map(([id]) => id)).toEqual(logits.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 8).map(([, i]) => i));
      for (const [id, p] of theirs) expect(Math.abs(Math.log(p) - (logits[id]! - lse)), `token ${id}`).toBeLessThan(1e-4);
    } finally {
      await ref.dispose();
    }
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
