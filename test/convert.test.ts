// `gemma-edge convert`: a tiny HF Gemma checkpoint written by our own code, converted, then checked tensor by
// tensor, token by token against the generated GGUF's vocabulary, and by greedy generation with llama.cpp.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, beforeAll } from "vitest";
import { MemoryByteSource } from "../src/engine/byte-source.ts";
import { GGML_TYPE } from "../src/engine/ggml-types.ts";
import { readGguf, type GgufFile } from "../src/engine/gguf.ts";
import { f16ToF32, roundF16 } from "../src/engine/numeric.ts";
import { SHAPES } from "../src/tools/make-test-model.ts";
import { writeHfCheckpoint } from "./helpers/hf-checkpoint.ts";
import { runCli } from "./helpers/cli.ts";
import { greedyBothWays } from "./helpers/llama-cpp.ts";
import { testModel } from "./helpers/models.ts";

const run = (...args: string[]) => runCli(args);
const dir = mkdtempSync(join(tmpdir(), "gemma-edge-convert-"));
const hf = join(dir, "hf");
let values: Map<string, Float32Array>;
beforeAll(async () => {
  values = await writeHfCheckpoint(hf, SHAPES["tiny-gqa"]!, 11);
});

const gguf = async (path: string): Promise<{ file: GgufFile; bytes: Uint8Array }> => {
  const bytes = new Uint8Array(readFileSync(path));
  return { file: await readGguf(new MemoryByteSource(bytes)), bytes };
};

