// The general.* and {arch}.* keys of a Gemma GGUF, written the one way for generated test models and converted
// checkpoints alike, as llama.cpp's converter (conversion/gemma.py) writes each architecture (the tokenizer keys
// differ and are added by each caller).
import type { Architecture } from "../engine/config.ts";
import { LLAMA_FTYPE } from "../engine/ggml-types.ts";
import { GGUF_VALUE } from "../engine/gguf.ts";
import type { MetaEntry } from "../engine/gguf-writer.ts";

export interface GemmaHparams {
  /** Default "gemma". */
  arch?: Architecture;
  name: string;
  /** The ggml type of the 2-D weights (for general.file_type). */
  weightType: number;
  /** general.file_type when it is not the one of an all-`weightType` file (a mix such as Q4_K_M). */
  fileType?: number;
  contextLength: number;
  dim: number;
  nLayers: number;
  hiddenDim: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  rmsEps: number;
  ropeDims?: number;
  /** RoPE base (Gemma 3: of the global layers). */
  ropeBase?: number;
  /** Gemma 3: RoPE base of the local layers (rope_local_base_freq). */
  ropeBaseLocal?: number;
  /** Gemma 3: linear RoPE scaling factor (rope_scaling {rope_type: linear, factor}). */
  ropeScaling?: number;
  /** Gemma 2 and 3: the sliding window (Gemma 3: absent means no local layers). */
  window?: number;
  /** Gemma 2: attn_logit_softcapping; Gemma 2 and 3: final_logit_softcapping. */
  attnSoftcap?: number;
  finalSoftcap?: number;
}

export function gemmaMetadata(h: GemmaHparams): MetaEntry[] {
  const a = h.arch ?? "gemma";
  const U32 = GGUF_VALUE.UINT32, F32 = GGUF_VALUE.FLOAT32;
  const m: MetaEntry[] = [
    { key: "general.architecture", type: GGUF_VALUE.STRING, value: a },
    { key: "general.name", type: GGUF_VALUE.STRING, value: h.name },
    { key: "general.file_type", type: U32, value: h.fileType ?? LLAMA_FTYPE[h.weightType] ?? 0 },
    { key: "general.quantization_version", type: U32, value: 2 },
    { key: `${a}.context_length`, type: U32, value: h.contextLength },
    { key: `${a}.embedding_length`, type: U32, value: h.dim },
    { key: `${a}.block_count`, type: U32, value: h.nLayers },
    { key: `${a}.feed_forward_length`, type: U32, value: h.hiddenDim },
    { key: `${a}.attention.head_count`, type: U32, value: h.nHeads },
    { key: `${a}.attention.head_count_kv`, type: U32, value: h.nKvHeads },
    { key: `${a}.attention.key_length`, type: U32, value: h.headDim },
    { key: `${a}.attention.value_length`, type: U32, value: h.headDim },
    { key: `${a}.attention.layer_norm_rms_epsilon`, type: F32, value: h.rmsEps },
  ];
  const opt = (key: string, type: number, value: number | string | undefined) => {
    if (value !== undefined) m.push({ key: `${a}.${key}`, type, value });
  };
  opt("rope.dimension_count", U32, h.ropeDims);
  opt("rope.freq_base", F32, h.ropeBase);
  if (a === "gemma3") {
    opt("rope.freq_base_swa", F32, h.ropeBaseLocal);
    if (h.ropeScaling !== undefined) opt("rope.scaling.type", GGUF_VALUE.STRING, "linear"), opt("rope.scaling.factor", F32, h.ropeScaling);
  }
  if (a === "gemma2") opt("attn_logit_softcapping", F32, h.attnSoftcap);
  if (a !== "gemma") opt("final_logit_softcapping", F32, h.finalSoftcap), opt("attention.sliding_window", U32, h.window);
  return m;
}
