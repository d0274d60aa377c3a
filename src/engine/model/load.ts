// Loading a Gemma GGUF: read the header, check every tensor against the config (planTensors, shared with the
// WebGPU loader), plan the backend's arena (weights, KV cache, activations), then read each tensor's bytes from
// the ByteSource straight into the arena.
import type { Backend, Weight } from "../backend/backend.ts";
import type { ByteSource } from "../byte-source.ts";
import { ChatTemplate } from "../chat-template.ts";
import { configFromGguf, type GemmaConfig } from "../config.ts";
import { GGML_TYPE, ggmlTypeName, isSupportedType, typeLayout } from "../ggml-types.ts";
import { GgufError, metaString, readGguf, type GgufFile, type GgufTensorInfo } from "../gguf.ts";
import { dequantizeRow } from "../quant.ts";
import { Tokenizer } from "../tokenizer.ts";
import { Gemma, type Activations, type GemmaWeights, type LayerWeights } from "./gemma.ts";
import { KvCache } from "./kv-cache.ts";

export interface LoadOptions {
  /** Context length to allocate the KV cache for (default: the model's, capped at 8192). */
  contextSize?: number;
  /** Tokens per prefill chunk (default 512, llama.cpp's micro-batch: the same chunks give the same arithmetic). */
  maxBatch?: number;
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
}