describe("gemma-edge convert --hf", () => {
  it("writes llama.cpp's layout: names, F16 weights, F32 norms as 1 + w, metadata, the vocabulary", async () => {
    const out = join(dir, "f16.gguf");
    const r = await run("convert", "--hf", hf, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^wrote .*f16\.gguf \([\d.]+ MB, f16, 29 tensors\) in [\d.]+ s, peak RSS \d+ MB\n$/);
    const { file, bytes } = await gguf(out);
    const s = SHAPES["tiny-gqa"]!;
    expect(file.metadata.get("general.architecture")).toBe("gemma");
    expect(file.metadata.get("general.file_type")).toBe(1);
    expect(file.metadata.get("gemma.attention.head_count_kv")).toBe(s.nKvHeads);
    expect(file.metadata.get("gemma.attention.key_length")).toBe(s.headDim);
    expect(file.metadata.get("gemma.context_length")).toBe(s.contextLength);
    expect(file.metadata.get("tokenizer.ggml.add_space_prefix")).toBe(false);
    expect([67, 69, 68, 70, 107]).toEqual(["prefix", "suffix", "middle", "fsep", "eot"].map((k) => file.metadata.get(`tokenizer.ggml.${k}_token_id`)));
    // the vocabulary is the one the generated GGUF of this shape carries (tokens, scores, types)
    const ref = (await readGguf(new MemoryByteSource((await testModel("tiny-gqa", "f32", 11)).bytes))).metadata;
    for (const k of ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"]) {
      expect(file.metadata.get(k), k).toEqual(ref.get(k));
    }
    // token types too, except that llama.cpp's converter makes added tokens that look special ("<unused12>") control
    // tokens even when tokenizer_config.json says special: false (the generated vocabulary has user-defined ones)
    const tokens = (ref.get("tokenizer.ggml.tokens") as { items: string[] }).items;
    const refTypes = (ref.get("tokenizer.ggml.token_type") as { items: number[] }).items;
    const wantTypes = refTypes.map((t, i) => (t === 4 && /^<unused\d+>$/.test(tokens[i]!) ? 3 : t));
    expect(wantTypes.filter((t, i) => t !== refTypes[i]).length).toBeGreaterThan(0);
    expect((file.metadata.get("tokenizer.ggml.token_type") as { items: number[] }).items).toEqual(wantTypes);
    const t = (name: string) => file.tensors.get(name)!;
    const emb = t("token_embd.weight");
    expect([emb.type, ...emb.dims]).toEqual([GGML_TYPE.F16, s.dim, s.vocabSize]);
    const e0 = new Uint16Array(bytes.buffer.slice(emb.offset, emb.offset + 2 * 64));
    const want = values.get("model.embed_tokens.weight")!;
    expect(Array.from(e0, f16ToF32)).toEqual(Array.from(want.subarray(0, 64), roundF16));
    const norm = t("blk.1.ffn_norm.weight");
    expect(norm.type).toBe(GGML_TYPE.F32);
    const n = new Float32Array(bytes.buffer.slice(norm.offset, norm.offset + 4 * s.dim));
    expect(Array.from(n)).toEqual(Array.from(values.get("model.layers.1.post_attention_layernorm.weight")!, (x) => Math.fround(x + 1)));
    expect([...file.tensors.keys()].slice(0, 4)).toEqual(["token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight"]);
  });

  it.each(["f16", "q8_0", "q4_0"])("llama.cpp and our engine generate the same greedy tokens from the %s conversion", async (type) => {
    const out = join(dir, `${type}.gguf`);
    expect((await run("convert", "--hf", hf, "--out", out, "--type", type)).code).toBe(0);
    for (const { ours, ref } of await greedyBothWays(out, ["Hello world", "Once upon a time"])) {
      expect(ours.length).toBeGreaterThan(0);
      expect(ours).toEqual(ref);
    }
  }, 60_000);

  // Gemma 2 and Gemma 3 checkpoints: their norms' names, Gemma 3's QK-norms, the keys llama.cpp's converter writes
  it.each([["gemma2", "f16"], ["gemma2", "q8_0"], ["gemma3", "f16"], ["gemma3", "q4_0"]] as const)("a %s checkpoint to %s: llama.cpp's keys, and llama.cpp's greedy tokens", async (arch, type) => {
    const shape = { ...SHAPES[`tiny-${arch}`]!, ...(arch === "gemma3" ? { ropeScaling: 8 } : {}) };
    const src = join(dir, `hf-${arch}`);
    await writeHfCheckpoint(src, shape, 12);
    const out = join(dir, `${arch}-${type}.gguf`);
    const r = await run("convert", "--hf", src, "--out", out, "--type", type);
    expect(r.code, r.stderr).toBe(0);
    const { file } = await gguf(out);
    const m = (k: string) => file.metadata.get(`${arch}.${k}`);
    expect(file.metadata.get("general.architecture")).toBe(arch);
    expect(m("attention.sliding_window")).toBe(16);
    if (arch === "gemma2") expect([m("attn_logit_softcapping"), m("final_logit_softcapping")]).toEqual([8, 5]);
    else {
      expect([m("rope.freq_base"), m("rope.freq_base_swa"), m("rope.scaling.type"), m("rope.scaling.factor"), m("final_logit_softcapping")]).toEqual([1000000, 10000, "linear", 8, undefined]);
      expect(file.tensors.get("blk.0.attn_q_norm.weight")?.dims).toEqual([shape.headDim]);
    }
    expect(file.tensors.has("blk.0.post_attention_norm.weight") && file.tensors.has("blk.0.post_ffw_norm.weight")).toBe(true);
    for (const { ours, ref } of await greedyBothWays(out, ["Hello world", "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun"])) {
      expect(ours.length).toBeGreaterThan(0);
      expect(ours).toEqual(ref);
    }
  }, 60_000);

  it("reads Gemma 3's RoPE from rope_parameters (newer transformers) as llama.cpp's converter does", async () => {
    const src = join(dir, "hf-gemma3-rope-parameters");
    await writeHfCheckpoint(src, SHAPES["tiny-gemma3"]!, 12);
    const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
    delete cfg.rope_theta;
    delete cfg.rope_local_base_freq;
    delete cfg.rope_scaling;
    cfg.rope_parameters = { full_attention: { rope_type: "linear", factor: 8, rope_theta: 1000000 }, sliding_attention: { rope_type: "default", rope_theta: 10000 } };
    writeFileSync(join(src, "config.json"), JSON.stringify(cfg));
    const out = join(dir, "gemma3-rope-parameters.gguf");
    expect((await run("convert", "--hf", src, "--out", out, "--type", "f16")).code).toBe(0);
    const { file } = await gguf(out);
    expect(["rope.freq_base", "rope.freq_base_swa", "rope.scaling.type", "rope.scaling.factor"].map((k) => file.metadata.get(`gemma3.${k}`))).toEqual([1000000, 10000, "linear", 8]);
  });

  it("names what is wrong with a checkpoint", async () => {
    const bad = join(dir, "bad");
    await writeHfCheckpoint(bad, SHAPES.tiny!, 1);
    const cfg = JSON.parse(readFileSync(join(bad, "config.json"), "utf8"));
    writeFileSync(join(bad, "config.json"), JSON.stringify({ ...cfg, architectures: ["LlamaForCausalLM"], model_type: "llama" }));
    expect((await run("convert", "--hf", bad, "--out", join(dir, "x.gguf"))).stderr).toMatch(/architecture "LlamaForCausalLM" is not supported; convert handles GemmaForCausalLM, Gemma2ForCausalLM and Gemma3ForCausalLM/);
    writeFileSync(join(bad, "config.json"), JSON.stringify({ ...cfg, hidden_size: 64 }));
    expect((await run("convert", "--hf", bad, "--out", join(dir, "x.gguf"))).stderr).toMatch(/tensor "model\.embed_tokens\.weight" has shape \[1024,128\], expected \[1024,64\]/);
    writeFileSync(join(bad, "config.json"), JSON.stringify(cfg));
    writeFileSync(join(bad, "config.json"), JSON.stringify({ ...cfg, architectures: ["Gemma3ForConditionalGeneration"] }));
    expect((await run("convert", "--hf", bad, "--out", join(dir, "x.gguf"))).stderr).toMatch(/"Gemma3ForConditionalGeneration" is not supported: it holds a vision tower too/);
    writeFileSync(join(bad, "config.json"), JSON.stringify(cfg));
    rmSync(join(bad, "tokenizer.model"));
    expect((await run("convert", "--hf", bad, "--out", join(dir, "x.gguf"))).stderr).toMatch(/cannot read .*tokenizer\.model \(nor is there a tokenizer\.json\)/);
    writeFileSync(join(bad, "tokenizer.json"), JSON.stringify({ model: { type: "Unigram", vocab: [] } }));
    expect((await run("convert", "--hf", bad, "--out", join(dir, "x.gguf"))).stderr).toMatch(/tokenizer\.json: expected a BPE model with a vocab and merges \(got Unigram\)/);
    expect((await run("convert", "--hf", hf, "--out", join(dir, "x.gguf"), "--type", "q5_k")).stderr).toMatch(/--type must be one of f32, f16, q8_0, q4_0, got "q5_k"/);
    expect(() => readFileSync(join(dir, "x.gguf"))).toThrow(); // nothing half-written
  });
});
