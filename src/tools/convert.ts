// `gemma-edge convert`: a Hugging Face Gemma, Gemma 2 or Gemma 3 (text) checkpoint (config.json, *.safetensors,
// optionally sharded with model.safetensors.index.json, tokenizer.model or tokenizer.json, tokenizer_config.json) to
// a GGUF laid out as llama.cpp's converter writes each: its tensor names, RMSNorm weights stored as 1 + w, its metadata keys, the
// SentencePiece vocabulary with scores and token types. Tensors are read by range and written one slab of rows at a
// time, so memory stays flat.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { GGML_TYPE } from "../engine/ggml-types.ts";
import { GGUF_VALUE } from "../engine/gguf.ts";
import type { MetaEntry, TensorToWrite } from "../engine/gguf-writer.ts";
import { bf16ToF32, f16ToF32, roundF16 } from "../engine/numeric.ts";
import { encodeRow, type RowEncoder } from "../engine/quant.ts";
import { FileByteSource } from "../hosts/node-file-source.ts";
import { ConvertError, parseSentencePieceModel, piecesFromTokenizerJson, SP_TYPE, type SpPiece } from "./checkpoint-vocab.ts";
import { gemmaMetadata, type GemmaHparams } from "./gemma-metadata.ts";

export { ConvertError, parseSentencePieceModel, SP_TYPE, writeSentencePieceModel, type SpPiece } from "./checkpoint-vocab.ts";

export const CONVERT_TYPES: Record<string, number> = { f32: GGML_TYPE.F32, f16: GGML_TYPE.F16, q8_0: GGML_TYPE.Q8_0, q4_0: GGML_TYPE.Q4_0 };


// ---- safetensors ------------------------------------------------------------------------------------------

interface StTensor {
  file: string;
  dtype: "F32" | "F16" | "BF16";
  shape: number[];
  /** Absolute byte offset of the data in its file. */
  offset: number;
  nbytes: number;
}

async function readSafetensorsHeader(path: string): Promise<Map<string, StTensor>> {
  const src = await FileByteSource.open(path).catch(() => {
    throw new ConvertError(`cannot open ${path}`);
  });
  try {
    if (src.size < 8) throw new ConvertError(`${path} is not a safetensors file (too short)`);
    const n = Number(new DataView((await src.read(0, 8)).buffer).getBigUint64(0, true));
    if (n > 100 << 20 || 8 + n > src.size) throw new ConvertError(`${path}: bad safetensors header length ${n}`);
    let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    try {
      header = JSON.parse(new TextDecoder().decode(await src.read(8, n)));
    } catch {
      throw new ConvertError(`${path}: the safetensors header is not JSON`);
    }
    const out = new Map<string, StTensor>();
    for (const [name, t] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") throw new ConvertError(`${path}: tensor "${name}" has dtype ${t.dtype}; convert reads F32, F16 and BF16`);
      const [a, b] = t.data_offsets;
      const width = t.dtype === "F32" ? 4 : 2;
      if (b - a !== t.shape.reduce((x, y) => x * y, 1) * width || 8 + n + b > src.size) throw new ConvertError(`${path}: tensor "${name}" has a bad size or lies past the end of the file`);
      out.set(name, { file: path, dtype: t.dtype, shape: t.shape, offset: 8 + n + a, nbytes: b - a });
    }
    return out;
  } finally {
    await src.close();
  }
}

async function readCheckpointTensors(dir: string): Promise<Map<string, StTensor>> {
  const index = join(dir, "model.safetensors.index.json");
  let files: string[];
  try {
    const map = (JSON.parse(await readFile(index, "utf8")) as { weight_map: Record<string, string> }).weight_map;
    files = [...new Set(Object.values(map))].sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new ConvertError(`${index}: ${(e as Error).message}`);
    files = ["model.safetensors"];
  }
  const all = new Map<string, StTensor>();
  for (const f of files) for (const [k, v] of await readSafetensorsHeader(join(dir, f))) all.set(k, v);
  return all;
}

interface RopeParams {
  rope_type?: string;
  type?: string;
  factor?: number;
  rope_theta?: number;
}

