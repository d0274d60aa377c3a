// `gemma-edge convert`: a Hugging Face Gemma checkpoint (config.json, *.safetensors, optionally sharded with
// model.safetensors.index.json, tokenizer.model, tokenizer_config.json) to a GGUF laid out as llama.cpp's
// convert_hf_to_gguf.py writes Gemma: its tensor names, RMSNorm weights stored as 1 + w, its metadata keys, the
// SentencePiece vocabulary with scores and token types. Tensors are read by range and written one slab of rows at a
// time, so memory stays flat.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { GGML_TYPE } from "../engine/ggml-types.ts";
import { GGUF_VALUE } from "../engine/gguf.ts";
import type { MetaEntry, TensorToWrite } from "../engine/gguf-writer.ts";
import { bf16ToF32, f16ToF32, roundF16 } from "../engine/numeric.ts";
import { encodeRow } from "../engine/quant.ts";
import { FileByteSource } from "../hosts/node-file-source.ts";
import { gemmaMetadata } from "./gemma-metadata.ts";

export const CONVERT_TYPES: Record<string, number> = { f32: GGML_TYPE.F32, f16: GGML_TYPE.F16, q8_0: GGML_TYPE.Q8_0, q4_0: GGML_TYPE.Q4_0 };

export class ConvertError extends Error {}

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

// ---- tokenizer.model (SentencePiece ModelProto, protobuf) ---------------------------------------------------

/** SentencePiece piece types, which GGUF's token types number the same way (NORMAL 1 ... BYTE 6). */
export const SP_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface SpPiece {
  piece: string;
  score: number;
  type: number;
}

