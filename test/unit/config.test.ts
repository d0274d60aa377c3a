// configFromGguf: what each architecture reads from the file and what it takes as llama.cpp hard-codes it, the
// files it refuses by name, and the sizes of the sliding-window rings.
import { describe, expect, it } from "vitest";
import { configFromGguf, layerCells, layerKind, layerSteps } from "../../src/engine/config.ts";
import type { GgufFile, GgufTensorInfo, GgufValue } from "../../src/engine/gguf.ts";
import { canReuse } from "../../src/engine/model/kv-cache.ts";

/** A header with the keys every Gemma has (dim 256, 4 heads of 64) plus `extra`, and a 1000-row embedding. */
function file(arch: string, extra: Record<string, GgufValue> = {}, layers = 6, tensors: string[] = []): GgufFile {
  const meta: Record<string, GgufValue> = {
    "general.architecture": arch, [`${arch}.embedding_length`]: 256, [`${arch}.feed_forward_length`]: 512, [`${arch}.block_count`]: layers,
    [`${arch}.attention.head_count`]: 4, [`${arch}.attention.head_count_kv`]: 1, [`${arch}.attention.key_length`]: 64,
    [`${arch}.context_length`]: 8192, [`${arch}.attention.layer_norm_rms_epsilon`]: 1e-6, ...extra,
  };
  const t = new Map<string, GgufTensorInfo>([["token_embd.weight", { name: "token_embd.weight", dims: [256, 1000], type: 1, offset: 0, nbytes: 0 } as GgufTensorInfo]]);
  for (const n of tensors) t.set(n, { name: n, dims: [256, 1000], type: 1, offset: 0, nbytes: 0 } as GgufTensorInfo);
  return { metadata: new Map(Object.entries(meta)), tensors: t } as unknown as GgufFile;
}