interface HfConfig {
  architectures?: string[];
  model_type?: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta?: number;
  vocab_size?: number;
  // Gemma 2 and 3
  attn_logit_softcapping?: number | null;
  final_logit_softcapping?: number | null;
  sliding_window?: number | null;
  sliding_window_pattern?: number;
  layer_types?: string[];
  rope_local_base_freq?: number;
  rope_scaling?: RopeParams | null;
  /** Newer transformers: { full_attention: { rope_type, factor, rope_theta }, sliding_attention: { rope_theta } }. */
  rope_parameters?: (RopeParams & { full_attention?: RopeParams; sliding_attention?: RopeParams }) | null;
  bos_token_id?: number;
  eos_token_id?: number | number[];
  pad_token_id?: number;
}

interface TokenizerConfig {
  add_bos_token?: boolean;
  add_eos_token?: boolean;
  chat_template?: string | { name: string; template: string }[];
  added_tokens_decoder?: Record<string, { content: string; special?: boolean }>;
}

async function readJson<T>(path: string, required: boolean): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConvertError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new ConvertError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Added tokens that some checkpoints do not mark special but llama.cpp's converter treats as control tokens. */
function looksSpecial(t: string): boolean {
  return ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) || (t.startsWith("<|") && t.endsWith("|>")) ||
    (t.startsWith("<\uff5c") && t.endsWith("\uff5c>")) || (t.startsWith("<unused") && t.endsWith(">"));
}

