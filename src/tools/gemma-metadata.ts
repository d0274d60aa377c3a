// The general.* and gemma.* keys of a Gemma GGUF, written the one way for generated test models and converted
// checkpoints alike (the tokenizer keys differ and are added by each caller).
import { LLAMA_FTYPE } from "../engine/ggml-types.ts";
import { GGUF_VALUE } from "../engine/gguf.ts";
import type { MetaEntry } from "../engine/gguf-writer.ts";

export interface GemmaHparams {
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
  ropeBase?: number;
}

export function gemmaMetadata(h: GemmaHparams): MetaEntry[] {
  const U32 = GGUF_VALUE.UINT32;
  return [
    { key: "general.architecture", type: GGUF_VALUE.STRING, value: "gemma" },
    { key: "general.name", type: GGUF_VALUE.STRING, value: h.name },
    { key: "general.file_type", type: U32, value: h.fileType ?? LLAMA_FTYPE[h.weightType] ?? 0 },
    { key: "general.quantization_version", type: U32, value: 2 },
    { key: "gemma.context_length", type: U32, value: h.contextLength },
    { key: "gemma.embedding_length", type: U32, value: h.dim },
    { key: "gemma.block_count", type: U32, value: h.nLayers },
    { key: "gemma.feed_forward_length", type: U32, value: h.hiddenDim },
    { key: "gemma.attention.head_count", type: U32, value: h.nHeads },
    { key: "gemma.attention.head_count_kv", type: U32, value: h.nKvHeads },
    { key: "gemma.attention.key_length", type: U32, value: h.headDim },
    { key: "gemma.attention.value_length", type: U32, value: h.headDim },
    { key: "gemma.attention.layer_norm_rms_epsilon", type: GGUF_VALUE.FLOAT32, value: h.rmsEps },
    ...(h.ropeDims !== undefined ? [{ key: "gemma.rope.dimension_count", type: U32, value: h.ropeDims }] : []),
    ...(h.ropeBase !== undefined ? [{ key: "gemma.rope.freq_base", type: GGUF_VALUE.FLOAT32, value: h.ropeBase }] : []),
  ];
}
