// The shard plan: what it packs into each part, and that the memory it computes is the memory a loaded part takes.
import { describe, expect, it } from "vitest";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { configFromGguf, type GemmaConfig } from "../../src/engine/config.ts";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { readGguf, type GgufTensorInfo } from "../../src/engine/gguf.ts";
import { loadPart } from "../../src/engine/model/part.ts";
import { MB, planShards, PlanError } from "../../src/engine/shard-plan.ts";
import { loadWasmBackend } from "../../src/hosts/node-wasm.ts";
import { testModel } from "../helpers/models.ts";

/** Tensor infos of a Gemma-2B-shaped Q4_0 file (no bytes needed to plan). */
const G2B: GemmaConfig = { dim: 2048, hiddenDim: 16384, nLayers: 18, nHeads: 8, nKvHeads: 1, headDim: 256, vocabSize: 256000, seqLen: 8192, normEps: 1e-6, ropeTheta: 10000, ropeDims: 256,
  arch: "gemma", ropeScale: 1, ropeThetaLocal: 10000, ropeScaleLocal: 1, window: 0, local: new Array(18).fill(false), qScale: 1 / 16, embedScale: Math.fround(Math.sqrt(2048)),
  attnSoftcap: 0, finalSoftcap: 0, postNorms: false, qkNorm: false,
};
const G2B_SHAPES: Record<string, [number, number]> = {
  token_embd: [2048, 256000], attn_q: [2048, 2048], attn_k: [2048, 256], attn_v: [2048, 256], attn_output: [2048, 2048],
  ffn_gate: [2048, 16384], ffn_up: [2048, 16384], ffn_down: [16384, 2048],
};
function g2bLookup(name: string): GgufTensorInfo | undefined {
  const role = name.replace(/^blk\.\d+\./, "").replace(/\.weight$/, "");
  if (role.endsWith("norm")) return { name, type: GGML_TYPE.F32, dims: [2048], offset: 0, nbytes: 2048 * 4 } as GgufTensorInfo;
  const d = G2B_SHAPES[role];
  if (!d) return undefined;
  return { name, type: GGML_TYPE.Q4_0, dims: d, offset: 0, nbytes: (d[0] * d[1] * 18) / 32 } as GgufTensorInfo;
}