/** Reads a checkpoint and returns what to write: GGUF metadata and tensors (streamed from the safetensors). */
export async function prepareConvert(dir: string, target: number, encode: RowEncoder = encodeRow): Promise<{ metadata: MetaEntry[]; tensors: TensorToWrite[] }> {
  const cfg = (await readJson<HfConfig>(join(dir, "config.json"), true))!;
  const hfArch = cfg.architectures?.[0] ?? cfg.model_type;
  const ARCHS: Record<string, "gemma" | "gemma2" | "gemma3"> = { GemmaForCausalLM: "gemma", Gemma2ForCausalLM: "gemma2", Gemma3ForCausalLM: "gemma3" };
  const arch = hfArch ? ARCHS[hfArch] : undefined;
  if (!arch) {
    const why = hfArch === "Gemma3ForConditionalGeneration" ? ": it holds a vision tower too; convert its text model (Gemma3ForCausalLM)" : hfArch?.startsWith("Gemma3n") ? ": Gemma 3n is not supported" : "";
    throw new ConvertError(`config.json: architecture "${hfArch}" is not supported${why}; convert handles GemmaForCausalLM, Gemma2ForCausalLM and Gemma3ForCausalLM`);
  }
  for (const k of ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "rms_norm_eps"] as const) {
    if (typeof cfg[k] !== "number") throw new ConvertError(`config.json: "${k}" is missing or not a number`);
  }
  const tcfg = (await readJson<TokenizerConfig>(join(dir, "tokenizer_config.json"), false)) ?? {};
  // the vocabulary: tokenizer.model, or else a SentencePiece-style tokenizer.json (tokenizer-json.ts)
  let pieces: SpPiece[];
  const spPath = join(dir, "tokenizer.model"), tjPath = join(dir, "tokenizer.json");
  if (existsSync(spPath) || !existsSync(tjPath)) {
    let spBytes: Uint8Array;
    try {
      spBytes = new Uint8Array(await readFile(spPath));
    } catch (e) {
      throw new ConvertError(`cannot read ${spPath} (nor is there a tokenizer.json): ${(e as Error).message}`);
    }
    pieces = parseSentencePieceModel(spBytes);
  } else {
    pieces = piecesFromTokenizerJson(await readJson(tjPath, true), cfg.vocab_size);
  }

  // vocabulary as llama.cpp's _create_vocab_sentencepiece makes it
  const tokens = pieces.map((p) => p.piece);
  const scores = pieces.map((p) => p.score);
  const types: number[] = pieces.map((p) => (p.type === SP_TYPE.UNKNOWN || p.type === SP_TYPE.CONTROL || p.type === SP_TYPE.UNUSED || p.type === SP_TYPE.BYTE ? p.type : SP_TYPE.NORMAL));
  // Gemma 3's converter drops embedding rows past the vocabulary (its checkpoints pad them); the others pad the vocabulary
  const vocabSize = arch === "gemma3" ? tokens.length : Math.max(cfg.vocab_size ?? tokens.length, tokens.length);
  for (let i = tokens.length; i < vocabSize; i++) {
    tokens.push(`[PAD${i}]`);
    scores.push(-1000);
    types.push(SP_TYPE.UNUSED);
  }
  // added tokens: special ones (or ones that look special) are control tokens, the rest user-defined with "▁" as space
  for (const [id, t] of Object.entries(tcfg.added_tokens_decoder ?? {})) {
    const i = Number(id);
    if (!Number.isInteger(i) || i < 0 || i >= vocabSize || typeof t.content !== "string") continue;
    if (t.special || looksSpecial(t.content)) {
      tokens[i] = t.content;
      types[i] = SP_TYPE.CONTROL;
    } else {
      tokens[i] = t.content.replaceAll("\u2581", " ");
      types[i] = SP_TYPE.USER_DEFINED;
    }
  }

  const headDim = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
  const U32 = GGUF_VALUE.UINT32;
  const metadata: MetaEntry[] = [
    ...gemmaMetadata({
      arch, name: dir.split("/").filter(Boolean).at(-1) ?? "gemma", weightType: target, contextLength: cfg.max_position_embeddings,
      dim: cfg.hidden_size, nLayers: cfg.num_hidden_layers, hiddenDim: cfg.intermediate_size, nHeads: cfg.num_attention_heads,
      nKvHeads: cfg.num_key_value_heads ?? cfg.num_attention_heads, headDim, rmsEps: cfg.rms_norm_eps,
      ...archMetadata(arch, cfg),
    }),
    { key: "tokenizer.ggml.model", type: GGUF_VALUE.STRING, value: "llama" },
    { key: "tokenizer.ggml.tokens", type: GGUF_VALUE.ARRAY, value: { itemType: GGUF_VALUE.STRING, items: tokens } },
    { key: "tokenizer.ggml.scores", type: GGUF_VALUE.ARRAY, value: { itemType: GGUF_VALUE.FLOAT32, items: scores } },
    { key: "tokenizer.ggml.token_type", type: GGUF_VALUE.ARRAY, value: { itemType: GGUF_VALUE.INT32, items: types } },
  ];
  const special = (key: string, id: number | undefined) => {
    if (id !== undefined && Number.isInteger(id) && id >= 0 && id < vocabSize) metadata.push({ key: `tokenizer.ggml.${key}_token_id`, type: U32, value: id });
  };
  special("bos", cfg.bos_token_id);
  special("eos", Array.isArray(cfg.eos_token_id) ? cfg.eos_token_id[0] : cfg.eos_token_id);
  special("unknown", types.indexOf(SP_TYPE.UNKNOWN) >= 0 ? types.indexOf(SP_TYPE.UNKNOWN) : undefined);
  special("padding", cfg.pad_token_id);
  // llama.cpp's converter sets CodeGemma's fill-in-the-middle ids and <end_of_turn> as EOT for every Gemma checkpoint
  for (const [k, id] of [["prefix", 67], ["suffix", 69], ["middle", 68], ["fsep", 70], ["eot", 107]] as const) special(k, id);
  metadata.push(
    { key: "tokenizer.ggml.add_bos_token", type: GGUF_VALUE.BOOL, value: tcfg.add_bos_token ?? true },
    { key: "tokenizer.ggml.add_eos_token", type: GGUF_VALUE.BOOL, value: tcfg.add_eos_token ?? false },
    { key: "tokenizer.ggml.add_space_prefix", type: GGUF_VALUE.BOOL, value: false },
  );
  const tpl = Array.isArray(tcfg.chat_template) ? tcfg.chat_template.find((t) => t.name === "default")?.template : tcfg.chat_template;
  if (typeof tpl === "string") metadata.push({ key: "tokenizer.chat_template", type: GGUF_VALUE.STRING, value: tpl });

  // tensors: HF names to llama.cpp's, in llama.cpp's order for Gemma
  const st = await readCheckpointTensors(dir);
  const tensors: TensorToWrite[] = [];
  const take = (hf: string, gguf: string, shape: number[], isNorm = false) => {
    const t = st.get(hf);
    if (!t) throw new ConvertError(`the checkpoint has no tensor "${hf}"`);
    if (t.shape.join("x") !== shape.join("x")) throw new ConvertError(`tensor "${hf}" has shape [${t.shape}], expected [${shape}] from config.json`);
    const cols = shape.at(-1)!;
    const type = shape.length === 1 ? GGML_TYPE.F32 : target;
    if ((type === GGML_TYPE.Q4_0 || type === GGML_TYPE.Q8_0) && cols % 32 !== 0) throw new ConvertError(`tensor "${hf}": ${cols} columns is not a multiple of 32`);
    tensors.push({ name: gguf, dims: [...shape].reverse(), type, data: () => convertRows(t, cols, type, isNorm, encode) });
  };
  const { hidden_size: d, intermediate_size: ff, num_hidden_layers: L } = cfg;
  const qDim = cfg.num_attention_heads * headDim, kvDim = (cfg.num_key_value_heads ?? cfg.num_attention_heads) * headDim;
  const embed = st.get("model.embed_tokens.weight");
  if (arch === "gemma3" && embed && embed.shape.length === 2 && embed.shape[0]! > vocabSize) {
    // the rows past the vocabulary are left out: the first vocabSize rows are a prefix of the tensor's bytes
    st.set("model.embed_tokens.weight", { ...embed, shape: [vocabSize, embed.shape[1]!], nbytes: (embed.nbytes / embed.shape[0]!) * vocabSize });
  }
  take("model.embed_tokens.weight", "token_embd.weight", [vocabSize, d]);
  for (let l = 0; l < L; l++) {
    const h = `model.layers.${l}.`, g = `blk.${l}.`;
    take(`${h}input_layernorm.weight`, `${g}attn_norm.weight`, [d], true);
    take(`${h}self_attn.q_proj.weight`, `${g}attn_q.weight`, [qDim, d]);
    take(`${h}self_attn.k_proj.weight`, `${g}attn_k.weight`, [kvDim, d]);
    take(`${h}self_attn.v_proj.weight`, `${g}attn_v.weight`, [kvDim, d]);
    take(`${h}self_attn.o_proj.weight`, `${g}attn_output.weight`, [d, qDim]);
    if (arch === "gemma3") {
      take(`${h}self_attn.q_norm.weight`, `${g}attn_q_norm.weight`, [headDim], true);
      take(`${h}self_attn.k_norm.weight`, `${g}attn_k_norm.weight`, [headDim], true);
    }
    if (arch === "gemma") take(`${h}post_attention_layernorm.weight`, `${g}ffn_norm.weight`, [d], true);
    else {
      // Gemma 2 and 3: post_attention_layernorm is the norm after attention; the feed-forward has one before and after
      take(`${h}post_attention_layernorm.weight`, `${g}post_attention_norm.weight`, [d], true);
      take(`${h}pre_feedforward_layernorm.weight`, `${g}ffn_norm.weight`, [d], true);
    }
    take(`${h}mlp.gate_proj.weight`, `${g}ffn_gate.weight`, [ff, d]);
    take(`${h}mlp.up_proj.weight`, `${g}ffn_up.weight`, [ff, d]);
    take(`${h}mlp.down_proj.weight`, `${g}ffn_down.weight`, [d, ff]);
    if (arch !== "gemma") take(`${h}post_feedforward_layernorm.weight`, `${g}post_ffw_norm.weight`, [d], true);
  }
  take("model.norm.weight", "output_norm.weight", [d], true);
  return { metadata, tensors };
}

