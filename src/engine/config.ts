// The Gemma architectures (Gemma 1, 2 and 3, text), mapped from GGUF metadata once: the rest of the engine
// reads only these names, and every backend takes each detail from here.
//
// What every Gemma computes (llama.cpp: src/models/gemma.cpp, gemma2.cpp, gemma3.cpp; the GGUF as its
// converter, conversion/gemma.py, writes it):
// - The embedding of each token is scaled by sqrt(dim) (an f32 multiply; the stored matrix is not scaled), and
//   the same matrix, token_embd, is the LM head (tied; a Gemma 3 file may carry its own `output.weight`).
// - Each norm is an RMSNorm (sum of squares in double, the rest in f32) times a weight the converter stored as
//   1 + w (HF's Gemma RMSNorm multiplies by 1 + w; llama.cpp's by w), so the engine multiplies by the stored w.
// - Attention: q, k, v projections; NeoX (rotate-half) RoPE on the first ropeDims dimensions of each head;
//   q scaled by qScale; keys and values cached as f16; query heads share KV heads in groups (GQA; MQA when
//   there is one KV head); ggml's flash attention with an f16 cache; the output projection.
// - Feed-forward: down(gelu_tanh(gate(x)) * up(x)) (GeGLU; GELU through ggml's f16 table).
// - Residuals around both blocks; a final RMSNorm before the LM head.
// What Gemma 2 adds:
// - RMSNorms after attention and after the feed-forward as well (post_attention_norm, post_ffw_norm), before
//   each residual add.
// - Soft-capping: attention scores as cap * tanh(s / cap) (gemma2.attn_logit_softcapping, 50 when absent),
//   inside flash attention; final logits the same way (gemma2.final_logit_softcapping, 30 when absent).
// - Sliding-window layers: layer l is local when l % period < period - 1 (period 2: even layers local;
//   gemma2.attention.sliding_window_pattern, hard-coded 2 when absent), seeing the last `window` positions
//   (gemma2.attention.sliding_window, 4096 when absent); the others see everything.
// - qScale = 1/sqrt(key_length), except for the 27B shape (46 layers) where it is 1/sqrt(dim / heads):
//   llama.cpp derives it from the layer count, not from query_pre_attn_scalar (which GGUFs do not carry).
// What Gemma 3 (text) changes from Gemma 2:
// - No attention soft-capping; final soft-capping only if the file says so (gemma3.final_logit_softcapping).
// - QK-norm: RMSNorm of each head of q and k (attn_q_norm, attn_k_norm, key_length long) before RoPE.
// - Five local layers to one global (period 6, hard-coded when the file has no pattern), window from
//   gemma3.attention.sliding_window (none at all when absent or 0: then every layer is global).
// - RoPE base gemma3.rope.freq_base (1M) on global layers, gemma3.rope.freq_base_swa (10,000 when absent) on
//   local ones; linear RoPE scaling (gemma3.rope.scaling.factor, with type linear) on global layers only.
// - qScale as Gemma 2, 27B shape = 62 layers.
import { GgufError, metaNumber, metaString, type GgufFile } from "./gguf.ts";

export type Architecture = "gemma" | "gemma2" | "gemma3";
export const ARCHITECTURES: readonly Architecture[] = ["gemma", "gemma2", "gemma3"];

