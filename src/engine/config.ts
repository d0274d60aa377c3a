// Gemma hyperparameters, mapped from GGUF metadata once; the rest of the engine uses only these names.
import { GgufError, metaNumber, metaString, type GgufFile } from "./gguf.ts";

export interface GemmaConfig {
  dim: number; //          gemma.embedding_length
  hiddenDim: number; //    gemma.feed_forward_length
  nLayers: number; //      gemma.block_count
  nHeads: number; //       gemma.attention.head_count
  nKvHeads: number; //     gemma.attention.head_count_kv (default: nHeads)
  headDim: number; //      gemma.attention.key_length (never dim / nHeads: Gemma-7B has 16 x 256 != 3072)
  vocabSize: number; //    rows of token_embd.weight
  seqLen: number; //       gemma.context_length
  normEps: number; //      gemma.attention.layer_norm_rms_epsilon
  ropeTheta: number; //    gemma.rope.freq_base (default 10000)
  ropeDims: number; //     gemma.rope.dimension_count: leading dims of each head that RoPE rotates (default headDim)
}

export function configFromGguf(f: GgufFile): GemmaConfig {
  const arch = metaString(f, "general.architecture");
  if (arch !== "gemma") {
    throw new GgufError(`unsupported architecture "${arch}" (general.architecture): this engine runs "gemma" (Gemma 1) models`);
  }
  const dim = metaNumber(f, "gemma.embedding_length");
  const nHeads = metaNumber(f, "gemma.attention.head_count");
  const headDim = metaNumber(f, "gemma.attention.key_length", Math.floor(dim / Math.max(nHeads, 1)));
  const valueLength = metaNumber(f, "gemma.attention.value_length", headDim);
  const emb = f.tensors.get("token_embd.weight");
  if (!emb) throw new GgufError(`missing tensor "token_embd.weight"`);
  const cfg: GemmaConfig = {
    dim,
    hiddenDim: metaNumber(f, "gemma.feed_forward_length"),
    nLayers: metaNumber(f, "gemma.block_count"),
    nHeads,
    nKvHeads: metaNumber(f, "gemma.attention.head_count_kv", nHeads),
    headDim,
    vocabSize: emb.dims[1] ?? 0,
    seqLen: metaNumber(f, "gemma.context_length"),
    normEps: metaNumber(f, "gemma.attention.layer_norm_rms_epsilon"),
    ropeTheta: metaNumber(f, "gemma.rope.freq_base", 10000),
    ropeDims: metaNumber(f, "gemma.rope.dimension_count", headDim),
  };
  for (const [k, v] of Object.entries(cfg)) {
    if (k === "normEps" ? !(v > 0 && v < 1) : !(Number.isInteger(v) && v > 0)) {
      throw new GgufError(`invalid hyperparameter ${k} = ${v}`);
    }
  }
  if (valueLength !== headDim) {
    throw new GgufError(`gemma.attention.value_length ${valueLength} differs from key_length ${headDim} (unsupported)`);
  }
  if (cfg.nHeads % cfg.nKvHeads !== 0) {
    throw new GgufError(`head_count ${cfg.nHeads} is not a multiple of head_count_kv ${cfg.nKvHeads}`);
  }
  if (cfg.ropeDims % 2 !== 0 || cfg.ropeDims > cfg.headDim) {
    throw new GgufError(`gemma.rope.dimension_count ${cfg.ropeDims} must be even and at most key_length ${cfg.headDim}`);
  }
  return cfg;
}
