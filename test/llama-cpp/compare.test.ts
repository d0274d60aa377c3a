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
import { SHAPES, type TestModelShape } from "../../src/tools/make-test-model.ts";

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
// Gemma 2 and Gemma 3 (post-norms, soft-caps, sliding-window layers with a 16-position window that the longer
// prompts pass, Gemma 3's QK-norm and two RoPE bases), and shapes with 256-column rows for the K-quant mix
const K_SHAPE = { dim: 256, hiddenDim: 512, headDim: 64 };
for (const arch of ["tiny-gemma2", "tiny-gemma3"]) {
  for (const type of ["f16", "q8_0", "q4_0"]) CASES.push([arch, type]);
  CASES.push([{ ...SHAPES[arch]!, ...K_SHAPE }, "q4_k_m"]);
}
// the 32-value types llama.cpp writes where K-quants do not fit (Q5_0, Q5_1 for Q4_K, Q5_K) and Q4_1, and a
// Gemma-3-1B-like "Q4_K_M": a hidden size of 384 (not a multiple of 256, as 1B's 1152), so the matrices that
// read it fall back to Q5_0 and Q8_0 while ffn_down and attn_output stay Q4_K / Q6_K
for (const type of ["q4_1", "q5_0", "q5_1"]) CASES.push(["tiny-gqa", type]);
CASES.push([{ ...SHAPES["tiny-gemma3"]!, dim: 384, hiddenDim: 768, headDim: 64 }, "q4_k_m"]);
// Gemma 3 with linear RoPE scaling on its global layers (as the 4B and larger), soft-capped final logits, GQA
CASES.push([{ ...SHAPES["tiny-gemma3"]!, ropeScaling: 8, finalSoftcap: 6, nKvHeads: 2 }, "q8_0"]);
// Gemma 2 with the soft-caps and window llama.cpp assumes when the file has none (50, 30, 4096)
CASES.push([{ ...SHAPES["tiny-gemma2"]!, attnSoftcap: undefined, finalSoftcap: undefined, window: undefined }, "q4_0"]);

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

describe.each([["tiny-gemma2", "f16"], ["tiny-gemma3", "q8_0"]])("%s %s: past the sliding-window ring", (shape, type) => {
  // llama.cpp keeps a local layer's KV in a ring of 768 cells here (window 16 + its micro-batch of 513, rounded up
  // to 256), so with a context of 1024 a long prompt wraps it: within the prompt's second micro-batch, and then
  // decode by decode. The same ring gives the same order of cells in attention, so the tokens stay identical.
  it("a 700-token prompt decoding past position 768, and a 900-token prompt that wraps while it is read", async () => {
    const file = await testModel({ ...SHAPES[shape]!, contextLength: 1024 }, type);
    const ref = await LlamaCppModel.load(file.path);
    try {
      const m = await loadModel(new MemoryByteSource(file.bytes), await loadWasmBackend(), { contextSize: 1024 });
      expect(m.cache.cells).toContain(768);
      const words = "the quick brown fox jumps over the lazy dog while a model answers questions at the edge ".repeat(60).split(" ");
      for (const [len, gen] of [[700, 100], [900, 24]] as const) {
        const ids = [m.tokenizer.bosId, ...m.tokenizer.encode(words.join(" ")).slice(0, len - 1)];
        const ours: number[] = [];
        for await (const ev of generate(m, { prompt: { ids }, maxTokens: gen, sampling: { temperature: 0 } })) {
          if (ev.type === "token") ours.push(ev.id);
          else if (typeof ev.stoppedBy === "number") ours.pop();
        }
        expect(ours, `${len}-token prompt`).toEqual(await ref.greedy(ids, gen, 1024));
      }
    } finally {
      await ref.dispose();
    }
  });
});

describe.each([["tiny-gemma2", "f16"], ["tiny-gemma3", "q4_0"], [{ ...SHAPES["tiny-gemma3"]!, finalSoftcap: 6 }, "q8_0"]])(
  "%j %s: the next-token distribution is llama.cpp's",
  (shape, type) => {
    // soft-capping the final logits leaves the greedy token as it is (tanh is monotonic) but flattens the
    // distribution: the probabilities show it. llama.cpp's come from its f32 softmax, ours in double: 1e-4 relative.
    it("the top 8 tokens and their probabilities", async () => {
      const file = await testModel(shape, type);
      const ref = await LlamaCppModel.load(file.path);
      try {
        const m = await loadModel(new MemoryByteSource(file.bytes), await loadWasmBackend(), { contextSize: 512 });
        for (const prompt of [PROMPTS[1]!, PROMPTS[7]!]) {
          const ids = m.tokenizer.encode(prompt, { addBos: true });
          const theirs = await ref.nextTokenProbabilities(ids, 8);
          const logits = await m.forward(ids, 0);
          const max = logits.reduce((a, b) => Math.max(a, b), -Infinity);
          const z = logits.reduce((a, b) => a + Math.exp(b - max), 0);
          // llama.cpp's top 8 are ours too, each with its probability (near-ties may swap places between the two softmaxes)
          const ourTop = [...logits].map((l, i) => [i, l] as const).sort((a, b) => b[1] - a[1]).slice(0, 12).map((e) => e[0]);
          for (const [id, p] of theirs) {
            expect(ourTop).toContain(id);
            expect(Math.abs(Math.exp(logits[id]! - max) / z - p) / p, `token ${id}`).toBeLessThan(1e-4);
          }
        }
      } finally {
        await ref.dispose();
      }
    });
  },
);
