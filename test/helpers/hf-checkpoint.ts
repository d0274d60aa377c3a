// A tiny Hugging Face Gemma (1, 2 or 3) checkpoint written by our own code: the weights of a generated test model, stored as
// an HF checkpoint stores them (BF16 safetensors in two shards with an index, norm weights as w where GGUF holds
// 1 + w), a SentencePiece tokenizer.model (protobuf) with the test vocabulary, config.json, tokenizer_config.json.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GEMMA_CHAT_TEMPLATE } from "../../src/engine/chat-template.ts";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { f32ToBf16 } from "../../src/engine/numeric.ts";
import { SP_TYPE, writeSentencePieceModel } from "../../src/tools/convert.ts";
import { testModelTensors, type TestModelShape } from "../../src/tools/make-test-model.ts";
import { buildVocab } from "../../src/tools/synthetic-vocab.ts";

// Gemma 2 and 3 name their norms after what they follow: post_attention_layernorm is the one after attention there
const HF_NAME_2: [RegExp, string][] = [
  [/^blk\.(\d+)\.post_attention_norm\.weight$/, "model.layers.$1.post_attention_layernorm.weight"],
  [/^blk\.(\d+)\.ffn_norm\.weight$/, "model.layers.$1.pre_feedforward_layernorm.weight"],
  [/^blk\.(\d+)\.post_ffw_norm\.weight$/, "model.layers.$1.post_feedforward_layernorm.weight"],
  [/^blk\.(\d+)\.attn_q_norm\.weight$/, "model.layers.$1.self_attn.q_norm.weight"],
  [/^blk\.(\d+)\.attn_k_norm\.weight$/, "model.layers.$1.self_attn.k_norm.weight"],
];
const HF_NAME: [RegExp, string][] = [
  [/^token_embd\.weight$/, "model.embed_tokens.weight"],
  [/^output_norm\.weight$/, "model.norm.weight"],
  [/^blk\.(\d+)\.attn_norm\.weight$/, "model.layers.$1.input_layernorm.weight"],
  [/^blk\.(\d+)\.ffn_norm\.weight$/, "model.layers.$1.post_attention_layernorm.weight"],
  [/^blk\.(\d+)\.attn_q\.weight$/, "model.layers.$1.self_attn.q_proj.weight"],
  [/^blk\.(\d+)\.attn_k\.weight$/, "model.layers.$1.self_attn.k_proj.weight"],
  [/^blk\.(\d+)\.attn_v\.weight$/, "model.layers.$1.self_attn.v_proj.weight"],
  [/^blk\.(\d+)\.attn_output\.weight$/, "model.layers.$1.self_attn.o_proj.weight"],
  [/^blk\.(\d+)\.ffn_gate\.weight$/, "model.layers.$1.mlp.gate_proj.weight"],
  [/^blk\.(\d+)\.ffn_up\.weight$/, "model.layers.$1.mlp.up_proj.weight"],
  [/^blk\.(\d+)\.ffn_down\.weight$/, "model.layers.$1.mlp.down_proj.weight"],
];

function safetensors(tensors: { name: string; shape: number[]; data: Uint8Array }[]): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: "BF16", shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((json.length + 8) % 8)) % 8);
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const t of tensors) {
    out.set(t.data, p);
    p += t.data.length;
  }
  return out;
}

/**
 * Writes the checkpoint into `dir` (Gemma, Gemma 2 or Gemma 3 by shape.arch; with `tokenizerFiles`, those files
 * instead of our tokenizer.model and tokenizer_config.json); returns the HF-side f32 values of each tensor (after
 * BF16 rounding).
 */
