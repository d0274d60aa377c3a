// Loading a Gemma GGUF into one process: read the header (config, tokenizer, chat template), then load the
// whole model as one part (part.ts: every tensor checked, the arena planned, each tensor's bytes read from the
// ByteSource straight into it) and run it through the pipeline with that one part. A sharded host loads the
// same parts elsewhere (src/hosts/): the header part is shared.
import type { Backend } from "../backend/backend.ts";
import type { ByteSource } from "../byte-source.ts";
import { ChatTemplate } from "../chat-template.ts";
import { configFromGguf, type GemmaConfig } from "../config.ts";
import { GgufError, metaString, readGguf, type GgufFile, type GgufTensorInfo } from "../gguf.ts";
import { LocalPart, Pipeline, type TokenSegment } from "../pipeline.ts";
import { Tokenizer } from "../tokenizer.ts";
import type { Gemma, LayerWeights } from "./gemma.ts";
import { canReuse, type KvCache } from "./kv-cache.ts";
import { checkedMatrix, checkedVector, LAYER_MATRICES, layerVectors, loadPart, type ModelPart } from "./part.ts";

export { readVector } from "./part.ts";

export interface LoadOptions {
  /** Context length to allocate the KV cache for (default: the model's, capped at 8192). */
  contextSize?: number;
  /**
   * Tokens per prefill chunk (default 512, llama.cpp's micro-batch). A smaller chunk needs less memory and
   * gives the same arithmetic: chunks compute as parts of llama.cpp's 512-token micro-batches.
   */
  maxBatch?: number;
  /**
   * Sequences the model keeps KV for at once (default 1): running ones and, with a prompt cache, finished ones
   * kept for their prefixes. Each costs contextSize positions of KV in every layer.
   */
  sequences?: number;
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/** What generate() and the hosts need of a loaded model, whichever backend runs it. */
export interface RunnableModel {
  gguf: GgufFile;
  cfg: GemmaConfig;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate;
  contextSize: number;
  /** Process `tokens` at positions pos.. on the model's own KV cache; the logits of the last one. */
  forward(tokens: number[], pos: number): Float32Array | Promise<Float32Array>;
  /** The sequence is over (its KV may be forgotten); generate() calls it when a request ends. */
  release?(): void | Promise<void>;
  /** Several sequences in one forward step (models whose parts run in this process); see batching.ts. */
  batch?: BatchModel;
}

/** A model that runs forward steps over tokens of several sequences, each with its own KV slot. */
export interface BatchModel {
  /** Sequence slots with their own KV (slot 0 is the one forward() uses). */
  slots: number;
  /** Tokens one step may hold in all (decode tokens plus prompt chunks). */
  maxStepTokens: number;
  /** Output rows one step may return. */
  maxOutputs: number;
  /** See Pipeline.step: the logits of the output rows, (rows, vocabSize), valid until the next step. */
  step(segs: TokenSegment[]): Promise<Float32Array>;
  /** Copy the KV of positions [0, n) of slot `from` to slot `to`. */
  copyKv(from: number, to: number, n: number): Promise<void>;
  /**
   * Whether the first `prefix` positions of a slot that holds `length` can be continued from (sliding-window
   * rings keep only their last positions: kv-cache.ts canReuse); absent: always.
   */
  canReuse?(length: number, prefix: number): boolean;
  release(slot: number): Promise<void>;
}

/** A model on an arena backend (WebAssembly, reference): its forward pass and cache are reachable for tests. */
export interface LoadedModel extends RunnableModel {
  model: Gemma;
  cache: KvCache;
  part: ModelPart;
}

/** The header part of loading: GGUF metadata, config, tokenizer, chat template and the context/batch sizes. */
export interface ModelHeader {
  gguf: GgufFile;
  cfg: GemmaConfig;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate;
  contextSize: number;
  maxBatch: number;
}

export async function readModelHeader(src: ByteSource, opts: LoadOptions = {}): Promise<ModelHeader> {
  const gguf = await readGguf(src);
  const cfg = configFromGguf(gguf);
  const tokenizer = new Tokenizer(gguf);
  if (tokenizer.vocabSize !== cfg.vocabSize) {
    throw new GgufError(`token_embd.weight has ${cfg.vocabSize} rows but the vocabulary has ${tokenizer.vocabSize} tokens`);
  }
  const templateSrc = gguf.metadata.has("tokenizer.chat_template") ? metaString(gguf, "tokenizer.chat_template") : undefined;
  const chatTemplate = new ChatTemplate(tokenizer, templateSrc);
  const contextSize = Math.min(opts.contextSize ?? Math.min(cfg.seqLen, 8192), cfg.seqLen);
  if (!(contextSize > 0)) throw new RangeError(`contextSize must be positive, got ${opts.contextSize}`);
  const maxBatch = Math.max(1, Math.min(opts.maxBatch ?? 512, contextSize));
  return { gguf, cfg, tokenizer, chatTemplate, contextSize, maxBatch };
}

/** Gemma's tensors by role, each of whatever a loader makes of it (a GPU upload plan). */
export interface TensorPlan<M, V> {
  tokenEmbd: M;
  /** extra: the architecture's other norms (post-norms, QK-norms) by LayerWeights field (part.ts layerVectors). */
  layers: { wq: M; wk: M; wv: M; wo: M; wGate: M; wUp: M; wDown: M; attnNorm: V; ffnNorm: V; extra: Partial<Record<keyof LayerWeights, V>> }[];
  outputNorm: V;
}

/**
 * Check every tensor Gemma needs (present, shape, a supported type) and hand each to the loader's callbacks in
 * file order of roles: `matrix(name, info, rows, cols)` for weight matrices, `vector(name, info, n)` for norms.
 */
export function planTensors<M, V>(
  gguf: GgufFile,
  cfg: GemmaConfig,
  matrix: (name: string, info: GgufTensorInfo, rows: number, cols: number) => M,
  vector: (name: string, info: GgufTensorInfo, n: number) => V,
): TensorPlan<M, V> {
  const lookup = (name: string) => gguf.tensors.get(name);
  const m = (name: string, role: string) => {
    const info = checkedMatrix(cfg, lookup, name, role);
    return matrix(name, info, info.dims[1] ?? 1, info.dims[0]!);
  };
  const v = (name: string, n = cfg.dim) => vector(name, checkedVector(cfg, lookup, name, n), n);
  const tokenEmbd = m("token_embd.weight", "token_embd");
  const layers: TensorPlan<M, V>["layers"] = [];
  for (let l = 0; l < cfg.nLayers; l++) {
    const p = `blk.${l}.`;
    const [wq, wk, wv, wo, wGate, wUp, wDown] = LAYER_MATRICES.map((r) => m(`${p}${r}.weight`, r));
    const extra: Partial<Record<keyof LayerWeights, V>> = {};
    for (const [name, n, field] of layerVectors(cfg)) if (field !== "attnNorm" && field !== "ffnNorm") extra[field] = v(`${p}${name}.weight`, n);
    layers.push({ wq: wq!, wk: wk!, wv: wv!, wo: wo!, wGate: wGate!, wUp: wUp!, wDown: wDown!, attnNorm: v(`${p}attn_norm.weight`), ffnNorm: v(`${p}ffn_norm.weight`), extra });
  }
  return { tokenEmbd, layers, outputNorm: v("output_norm.weight") };
}

/**
 * The whole model in one part on `backend`, run through the pipeline with that one part. `header`: the one a
 * host read already (from `src`, with the same options).
 */
export async function loadModel(src: ByteSource, backend: Backend, opts: LoadOptions = {}, header?: ModelHeader): Promise<LoadedModel> {
  header ??= await readModelHeader(src, opts);
  const { gguf, cfg, tokenizer, chatTemplate, contextSize, maxBatch } = header;
  const sequences = opts.sequences ?? 1;
  const part = await loadPart(
    src, backend, cfg, (name) => gguf.tensors.get(name),
    { layers: [0, cfg.nLayers], vocab: [0, cfg.vocabSize] },
    { contextSize, sequences, chunk: maxBatch, outputs: Math.min(sequences, maxBatch) },
    { onProgress: opts.onProgress },
  );
  const pipeline = new Pipeline(cfg, [new LocalPart(part)], { chunk: maxBatch, contextSize });
  return {
    gguf, cfg, tokenizer, chatTemplate, contextSize, part, model: part.gemma, cache: part.caches[0]!,
    forward: (tokens, pos) => pipeline.forward(tokens, pos, 0),
    release: () => pipeline.release(0),
    batch: pipelineBatch(pipeline, sequences, maxBatch),
  };
}

/** The batch interface of a pipeline whose parts all run in this process. */
export function pipelineBatch(pipeline: Pipeline, sequences: number, maxStepTokens: number): BatchModel {
  return {
    slots: sequences, maxStepTokens, maxOutputs: Math.min(sequences, maxStepTokens),
    step: (segs) => pipeline.step(segs),
    copyKv: (from, to, n) => pipeline.copyKv(from, to, n),
    canReuse: (length, prefix) => canReuse(pipeline.cfg, pipeline.contextSize, length, prefix),
    release: (slot) => pipeline.release(slot),
  };
}