/**
 * The keys of Gemma 2 and 3 beyond Gemma 1's, from config.json as llama.cpp's converter writes them
 * (conversion/gemma.py): Gemma 2's soft-caps and window; Gemma 3's RoPE bases, linear scaling, window and
 * optional final soft-cap. Gemma 3's 5:1 layer pattern is not written (llama.cpp hard-codes it): a checkpoint
 * whose layer_types say otherwise is refused.
 */
function archMetadata(arch: "gemma" | "gemma2" | "gemma3", cfg: HfConfig): Partial<GemmaHparams> {
  if (arch === "gemma") {
    // llama.cpp writes no freq_base for Gemma (10000, the default); a checkpoint with another theta keeps it
    return { ropeBase: cfg.rope_theta !== undefined && cfg.rope_theta !== 10000 ? cfg.rope_theta : undefined };
  }
  if (arch === "gemma2") {
    for (const k of ["attn_logit_softcapping", "final_logit_softcapping", "sliding_window"] as const) {
      if (typeof cfg[k] !== "number") throw new ConvertError(`config.json: Gemma 2's "${k}" is missing or not a number`);
    }
    return { attnSoftcap: cfg.attn_logit_softcapping!, finalSoftcap: cfg.final_logit_softcapping!, window: cfg.sliding_window! };
  }
  if (cfg.layer_types) {
    const bad = cfg.layer_types.findIndex((t, l) => (t === "sliding_attention") !== (l % 6 < 5));
    if (bad >= 0) throw new ConvertError(`config.json: layer_types[${bad}] is "${cfg.layer_types[bad]}", but llama.cpp's Gemma 3 has five sliding-window layers to one global`);
  }
  // RoPE as llama.cpp's converter reads it (conversion/base.py): rope_parameters, else rope_scaling; the global
  // layers' part under full_attention when there is one, the local layers' base under sliding_attention
  const rp: NonNullable<HfConfig["rope_parameters"]> = cfg.rope_parameters ?? cfg.rope_scaling ?? {};
  const full = rp.full_attention ?? rp;
  const kind = full.rope_type ?? full.type;
  if (kind !== undefined && kind !== "linear" && kind !== "default") throw new ConvertError(`config.json: RoPE scaling of type "${kind}" is not supported (only linear)`);
  return {
    ropeBase: full.rope_theta ?? cfg.rope_theta ?? 1000000,
    ropeBaseLocal: rp.sliding_attention?.rope_theta ?? cfg.rope_local_base_freq,
    ropeScaling: kind === "linear" ? full.factor : undefined,
    window: cfg.sliding_window_pattern !== 1 && typeof cfg.sliding_window === "number" ? cfg.sliding_window : undefined,
    finalSoftcap: cfg.final_logit_softcapping ?? undefined,
  };
}