export async function writeHfCheckpoint(dir: string, shape: TestModelShape, seed: number, tokenizerFiles?: Record<string, string>): Promise<Map<string, Float32Array>> {
  const arch = shape.arch ?? "gemma";
  mkdirSync(dir, { recursive: true });
  const values = new Map<string, Float32Array>();
  const shards: { name: string; shape: number[]; data: Uint8Array }[][] = [[], []];
  const weightMap: Record<string, string> = {};
  for (const t of testModelTensors({ shape, type: GGML_TYPE.F32, seed })) {
    const parts: Uint8Array[] = [];
    for await (const b of t.data()) parts.push(b.slice());
    const f32 = new Float32Array(Uint8Array.from(Buffer.concat(parts)).buffer);
    const isNorm = t.name.endsWith("norm.weight");
    const bf = new Uint16Array(f32.length);
    const back = new Float32Array(f32.length);
    for (let i = 0; i < f32.length; i++) {
      bf[i] = f32ToBf16(isNorm ? f32[i]! - 1 : f32[i]!);
      back[i] = new Float32Array(new Uint32Array([bf[i]! << 16]).buffer)[0]!;
    }
    const hf = [...(arch === "gemma" ? [] : HF_NAME_2), ...HF_NAME].reduce((n, [re, to]) => n.replace(re, to), t.name);
    values.set(hf, back);
    const shard = hf.includes("layers.0.") || hf.includes("embed") ? 0 : 1;
    shards[shard]!.push({ name: hf, shape: [...t.dims].reverse(), data: new Uint8Array(bf.buffer) });
    weightMap[hf] = `model-0000${shard + 1}-of-00002.safetensors`;
  }
  shards.forEach((s, i) => writeFileSync(join(dir, `model-0000${i + 1}-of-00002.safetensors`), safetensors(s)));
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));

  const archConfig = arch === "gemma2"
    ? { architectures: ["Gemma2ForCausalLM"], model_type: "gemma2", attn_logit_softcapping: shape.attnSoftcap ?? 50, final_logit_softcapping: shape.finalSoftcap ?? 30, sliding_window: shape.window ?? 4096, query_pre_attn_scalar: shape.headDim }
    : arch === "gemma3"
      ? {
        architectures: ["Gemma3ForCausalLM"], model_type: "gemma3_text", rope_theta: shape.ropeBase ?? 1000000, rope_local_base_freq: shape.ropeBaseLocal ?? 10000,
        sliding_window: shape.window ?? 512, sliding_window_pattern: 6, final_logit_softcapping: shape.finalSoftcap ?? null, query_pre_attn_scalar: shape.headDim,
        rope_scaling: shape.ropeScaling ? { rope_type: "linear", factor: shape.ropeScaling } : null,
      }
      : { architectures: ["GemmaForCausalLM"], model_type: "gemma", rope_theta: 10000 };
  writeFileSync(join(dir, "config.json"), JSON.stringify({
    hidden_size: shape.dim, intermediate_size: shape.hiddenDim, num_hidden_layers: shape.nLayers, num_attention_heads: shape.nHeads,
    num_key_value_heads: shape.nKvHeads, head_dim: shape.headDim, max_position_embeddings: shape.contextLength, rms_norm_eps: 1e-6,
    vocab_size: shape.vocabSize, bos_token_id: 2, eos_token_id: 1, pad_token_id: 0, torch_dtype: "bfloat16", hidden_act: "gelu", ...archConfig,
  }));
  if (tokenizerFiles) {
    for (const [name, path] of Object.entries(tokenizerFiles)) writeFileSync(join(dir, name), readFileSync(path));
    return values;
  }
  const v = buildVocab(shape.vocabSize);
  writeFileSync(join(dir, "tokenizer.model"), writeSentencePieceModel(v.tokens.map((piece, i) => ({ piece, score: v.scores[i]!, type: v.types[i]! }))));
  const added: Record<string, { content: string; special: boolean }> = {};
  v.types.forEach((t, i) => {
    if (t === SP_TYPE.CONTROL || t === SP_TYPE.USER_DEFINED) added[i] = { content: v.tokens[i]!, special: t === SP_TYPE.CONTROL };
  });
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ add_bos_token: true, add_eos_token: false, chat_template: GEMMA_CHAT_TEMPLATE, added_tokens_decoder: added }));
  return values;
}