/** The pieces of a SentencePiece model (field 1 of ModelProto: piece = 1, score = 2, type = 3). */
export function parseSentencePieceModel(bytes: Uint8Array): SpPiece[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder("utf-8", { fatal: true });
  const varint = (buf: { pos: number }, end: number): number => {
    let v = 0, mul = 1;
    for (;;) {
      if (buf.pos >= end) throw new ConvertError("tokenizer.model: truncated protobuf");
      const b = bytes[buf.pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
  };
  const skip = (buf: { pos: number }, wire: number, end: number) => {
    if (wire === 0) varint(buf, end);
    else if (wire === 1) buf.pos += 8;
    else if (wire === 2) buf.pos += varint(buf, end);
    else if (wire === 5) buf.pos += 4;
    else throw new ConvertError(`tokenizer.model: unsupported protobuf wire type ${wire}`);
  };
  const pieces: SpPiece[] = [];
  const top = { pos: 0 };
  while (top.pos < bytes.length) {
    const tag = varint(top, bytes.length);
    if (tag >>> 3 !== 1 || (tag & 7) !== 2) {
      skip(top, tag & 7, bytes.length);
      continue;
    }
    const len = varint(top, bytes.length);
    const end = top.pos + len;
    if (end > bytes.length) throw new ConvertError("tokenizer.model: truncated protobuf");
    const p: SpPiece = { piece: "", score: 0, type: SP_TYPE.NORMAL };
    const m = { pos: top.pos };
    while (m.pos < end) {
      const t = varint(m, end);
      const field = t >>> 3, wire = t & 7;
      if (field === 1 && wire === 2) {
        const n = varint(m, end);
        p.piece = dec.decode(bytes.subarray(m.pos, m.pos + n));
        m.pos += n;
      } else if (field === 2 && wire === 5) {
        p.score = dv.getFloat32(m.pos, true);
        m.pos += 4;
      } else if (field === 3 && wire === 0) {
        p.type = varint(m, end);
      } else skip(m, wire, end);
    }
    top.pos = end;
    pieces.push(p);
  }
  if (pieces.length === 0) throw new ConvertError("tokenizer.model has no pieces");
  return pieces;
}

/** A SentencePiece ModelProto with just the pieces (what the test checkpoints need). */
export function writeSentencePieceModel(pieces: SpPiece[]): Uint8Array {
  const out: number[] = [];
  const varint = (v: number, to: number[]) => {
    while (v >= 0x80) {
      to.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    to.push(v);
  };
  const enc = new TextEncoder();
  for (const p of pieces) {
    const m: number[] = [];
    const s = enc.encode(p.piece);
    m.push(0x0a);
    varint(s.length, m);
    m.push(...s);
    const f = new Uint8Array(new Float32Array([p.score]).buffer);
    m.push(0x15, ...f);
    if (p.type !== SP_TYPE.NORMAL) m.push(0x18, p.type);
    out.push(0x0a);
    varint(m.length, out);
    out.push(...m);
  }
  return new Uint8Array(out);
}

// ---- the conversion -----------------------------------------------------------------------------------------

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
export async function prepareConvert(dir: string, target: number): Promise<{ metadata: MetaEntry[]; tensors: TensorToWrite[] }> {
  const cfg = (await readJson<HfConfig>(join(dir, "config.json"), true))!;
  const arch = cfg.architectures?.[0] ?? cfg.model_type;
  if (arch !== "GemmaForCausalLM" && cfg.model_type !== "gemma") throw new ConvertError(`config.json: architecture "${arch}" is not Gemma (GemmaForCausalLM); convert handles Gemma 1 checkpoints`);
  for (const k of ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "rms_norm_eps"] as const) {
    if (typeof cfg[k] !== "number") throw new ConvertError(`config.json: "${k}" is missing or not a number`);
  }
  const tcfg = (await readJson<TokenizerConfig>(join(dir, "tokenizer_config.json"), false)) ?? {};
  let spBytes: Uint8Array;
  try {
    spBytes = new Uint8Array(await readFile(join(dir, "tokenizer.model")));
  } catch (e) {
    throw new ConvertError(`cannot read ${join(dir, "tokenizer.model")}: ${(e as Error).message}`);
  }
  const pieces = parseSentencePieceModel(spBytes);

  // vocabulary as llama.cpp's _create_vocab_sentencepiece makes it
  const tokens = pieces.map((p) => p.piece);
  const scores = pieces.map((p) => p.score);
  const types: number[] = pieces.map((p) => (p.type === SP_TYPE.UNKNOWN || p.type === SP_TYPE.CONTROL || p.type === SP_TYPE.UNUSED || p.type === SP_TYPE.BYTE ? p.type : SP_TYPE.NORMAL));
  const vocabSize = Math.max(cfg.vocab_size ?? tokens.length, tokens.length);
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
      name: dir.split("/").filter(Boolean).at(-1) ?? "gemma", weightType: target, contextLength: cfg.max_position_embeddings,
      dim: cfg.hidden_size, nLayers: cfg.num_hidden_layers, hiddenDim: cfg.intermediate_size, nHeads: cfg.num_attention_heads,
      nKvHeads: cfg.num_key_value_heads ?? cfg.num_attention_heads, headDim, rmsEps: cfg.rms_norm_eps,
      // llama.cpp writes no freq_base for Gemma (10000, the default); a checkpoint with another theta keeps it
      ropeBase: cfg.rope_theta !== undefined && cfg.rope_theta !== 10000 ? cfg.rope_theta : undefined,
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
    tensors.push({ name: gguf, dims: [...shape].reverse(), type, data: () => convertRows(t, cols, type, isNorm) });
  };
  const { hidden_size: d, intermediate_size: ff, num_hidden_layers: L } = cfg;
  const qDim = cfg.num_attention_heads * headDim, kvDim = (cfg.num_key_value_heads ?? cfg.num_attention_heads) * headDim;
  take("model.embed_tokens.weight", "token_embd.weight", [vocabSize, d]);
  for (let l = 0; l < L; l++) {
    const h = `model.layers.${l}.`, g = `blk.${l}.`;
    take(`${h}input_layernorm.weight`, `${g}attn_norm.weight`, [d], true);
    take(`${h}self_attn.q_proj.weight`, `${g}attn_q.weight`, [qDim, d]);
    take(`${h}self_attn.k_proj.weight`, `${g}attn_k.weight`, [kvDim, d]);
    take(`${h}self_attn.v_proj.weight`, `${g}attn_v.weight`, [kvDim, d]);
    take(`${h}self_attn.o_proj.weight`, `${g}attn_output.weight`, [d, qDim]);
    take(`${h}post_attention_layernorm.weight`, `${g}ffn_norm.weight`, [d], true);
    take(`${h}mlp.gate_proj.weight`, `${g}ffn_gate.weight`, [ff, d]);
    take(`${h}mlp.up_proj.weight`, `${g}ffn_up.weight`, [ff, d]);
    take(`${h}mlp.down_proj.weight`, `${g}ffn_down.weight`, [d, ff]);
  }
  take("model.norm.weight", "output_norm.weight", [d], true);
  return { metadata, tensors };
}

/**
 * A tensor's rows in the target type, a slab at a time. Values go through f32 as llama.cpp's converter does (BF16 is
 * widened to f32 first; F16 stays f16, so Gemma's "+1" on norm weights rounds to f16 there).
 */
async function* convertRows(t: StTensor, cols: number, type: number, isNorm: boolean): AsyncGenerator<Uint8Array> {
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
      yield encodeRow(type, x);
    }
  } finally {
    await src.close();
  }
}