export interface GemmaConfig {
  arch: Architecture; //   general.architecture
  dim: number; //          {arch}.embedding_length
  hiddenDim: number; //    {arch}.feed_forward_length
  nLayers: number; //      {arch}.block_count
  nHeads: number; //       {arch}.attention.head_count
  nKvHeads: number; //     {arch}.attention.head_count_kv (default: nHeads)
  headDim: number; //      {arch}.attention.key_length (never dim / nHeads: Gemma-7B has 16 x 256 != 3072)
  vocabSize: number; //    rows of token_embd.weight
  seqLen: number; //       {arch}.context_length
  normEps: number; //      {arch}.attention.layer_norm_rms_epsilon
  ropeTheta: number; //    {arch}.rope.freq_base (default 10000): global layers
  ropeDims: number; //     {arch}.rope.dimension_count: leading dims of each head that RoPE rotates (default headDim)
  /** Position scale of RoPE on global layers (1 / {arch}.rope.scaling.factor for linear scaling, else 1). */
  ropeScale: number;
  /** RoPE base and position scale on local (sliding-window) layers. */
  ropeThetaLocal: number;
  ropeScaleLocal: number;
  /** Positions a local layer sees (the query's own and window - 1 before it); 0: no local layers. */
  window: number;
  /** local[l]: layer l is a sliding-window layer. */
  local: boolean[];
  /** f32 factor applied to q after RoPE. */
  qScale: number;
  /** f32 factor applied to each token embedding: sqrt(dim) in f32. */
  embedScale: number;
  /** Soft-cap of attention scores and of the final logits (0: none). */
  attnSoftcap: number;
  finalSoftcap: number;
  /** RMSNorms after attention and after the feed-forward (Gemma 2 and 3). */
  postNorms: boolean;
  /** RMSNorm of each head of q and k before RoPE (Gemma 3). */
  qkNorm: boolean;
}

const fr = Math.fround;

/** Architectures that are Gemma but not these: refused by name rather than failing later. */
const REFUSED: Record<string, string> = {
  gemma3n: "Gemma 3n (per-layer embeddings, AltUp) is not supported",
  "gemma-embedding": "EmbeddingGemma is an embedding model; this engine generates text",
  gemma4: "Gemma 4 is not supported yet",
  clip: "this is a vision projector (mmproj) file, not a language model; load the text model's GGUF",
};

