// Weight mixes: files whose matrices get different types by name and layer, as llama.cpp's quantize writes its
// _M types. make-test-model writes them; quantize produces them from F32/F16/BF16 files.
import { GGML_TYPE, LLAMA_FTYPE_Q4_K_M } from "../engine/ggml-types.ts";

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