/**
 * A tensor's rows in the target type, a slab at a time. Values go through f32 as llama.cpp's converter does (BF16 is
 * widened to f32 first; F16 stays f16, so Gemma's "+1" on norm weights rounds to f16 there).
 */
async function* convertRows(t: StTensor, cols: number, type: number, isNorm: boolean, encode: RowEncoder): AsyncGenerator<Uint8Array> {
  const width = t.dtype === "F32" ? 4 : 2;
  const rows = t.nbytes / width / cols;
  const rowsPerSlab = Math.max(1, Math.floor((1 << 22) / cols));
  const src = await FileByteSource.open(t.file);
  try {
    for (let r = 0; r < rows; r += rowsPerSlab) {
      const n = Math.min(rowsPerSlab, rows - r);
      const raw = await src.read(t.offset + r * cols * width, n * cols * width);
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      const x = new Float32Array(n * cols);
      for (let i = 0; i < x.length; i++) {
        const v = t.dtype === "F32" ? dv.getFloat32(i * 4, true) : t.dtype === "F16" ? f16ToF32(dv.getUint16(i * 2, true)) : bf16ToF32(dv.getUint16(i * 2, true));
        x[i] = isNorm ? (t.dtype === "F16" ? roundF16(v + 1) : Math.fround(v + 1)) : v;
      }
      yield encode(type, x);
    }
  } finally {
    await src.close();
  }
}