export function configFromGguf(f: GgufFile): GemmaConfig {
  const arch = metaString(f, "general.architecture");
  if (!(ARCHITECTURES as readonly string[]).includes(arch)) {
    const why = REFUSED[arch];
    throw new GgufError(`unsupported architecture "${arch}" (general.architecture)${why ? `: ${why}` : ""}; this engine runs ${ARCHITECTURES.join(", ")}`);
  }
  const a = arch as Architecture;
  const key = (k: string) => `${a}.${k}`;
  const num = (k: string, dflt?: number) => metaNumber(f, key(k), dflt);
  const dim = num("embedding_length");
  const nHeads = num("attention.head_count");
  const nLayers = num("block_count");
  const headDim = num("attention.key_length", Math.floor(dim / Math.max(nHeads, 1)));
  const valueLength = num("attention.value_length", headDim);
  const emb = f.tensors.get("token_embd.weight");
  if (!emb) throw new GgufError(`missing tensor "token_embd.weight"`);
  if (f.tensors.has("output.weight")) throw new GgufError(`the file has its own "output.weight" (an LM head not tied to token_embd), which this engine does not support`);
  const ropeTheta = num("rope.freq_base", 10000);

  // sliding-window layers (llama.cpp: llama_hparams::set_swa_pattern, and each model's load_arch_hparams)
  let window = 0;
  let period = 0;
  if (a === "gemma2") (window = num("attention.sliding_window", 4096)), (period = 2);
  if (a === "gemma3") (window = num("attention.sliding_window", 0)), (period = 6);
  const patternKey = key("attention.sliding_window_pattern");
  if (window > 0 && f.metadata.has(patternKey)) {
    const p = f.metadata.get(patternKey);
    if (typeof p !== "number" && typeof p !== "bigint") throw new GgufError(`${patternKey} must be a number (a per-layer array is not supported)`);
    period = Number(p);
  }
  const local = Array.from({ length: nLayers }, (_, l) => window > 0 && (period === 0 || l % period < period - 1));

  // RoPE scaling: llama.cpp reads rope.scaling.factor (else rope.scale_linear) as a linear factor; YaRN and
  // the others would need more than a factor, so they are refused
  const scalingKey = key("rope.scaling.type");
  const scalingType = f.metadata.has(scalingKey) ? metaString(f, scalingKey) : "linear";
  if (scalingType !== "none" && scalingType !== "linear") throw new GgufError(`${scalingKey} "${scalingType}" is not supported (only linear)`);
  const factor = scalingType === "none" ? 0 : num("rope.scaling.factor", num("rope.scale_linear", 0));
  const ropeScale = factor === 0 ? 1 : fr(1 / factor);
  // llama.cpp multiplies RoPE's cos and sin by rope.scaling.attn_factor; no Gemma file has one other than 1
  const attnFactor = num("rope.scaling.attn_factor", 1);
  if (attnFactor !== 1) throw new GgufError(`${key("rope.scaling.attn_factor")} = ${attnFactor} is not supported (only 1)`);

  const big = (a === "gemma2" && nLayers === 46) || (a === "gemma3" && nLayers === 62); // llama.cpp's LLM_TYPE_27B
  const cfg: GemmaConfig = {
    arch: a,
    dim,
    hiddenDim: num("feed_forward_length"),
    nLayers,
    nHeads,
    nKvHeads: num("attention.head_count_kv", nHeads),
    headDim,
    vocabSize: emb.dims[1] ?? 0,
    seqLen: num("context_length"),
    normEps: num("attention.layer_norm_rms_epsilon"),
    ropeTheta,
    ropeDims: num("rope.dimension_count", headDim),
    ropeScale,
    ropeThetaLocal: a === "gemma2" ? num("rope.freq_base_swa", ropeTheta) : num("rope.freq_base_swa", 10000),
    ropeScaleLocal: a === "gemma2" ? ropeScale : 1,
    window,
    local,
    qScale: fr(1 / fr(Math.sqrt(big ? Math.floor(dim / nHeads) : headDim))),
    embedScale: fr(Math.sqrt(dim)),
    attnSoftcap: a === "gemma2" ? num("attn_logit_softcapping", 50) : 0,
    finalSoftcap: a === "gemma2" ? num("final_logit_softcapping", 30) : a === "gemma3" ? num("final_logit_softcapping", 0) : 0,
    postNorms: a !== "gemma",
    qkNorm: a === "gemma3",
  };
  for (const k of ["dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "headDim", "vocabSize", "seqLen", "ropeDims"] as const) {
    if (!(Number.isInteger(cfg[k]) && cfg[k] > 0)) throw new GgufError(`invalid hyperparameter ${k} = ${cfg[k]}`);
  }
  if (!(cfg.normEps > 0 && cfg.normEps < 1)) throw new GgufError(`invalid hyperparameter normEps = ${cfg.normEps}`);
  for (const k of ["ropeTheta", "ropeThetaLocal", "ropeScale"] as const) {
    if (!(cfg[k] > 0 && Number.isFinite(cfg[k]))) throw new GgufError(`invalid hyperparameter ${k} = ${cfg[k]}`);
  }
  if (!(Number.isInteger(window) && window >= 0)) throw new GgufError(`invalid ${key("attention.sliding_window")} = ${window}`);
  if (!(Number.isInteger(period) && period >= 0)) throw new GgufError(`invalid ${patternKey} = ${period}`);
  for (const k of ["attnSoftcap", "finalSoftcap"] as const) {
    if (!(cfg[k] >= 0 && Number.isFinite(cfg[k]))) throw new GgufError(`invalid soft-cap ${k} = ${cfg[k]}`);
  }
  if (valueLength !== headDim) {
    throw new GgufError(`${key("attention.value_length")} ${valueLength} differs from key_length ${headDim} (unsupported)`);
  }
  if (cfg.nHeads % cfg.nKvHeads !== 0) {
    throw new GgufError(`head_count ${cfg.nHeads} is not a multiple of head_count_kv ${cfg.nKvHeads}`);
  }
  if (cfg.ropeDims % 2 !== 0 || cfg.ropeDims > cfg.headDim) {
    throw new GgufError(`${key("rope.dimension_count")} ${cfg.ropeDims} must be even and at most key_length ${cfg.headDim}`);
  }
  return cfg;
}

/**
 * The steps of one layer, in llama.cpp's graph order. Every backend runs a layer as exactly this list (gemma.ts on
 * the CPU backends, webgpu/model.ts recording its command buffer), so what differs between architectures is
 * said here once:
 *   attn_norm       xb = rmsnorm(x) * attn_norm
 *   qkv             q, k, v = wq xb, wk xb, wv xb
 *   qk_norm         (Gemma 3) each head of q and k: rmsnorm(.) * attn_q_norm, attn_k_norm
 *   rope_store      RoPE on q and k with the layer's base and scale (layerKind), q *= qScale; k and v into the
 *                   layer's cache as f16 (a ring on sliding-window layers)
 *   attention       flash attention over the cells the layer's window shows each query, scores soft-capped by
 *                   attnSoftcap
 *   attn_out        xb = wo att (then, on the final layer, only the rows whose outputs are wanted go on)
 *   attn_post_norm  (Gemma 2, 3) xb = rmsnorm(xb) * post_attention_norm
 *   attn_residual   x += xb
 *   ffn_norm        xb = rmsnorm(x) * ffn_norm
 *   ffn             xb = down(gelu_tanh(gate xb) * up xb)
 *   ffn_post_norm   (Gemma 2, 3) xb = rmsnorm(xb) * post_ffw_norm
 *   ffn_residual    x += xb
 * Around the layers: x = token_embd[tokens] * embedScale before them; after them rmsnorm(x) * output_norm, the
 * tied LM head, and (finalSoftcap) cap * tanh(logits / cap).
 */
export type LayerStep =
  | "attn_norm" | "qkv" | "qk_norm" | "rope_store" | "attention" | "attn_out" | "attn_post_norm" | "attn_residual"
  | "ffn_norm" | "ffn" | "ffn_post_norm" | "ffn_residual";

/** The steps of every layer of `cfg`'s architecture (see LayerStep). */
export function layerSteps(cfg: GemmaConfig): LayerStep[] {
  const steps: LayerStep[] = ["attn_norm", "qkv"];
  if (cfg.qkNorm) steps.push("qk_norm");
  steps.push("rope_store", "attention", "attn_out");
  if (cfg.postNorms) steps.push("attn_post_norm");
  steps.push("attn_residual", "ffn_norm", "ffn");
  if (cfg.postNorms) steps.push("ffn_post_norm");
  steps.push("ffn_residual");
  return steps;
}

/** What one layer's attention is: global or local, and the RoPE it takes. */
export interface LayerKind {
  local: boolean;
  /** Positions the layer's queries see (0: all). */
  window: number;
  ropeTheta: number;
  ropeScale: number;
}

export function layerKind(cfg: GemmaConfig, l: number): LayerKind {
  const local = cfg.local[l]!;
  return local
    ? { local, window: cfg.window, ropeTheta: cfg.ropeThetaLocal, ropeScale: cfg.ropeScaleLocal }
    : { local, window: 0, ropeTheta: cfg.ropeTheta, ropeScale: cfg.ropeScale };
}

/**
 * llama.cpp's micro-batch as node-llama-cpp (our reference) configures it for a model with sliding-window
 * layers: its batch size (512) + 1. It sizes the ring of those layers' KV cache (localCells).
 */
export const SWA_UBATCH = 513;

/**
 * KV cells of layer l for a context of `seqLen` positions: all of them on a global layer; on a local one, a
 * ring as llama.cpp's SWA cache sizes it (window + micro-batch, rounded up to 256; llama_kv_cache_iswa), where
 * position p lives in cell p % cells. The same size and placement give the same order of cells in attention,
 * so the arithmetic stays llama.cpp's past the ring's length too.
 */
export function layerCells(cfg: GemmaConfig, l: number, seqLen: number): number {
  if (!cfg.local[l]) return seqLen;
  return Math.min(seqLen, Math.ceil(Math.min(seqLen, cfg.window + SWA_UBATCH) / 256) * 256);
}
