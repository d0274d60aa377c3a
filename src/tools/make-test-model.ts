// Gemma-architecture GGUF files with deterministic random weights, for tests and benchmarks. The bytes are
// synthetic; everything that reads them is the real engine. Layer weights are scaled so that the layers,
// not the embedding of the last token, decide the next token (with N(0, 0.02) weights every implementation,
// right or wrong, repeats the prompt and a comparison proves nothing).
import { GEMMA_CHAT_TEMPLATE } from "../engine/chat-template.ts";
import type { Architecture } from "../engine/config.ts";
import { GGML_TYPE, ggmlTypeName, typeLayout } from "../engine/ggml-types.ts";
import { fallbackType, WEIGHT_MIXES, type WeightMix } from "./weight-mix.ts";

export { WEIGHT_MIXES };
import { GGUF_VALUE } from "../engine/gguf.ts";
import { writeGguf, type MetaEntry, type TensorToWrite } from "../engine/gguf-writer.ts";
import { encodeRow, type RowEncoder } from "../engine/quant.ts";
import { mulberry32 } from "../engine/sampler.ts";
import { gemmaMetadata } from "./gemma-metadata.ts";
import { buildVocab } from "./synthetic-vocab.ts";

export interface TestModelShape {
  /** Default "gemma" (Gemma 1). */
  arch?: Architecture;
  vocabSize: number;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  contextLength: number;
  /** RoPE on only the first ropeDims dimensions of each head (written as gemma.rope.dimension_count). */
  ropeDims?: number;
  /** Gemma 2 and 3: what the converter writes (see gemma-metadata.ts). */
  window?: number;
  attnSoftcap?: number;
  finalSoftcap?: number;
  ropeBase?: number;
  ropeBaseLocal?: number;
  ropeScaling?: number;
}

export const SHAPES: Record<string, TestModelShape> = {
  // 1 KV head (multi-query, as Gemma-2B)
  tiny: { vocabSize: 1024, dim: 128, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 1, headDim: 32, contextLength: 512 },
  // grouped-query: 1 < KV heads < heads, head_dim * heads != dim (as Gemma-7B's 16 x 256 != 3072)
  "tiny-gqa": { vocabSize: 1536, dim: 96, hiddenDim: 320, nLayers: 3, nHeads: 4, nKvHeads: 2, headDim: 32, contextLength: 512 },
  // every matrix a multiple of 256 columns (K-quant super-blocks)
  "tiny-k": { vocabSize: 1024, dim: 256, hiddenDim: 512, nLayers: 3, nHeads: 4, nKvHeads: 1, headDim: 64, contextLength: 512 },
  "gemma-2b": { vocabSize: 256000, dim: 2048, hiddenDim: 16384, nLayers: 18, nHeads: 8, nKvHeads: 1, headDim: 256, contextLength: 8192 },
  // Gemma 2: 4 layers (local, global, local, global), a 16-position window, soft-caps low enough to bend scores
  "tiny-gemma2": {
    arch: "gemma2", vocabSize: 1024, dim: 128, hiddenDim: 256, nLayers: 4, nHeads: 4, nKvHeads: 2, headDim: 32, contextLength: 512,
    window: 16, attnSoftcap: 8, finalSoftcap: 5,
  },
  // Gemma 3: 6 layers (5 local, 1 global), a 16-position window, RoPE bases 1M (global) and 10k (local)
  "tiny-gemma3": {
    arch: "gemma3", vocabSize: 1024, dim: 128, hiddenDim: 256, nLayers: 6, nHeads: 4, nKvHeads: 1, headDim: 32, contextLength: 512,
    window: 16, ropeBase: 1000000, ropeBaseLocal: 10000,
  },
  // real shapes, for benchmarks (Gemma 2 2B; Gemma 3 1B and 270M: hidden sizes that are not multiples of 256)
  "gemma-2-2b": {
    arch: "gemma2", vocabSize: 256000, dim: 2304, hiddenDim: 9216, nLayers: 26, nHeads: 8, nKvHeads: 4, headDim: 256, contextLength: 8192,
    window: 4096, attnSoftcap: 50, finalSoftcap: 30,
  },
  "gemma-3-1b": {
    arch: "gemma3", vocabSize: 262144, dim: 1152, hiddenDim: 6912, nLayers: 26, nHeads: 4, nKvHeads: 1, headDim: 256, contextLength: 32768,
    window: 512, ropeBase: 1000000, ropeBaseLocal: 10000,
  },
  "gemma-3-270m": {
    arch: "gemma3", vocabSize: 262144, dim: 640, hiddenDim: 2048, nLayers: 18, nHeads: 4, nKvHeads: 1, headDim: 256, contextLength: 32768,
    window: 512, ropeBase: 1000000, ropeBaseLocal: 10000,
  },
};