describe("configFromGguf", () => {
  it("Gemma 1: no post-norms, no windows, no soft-caps; the query scale from key_length", () => {
    const c = configFromGguf(file("gemma"));
    expect([c.postNorms, c.qkNorm, c.window, c.attnSoftcap, c.finalSoftcap, c.local.some((l) => l)]).toEqual([false, false, 0, 0, 0, false]);
    expect(c.qScale).toBe(Math.fround(1 / Math.fround(Math.sqrt(64))));
    expect(c.embedScale).toBe(Math.fround(16));
    expect(layerSteps(c)).toEqual(["attn_norm", "qkv", "rope_store", "attention", "attn_out", "attn_residual", "ffn_norm", "ffn", "ffn_residual"]);
  });

  it("Gemma 2 without its optional keys: llama.cpp's defaults (window 4096, caps 50 and 30, even layers local)", () => {
    const c = configFromGguf(file("gemma2"));
    expect([c.window, c.attnSoftcap, c.finalSoftcap, c.postNorms, c.qkNorm]).toEqual([4096, 50, 30, true, false]);
    expect(c.local).toEqual([true, false, true, false, true, false]);
    expect(layerKind(c, 0)).toEqual({ local: true, window: 4096, ropeTheta: 10000, ropeScale: 1 });
    expect(layerSteps(c)).toContain("attn_post_norm");
    // the keys when present; a pattern key overrides the hard-coded period
    const d = configFromGguf(file("gemma2", { "gemma2.attention.sliding_window": 128, "gemma2.attn_logit_softcapping": 7, "gemma2.attention.sliding_window_pattern": 3 }));
    expect([d.window, d.attnSoftcap, d.local]).toEqual([128, 7, [true, true, false, true, true, false]]);
    // the 27B shape (46 layers): the query scale from dim / heads, as llama.cpp derives it
    expect(configFromGguf(file("gemma2", {}, 46)).qScale).toBe(Math.fround(1 / Math.fround(Math.sqrt(256 / 4))));
  });

  it("Gemma 3: five local layers to one global, RoPE bases by kind, linear scaling on global layers only", () => {
    const c = configFromGguf(file("gemma3", {
      "gemma3.attention.sliding_window": 512, "gemma3.rope.freq_base": 1000000, "gemma3.rope.scaling.type": "linear", "gemma3.rope.scaling.factor": 8,
    }, 12));
    expect(c.local).toEqual([true, true, true, true, true, false, true, true, true, true, true, false]);
    expect([c.qkNorm, c.postNorms, c.attnSoftcap, c.finalSoftcap]).toEqual([true, true, 0, 0]);
    expect(layerKind(c, 5)).toEqual({ local: false, window: 0, ropeTheta: 1000000, ropeScale: 0.125 });
    expect(layerKind(c, 0)).toEqual({ local: true, window: 512, ropeTheta: 10000, ropeScale: 1 });
    expect(layerSteps(c).slice(0, 3)).toEqual(["attn_norm", "qkv", "qk_norm"]);
    // no window in the file: every layer global
    expect(configFromGguf(file("gemma3")).local.every((l) => !l)).toBe(true);
    expect(configFromGguf(file("gemma3", { "gemma3.attention.sliding_window": 512, "gemma3.rope.freq_base_swa": 20000 })).ropeThetaLocal).toBe(20000);
  });

  it("refuses what it does not run, by name", () => {
    expect(() => configFromGguf(file("gemma3n"))).toThrow(/unsupported architecture "gemma3n".*Gemma 3n \(per-layer embeddings, AltUp\) is not supported; this engine runs gemma, gemma2, gemma3/);
    expect(() => configFromGguf(file("gemma-embedding"))).toThrow(/EmbeddingGemma is an embedding model/);
    expect(() => configFromGguf(file("clip"))).toThrow(/a vision projector \(mmproj\) file, not a language model/);
    expect(() => configFromGguf(file("llama"))).toThrow(/unsupported architecture "llama" \(general.architecture\); this engine runs gemma, gemma2, gemma3/);
    expect(() => configFromGguf(file("gemma3", {}, 6, ["output.weight"]))).toThrow(/its own "output.weight" \(an LM head not tied to token_embd\)/);
    expect(() => configFromGguf(file("gemma3", { "gemma3.rope.scaling.type": "yarn", "gemma3.rope.scaling.factor": 8 }))).toThrow(/gemma3.rope.scaling.type "yarn" is not supported \(only linear\)/);
    expect(() => configFromGguf(file("gemma3", { "gemma3.rope.scaling.attn_factor": 0.5 }))).toThrow(/gemma3.rope.scaling.attn_factor = 0.5 is not supported \(only 1\)/);
    expect(() => configFromGguf(file("gemma2", { "gemma2.attention.sliding_window_pattern": { itemType: 7, items: [true, false] } as unknown as GgufValue }))).toThrow(/sliding_window_pattern must be a number/);
  });
});

describe("sliding-window rings", () => {
  const g3 = configFromGguf(file("gemma3", { "gemma3.attention.sliding_window": 512, "gemma3.context_length": 32768 }, 26));
  it("are llama.cpp's SWA cache size: window + 513 rounded up to 256, never more than the context", () => {
    expect([layerCells(g3, 0, 32768), layerCells(g3, 5, 32768)]).toEqual([1280, 32768]);
    expect([layerCells(g3, 0, 1024), layerCells(g3, 0, 512)]).toEqual([1024, 512]);
    const g2 = configFromGguf(file("gemma2", { "gemma2.attention.sliding_window": 16 }));
    expect([layerCells(g2, 0, 1024), layerCells(g2, 0, 512), layerCells(g2, 1, 1024)]).toEqual([768, 512, 1024]);
  });
  it("keep a prefix for the prompt cache only while they still hold what new queries need", () => {
    expect(canReuse(g3, 32768, 1000, 10)).toBe(true); // nothing has wrapped
    expect(canReuse(g3, 32768, 5000, 4990)).toBe(true); // a chat's next turn: 4990 >= 5000 - 1280 + 512
    expect(canReuse(g3, 32768, 5000, 4000)).toBe(false); // an older branch: the ring moved past it
  });
});