describe("planShards on a Gemma-2B-shaped Q4_0 model", () => {
  it("100 MB, 8192 positions: one layer per part, three vocabulary slices, 64-token chunks, every part within budget", () => {
    const p = planShards(G2B, g2bLookup, { budgetBytes: 100 * MB, contextSize: 8192 });
    expect(p.parts.map((s) => s.spec)).toEqual([
      ...Array.from({ length: 18 }, (_, l) => ({ layers: [l, l + 1] })),
      { vocab: [0, 85376] }, { vocab: [85376, 170752] }, { vocab: [170752, 256000] },
    ]);
    expect(p.chunk).toBe(64);
    for (const s of p.parts) expect(s.memoryBytes).toBeLessThanOrEqual(100 * MB);
    // a layer: its Q4_0 weights and two f32 norms; KV: 8192 positions x 256 values x (k, v) x f16
    const layer = p.parts[0]!.bytes;
    expect(layer.weights).toBe((2 * 2048 * 2048 + 2 * 256 * 2048 + 3 * 16384 * 2048) * 18 / 32 + 2 * 2048 * 4);
    expect(layer.kv).toBe(8192 * 256 * 2 * 2);
    // activations of a 64-token chunk: x, xb (dim); q, att (heads x head_dim); k, v (head_dim); gate, up (ffn)
    expect(layer.activations).toBe(64 * 4 * (2 * 2048 + 2 * 2048 + 2 * 256 + 2 * 16384));
  });

  it("KV for more sequences and a shorter context trade against the chunk", () => {
    const four = planShards(G2B, g2bLookup, { budgetBytes: 100 * MB, contextSize: 4096, sequences: 4 });
    expect([four.sequences, four.parts[0]!.bytes.kv]).toEqual([4, 4 * 4096 * 256 * 2 * 2]);
    expect(four.parts.filter((s) => s.spec.layers)).toHaveLength(18);
    // at 8192 positions KV for 6 sequences does not fit beside a layer's 62 MB of weights: 4 do (with smaller chunks)
    const six = planShards(G2B, g2bLookup, { budgetBytes: 100 * MB, contextSize: 8192, sequences: 6 });
    expect([six.sequences, six.parts[0]!.bytes.kv]).toEqual([4, 4 * 8192 * 256 * 2 * 2]);
    for (const p of six.parts) expect(p.memoryBytes).toBeLessThanOrEqual(100 * MB);
    // one part keeps KV for every sequence slot, and logits for each of them
    const whole = planShards(G2B, g2bLookup, { contextSize: 1024, sequences: 4 });
    expect([whole.parts.length, whole.sequences, whole.parts[0]!.bytes.kv]).toEqual([1, 4, 4 * 18 * 1024 * 256 * 2 * 2]);
    const single = planShards(G2B, g2bLookup, { contextSize: 1024, sequences: 1 });
    expect(whole.parts[0]!.bytes.activations - single.parts[0]!.bytes.activations).toBe(3 * 256000 * 4);
    // 100 MB: 128-token chunks would fit a layer part but need a fourth vocabulary slice (each holds a chunk of
    // embeddings), so the plan keeps 64; with 120 MB both fit
    expect(planShards(G2B, g2bLookup, { budgetBytes: 100 * MB, contextSize: 1024 }).chunk).toBe(64);
    const roomy = planShards(G2B, g2bLookup, { budgetBytes: 120 * MB, contextSize: 1024 });
    expect([roomy.chunk, roomy.parts.length]).toEqual([128, 21]);
    // a bigger budget packs two layers into a part
    const big = planShards(G2B, g2bLookup, { budgetBytes: 150 * MB, contextSize: 2048 });
    expect(big.parts.filter((s) => s.spec.layers).map((s) => s.spec.layers)).toEqual(Array.from({ length: 9 }, (_, i) => [2 * i, 2 * i + 2]));
    expect(big.parts.filter((s) => s.spec.vocab)).toHaveLength(2);
  });

  it("a layer over budget even alone is an error naming the layer, its largest tensor and the budget", () => {
    expect(() => planShards(G2B, g2bLookup, { budgetBytes: 50 * MB, contextSize: 8192 })).toThrow(PlanError);
    expect(() => planShards(G2B, g2bLookup, { budgetBytes: 50 * MB, contextSize: 8192 })).toThrow(
      /layer 0 does not fit the budget of 50\.0 MB even alone with a 4-token chunk: it needs 71\.6 MB .*its largest tensor, blk\.0\.ffn_gate\.weight, is 18\.9 MB/,
    );
  });

  it("no budget, or a budget the model fits: one part with everything", () => {
    expect(planShards(G2B, g2bLookup, { contextSize: 8192 }).parts.map((s) => s.spec)).toEqual([{ layers: [0, 18], vocab: [0, 256000] }]);
    expect(planShards(G2B, g2bLookup, { budgetBytes: 2000 * MB, contextSize: 8192 }).parts).toHaveLength(1);
  });

  it("a model that fits with a smaller chunk stays one part, with that chunk", () => {
    const full = planShards(G2B, g2bLookup, { contextSize: 8192 });
    const at64 = planShards(G2B, g2bLookup, { budgetBytes: 1600 * MB, contextSize: 8192 });
    expect(full.parts[0]!.memoryBytes).toBeGreaterThan(1600 * MB); // 512-token chunks do not fit
    expect(at64.parts).toHaveLength(1);
    expect(at64.chunk).toBeLessThan(512);
    expect(at64.parts[0]!.memoryBytes).toBeLessThanOrEqual(1600 * MB);
  });
});

describe("the plan's memory is what the loaded parts take", () => {
  it("every part of a tiny model split by a 0.6 MB budget: WebAssembly memory equal to the plan, within budget", async () => {
    const { bytes } = await testModel({ vocabSize: 8192, dim: 96, hiddenDim: 320, nLayers: 3, nHeads: 4, nKvHeads: 2, headDim: 32, contextLength: 512 }, "q4_0");
    const src = new MemoryByteSource(bytes);
    const gguf = await readGguf(src);
    const cfg = configFromGguf(gguf);
    const budget = 0.6 * MB;
    const plan = planShards(cfg, (n) => gguf.tensors.get(n), { budgetBytes: budget, contextSize: 512 });
    expect(plan.parts.filter((s) => s.spec.layers).length).toBeGreaterThanOrEqual(3);
    expect(plan.parts.filter((s) => s.spec.vocab).length).toBeGreaterThanOrEqual(2);
    for (const s of plan.parts) {
      const backend = await loadWasmBackend();
      await loadPart(src, backend, cfg, (n) => gguf.tensors.get(n), s.spec, { contextSize: 512, sequences: 1, chunk: plan.chunk });
      expect(backend.memoryBytes).toBe(s.memoryBytes);
      expect(backend.memoryBytes).toBeLessThanOrEqual(budget);
    }
  });
});