export const WEIGHT_TYPES: Record<string, number> = {
  q4_0: GGML_TYPE.Q4_0, q8_0: GGML_TYPE.Q8_0, f16: GGML_TYPE.F16, bf16: GGML_TYPE.BF16, f32: GGML_TYPE.F32,
  q4_k: GGML_TYPE.Q4_K, q5_k: GGML_TYPE.Q5_K, q6_k: GGML_TYPE.Q6_K, q4_1: GGML_TYPE.Q4_1, q5_0: GGML_TYPE.Q5_0, q5_1: GGML_TYPE.Q5_1,
};

export interface TestModelOptions {
  shape: TestModelShape;
  type: number;
  /** Per-matrix types (then `type` is mix.type). */
  mix?: WeightMix;
  seed: number;
  chatTemplate?: string | null;
  name?: string;
  /** The quantizer (default quant.ts encodeRow; the CLI passes the WebAssembly one, the same bytes faster). */
  encode?: RowEncoder;
}

function hash(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Rows of uniform noise with standard deviation `std` (+ `mean`), generated a slab at a time. */
function* randomRows(encode: RowEncoder, name: string, seed: number, rows: number, cols: number, type: number, std: number, mean = 0) {
  const rand = mulberry32(hash(name, seed));
  const a = std * Math.sqrt(3);
  const rowsPerSlab = Math.max(1, Math.floor((1 << 22) / cols));
  for (let r = 0; r < rows; r += rowsPerSlab) {
    const n = Math.min(rowsPerSlab, rows - r);
    const x = new Float32Array(n * cols);
    for (let i = 0; i < x.length; i++) x[i] = mean + (rand() * 2 - 1) * a;
    yield encode(type, x);
  }
}

export function testModelTensors(o: TestModelOptions): TensorToWrite[] {
  const s = o.shape;
  const qDim = s.nHeads * s.headDim;
  const kvDim = s.nKvHeads * s.headDim;
  const out: TensorToWrite[] = [];
  const encode = o.encode ?? encodeRow;
  const mat = (name: string, rows: number, cols: number, std: number) => {
    // a mix falls back as llama.cpp's quantizer does on rows that are not a multiple of 256 (a Gemma-3-1B shape)
    const type = o.mix ? fallbackType(o.mix.typeOf(name, s.nLayers), cols) : o.type;
    const block = typeLayout(type).blockSize;
    if (cols % block !== 0) throw new Error(`${name}: ${cols} columns is not a multiple of ${block}, required by ${ggmlTypeName(type)}`);
    out.push({ name, dims: [cols, rows], type, data: () => randomRows(encode, name, o.seed, rows, cols, type, std) });
  };
  // Norm weights as stored in GGUF (1 + w already applied by llama.cpp's converter): around `mean`.
  const norm = (name: string, mean: number, n = s.dim) =>
    out.push({ name, dims: [n], type: GGML_TYPE.F32, data: () => randomRows(encode, name, o.seed, 1, n, GGML_TYPE.F32, 0.1 * mean, mean) });
  const arch = s.arch ?? "gemma";

  const GAIN = 16; // residual-branch gain: the layers, not the last token's embedding, decide
  mat("token_embd.weight", s.vocabSize, s.dim, 1 / Math.sqrt(s.dim));
  for (let l = 0; l < s.nLayers; l++) {
    const p = `blk.${l}.`;
    norm(`${p}attn_norm.weight`, 1);
    mat(`${p}attn_q.weight`, qDim, s.dim, 1 / Math.sqrt(s.dim));
    mat(`${p}attn_k.weight`, kvDim, s.dim, 1 / Math.sqrt(s.dim));
    mat(`${p}attn_v.weight`, kvDim, s.dim, 1 / Math.sqrt(s.dim));
    mat(`${p}attn_output.weight`, s.dim, qDim, GAIN / Math.sqrt(qDim));
    // Gemma 3's QK-norm; Gemma 2 and 3's norms after each block (they undo GAIN: a mean of 4 makes up for it)
    if (arch === "gemma3") norm(`${p}attn_q_norm.weight`, 2, s.headDim), norm(`${p}attn_k_norm.weight`, 2, s.headDim);
    if (arch !== "gemma") norm(`${p}post_attention_norm.weight`, 4);
    norm(`${p}ffn_norm.weight`, 1);
    mat(`${p}ffn_gate.weight`, s.hiddenDim, s.dim, 1 / Math.sqrt(s.dim));
    mat(`${p}ffn_up.weight`, s.hiddenDim, s.dim, 1 / Math.sqrt(s.dim));
    mat(`${p}ffn_down.weight`, s.dim, s.hiddenDim, GAIN / Math.sqrt(s.hiddenDim));
    if (arch !== "gemma") norm(`${p}post_ffw_norm.weight`, 4);
  }
  norm("output_norm.weight", 4); // sharper next-token distributions: clear greedy choices
  return out;
}

export function testModelMetadata(o: TestModelOptions): MetaEntry[] {
  const s = o.shape;
  const v = buildVocab(s.vocabSize);
  const U32 = GGUF_VALUE.UINT32;
  const m: MetaEntry[] = [
    ...gemmaMetadata({
      arch: s.arch, name: o.name ?? "gemma-edge test model", weightType: o.type, fileType: o.mix?.fileType, contextLength: s.contextLength, dim: s.dim,
      nLayers: s.nLayers, hiddenDim: s.hiddenDim, nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: s.headDim, rmsEps: 1e-6, ropeDims: s.ropeDims,
      window: s.window, attnSoftcap: s.attnSoftcap, finalSoftcap: s.finalSoftcap, ropeBase: s.ropeBase, ropeBaseLocal: s.ropeBaseLocal,
      ropeScaling: s.ropeScaling,
    }),
    { key: "tokenizer.ggml.model", type: GGUF_VALUE.STRING, value: "llama" },
    { key: "tokenizer.ggml.tokens", type: GGUF_VALUE.ARRAY, value: { itemType: GGUF_VALUE.STRING, items: v.tokens } },
    { key: "tokenizer.ggml.scores", type: GGUF_VALUE.ARRAY, value: { itemType: GGUF_VALUE.FLOAT32, items: v.scores } },
    { key: "tokenizer.ggml.token_type", type: GGUF_VALUE.ARRAY, value: { itemType: GGUF_VALUE.INT32, items: v.types } },
    { key: "tokenizer.ggml.bos_token_id", type: U32, value: 2 },
    { key: "tokenizer.ggml.eos_token_id", type: U32, value: 1 },
    { key: "tokenizer.ggml.unknown_token_id", type: U32, value: 3 },
    { key: "tokenizer.ggml.padding_token_id", type: U32, value: 0 },
    { key: "tokenizer.ggml.add_bos_token", type: GGUF_VALUE.BOOL, value: true },
    { key: "tokenizer.ggml.add_eos_token", type: GGUF_VALUE.BOOL, value: false },
    { key: "tokenizer.ggml.add_space_prefix", type: GGUF_VALUE.BOOL, value: false },
  ];
  const tpl = o.chatTemplate === undefined ? GEMMA_CHAT_TEMPLATE : o.chatTemplate;
  if (tpl !== null) m.push({ key: "tokenizer.chat_template", type: GGUF_VALUE.STRING, value: tpl });
  return m;
}

/** Write a test model to `sink`; returns its size in bytes. */
export function writeTestModel(o: TestModelOptions, sink: (b: Uint8Array) => void | Promise<void>): Promise<number> {
  return writeGguf(sink, testModelMetadata(o), testModelTensors(o));
}

/** A whole test model in memory (tests with tiny shapes). */
export async function makeTestModelBytes(o: TestModelOptions): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const n = await writeTestModel(o, (b) => void parts.push(b.slice()));
  const out = new Uint8Array(n);
  let p = 0;
  for (const b of parts) {
    out.set(b, p);
    p += b.length;
  }
  return out;
}