/** A model on an arena backend (WebAssembly, reference): its forward pass and cache are reachable for tests. */
export interface LoadedModel extends RunnableModel {
  model: Gemma;
  cache: KvCache;
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

/** Gemma's tensors by role, each of whatever a loader makes of it (an arena weight, a GPU upload plan). */
export interface TensorPlan<M, V> {
  tokenEmbd: M;
  layers: { wq: M; wk: M; wv: M; wo: M; wGate: M; wUp: M; wDown: M; attnNorm: V; ffnNorm: V }[];
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
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize, nLayers } = cfg;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const m = (name: string, rows: number, cols: number): M => {
    const info = tensor(gguf, name, [cols, rows]);
    if (!isSupportedType(info.type)) {
      throw new GgufError(
        `tensor "${name}" has type ${ggmlTypeName(info.type)}, which this engine does not support (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)`,
      );
    }
    if (cols % typeLayout(info.type).blockSize !== 0 || info.nbytes < 0) {
      throw new GgufError(`tensor "${name}": row length ${cols} is not a multiple of the ${ggmlTypeName(info.type)} block size`);
    }
    return matrix(name, info, rows, cols);
  };
  const v = (name: string, n: number): V => {
    const info = tensor(gguf, name, [n]);
    if (info.type !== GGML_TYPE.F32 && info.type !== GGML_TYPE.F16 && info.type !== GGML_TYPE.BF16) {
      throw new GgufError(`tensor "${name}" has type ${ggmlTypeName(info.type)}; norm weights must be F32, F16 or BF16`);
    }
    return vector(name, info, n);
  };
  const tokenEmbd = m("token_embd.weight", vocabSize, dim);
  const layers: TensorPlan<M, V>["layers"] = [];
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}.`;
    layers.push({
      wq: m(`${p}attn_q.weight`, qDim, dim),
      wk: m(`${p}attn_k.weight`, kvDim, dim),
      wv: m(`${p}attn_v.weight`, kvDim, dim),
      wo: m(`${p}attn_output.weight`, dim, qDim),
      wGate: m(`${p}ffn_gate.weight`, hiddenDim, dim),
      wUp: m(`${p}ffn_up.weight`, hiddenDim, dim),
      wDown: m(`${p}ffn_down.weight`, dim, hiddenDim),
      attnNorm: v(`${p}attn_norm.weight`, dim),
      ffnNorm: v(`${p}ffn_norm.weight`, dim),
    });
  }
  return { tokenEmbd, layers, outputNorm: v("output_norm.weight", dim) };
}

/** A norm vector's values as f32, whatever its stored type. */
export async function readVector(src: ByteSource, info: GgufTensorInfo, n: number, out: Float32Array = new Float32Array(n)): Promise<Float32Array> {
  dequantizeRow(info.type, await src.read(info.offset, info.nbytes), 0, n, out);
  return out;
}

export async function loadModel(src: ByteSource, backend: Backend, opts: LoadOptions = {}): Promise<LoadedModel> {
  const header = await readModelHeader(src, opts);
  const { cfg, contextSize, maxBatch } = header;
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize } = cfg;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;

  // --- plan: every tensor checked, then placed ---
  const reads: { info: GgufTensorInfo; weight: Weight }[] = [];
  const vectors: { info: GgufTensorInfo; offset: number; n: number }[] = [];
  const plan = planTensors(
    header.gguf,
    cfg,
    (name, info, rows, cols) => {
      const repacked = (info.type === GGML_TYPE.Q4_0 || info.type === GGML_TYPE.Q4_K) && rows % 8 === 0;
      const weight: Weight = { name, type: info.type, rows, cols, offset: backend.reserve(info.nbytes), nbytes: info.nbytes, repacked };
      reads.push({ info, weight });
      return weight;
    },
    (_name, info, n) => {
      const v = { info, offset: backend.reserve(n * 4), n };
      vectors.push(v);
      return v;
    },
  );

  const cache = new KvCache(backend, cfg, contextSize);
  const actSizes = {
    x: maxBatch * dim, xb: maxBatch * dim, q: maxBatch * qDim, k: maxBatch * kvDim, v: maxBatch * kvDim,
    att: maxBatch * qDim, hb: maxBatch * hiddenDim, hb2: maxBatch * hiddenDim, logits: vocabSize,
  };
  const actOffsets = Object.fromEntries(Object.entries(actSizes).map(([k, n]) => [k, backend.reserve(n * 4)]));
  const maxCols = Math.max(dim, qDim, hiddenDim);
  const scratchBytes = backend.scratchBytes(maxCols, maxBatch);
  const scratch = scratchBytes ? backend.reserve(scratchBytes) : 0;
  backend.commit();
  backend.setScratch(scratch, scratchBytes);

  // --- read: tensor bytes straight into the arena ---
  const total = reads.reduce((s, r) => s + r.info.nbytes, 0) + vectors.reduce((s, r) => s + r.info.nbytes, 0);
  let loaded = 0;
  for (const { info, weight } of reads) {
    await src.read(info.offset, info.nbytes, backend.bytes(weight.offset, info.nbytes));
    backend.prepareWeight(weight);
    loaded += info.nbytes;
    opts.onProgress?.(loaded, total);
    await new Promise((res) => setTimeout(res, 0)); // a host's other work (progress probes) gets a turn
  }
  for (const v of vectors) {
    await readVector(src, v.info, v.n, backend.f32(v.offset, v.n));
    loaded += v.info.nbytes;
    opts.onProgress?.(loaded, total);
  }
  const vec = (v: { offset: number; n: number }) => backend.f32(v.offset, v.n);
  const weights: GemmaWeights = {
    tokenEmbd: plan.tokenEmbd,
    layers: plan.layers.map((l): LayerWeights => ({ ...l, attnNorm: vec(l.attnNorm), ffnNorm: vec(l.ffnNorm) })),
    outputNorm: vec(plan.outputNorm),
  };

  const act = Object.fromEntries(
    Object.entries(actSizes).map(([k, n]) => [k, backend.f32(actOffsets[k]!, n)]),
  ) as unknown as Activations;
  const model = new Gemma(cfg, backend, weights, act, maxBatch, contextSize);
  cache.bind();
  const { gguf, tokenizer, chatTemplate } = header;
  return { gguf, cfg, tokenizer, chatTemplate, model, cache, contextSize, forward: (tokens, pos) => model.forward(tokens, pos, cache) };
}

/** Look a tensor up and check its shape (ne0 first, as ggml writes it). */
function tensor(f: GgufFile, name: string, dims: number[]): GgufTensorInfo {
  const t = f.tensors.get(name);
  if (!t) throw new GgufError(`missing tensor "${name}"`);
  const got = t.dims.slice();
  while (got.length > dims.length && got[got.length - 1] === 1) got.pop();
  if (got.length !== dims.length || got.some((d, i) => d !== dims[i])) {
    throw new GgufError(`tensor "${name}" has shape [${t.dims.join(", ")}], expected [${dims.join(", ")}]`);
  }
  return t;
}

