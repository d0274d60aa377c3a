// Weight mixes: files whose matrices get different types by name and layer, as llama.cpp's quantize writes its
// _M types. make-test-model writes them; quantize produces them from F32/F16/BF16 files.
import { GGML_TYPE, LLAMA_FTYPE_Q4_K_M, typeLayout } from "../engine/ggml-types.ts";

/**
 * llama.cpp's tensor_type_fallback (llama-quant.cpp): a K-quant for rows whose length is not a multiple of 256
 * becomes the 32-value type next to it (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), and F16 if even 32 does not
 * divide the rows. A Gemma-3-1B "Q4_K_M" file is mostly such fallbacks: its hidden size is 1152.
 */
export function fallbackType(type: number, cols: number): number {
  if (cols % typeLayout(type).blockSize === 0) return type;
  const next = type === GGML_TYPE.Q4_K ? GGML_TYPE.Q5_0 : type === GGML_TYPE.Q5_K ? GGML_TYPE.Q5_1 : type === GGML_TYPE.Q6_K ? GGML_TYPE.Q8_0 : type;
  return cols % typeLayout(next).blockSize === 0 ? next : GGML_TYPE.F16;
}

/** A file whose matrices have several types. */
export interface WeightMix {
  /** The type most matrices get. */
  type: number;
  fileType: number;
  /** The type of matrix `name` (its layer read from a "blk.N." prefix) in a model of nLayers. */
  typeOf(name: string, nLayers: number): number;
}

export const WEIGHT_MIXES: Record<string, WeightMix> = {
  // llama.cpp's Q4_K_M: Q6_K for the embedding (tied output) and, in the layers llama_tensor_get_type's
  // use_more_bits picks (the first and last eighth, and every third between), for attn_v and ffn_down; Q4_K elsewhere
  q4_k_m: {
    type: GGML_TYPE.Q4_K,
    fileType: LLAMA_FTYPE_Q4_K_M,
    typeOf(name, n) {
      if (name === "token_embd.weight") return GGML_TYPE.Q6_K;
      const layer = name.startsWith("blk.") ? Number(name.split(".")[1]) : -1;
      const eighth = Math.floor(n / 8);
      const moreBits = layer >= 0 && (layer < eighth || layer >= Math.floor((7 * n) / 8) || (layer - eighth) % 3 === 2);
      if (moreBits && (name.endsWith("attn_v.weight") || name.endsWith("ffn_down.weight"))) return GGML_TYPE.Q6_K;
      return GGML_TYPE.Q4_K;
    },
  },
};
