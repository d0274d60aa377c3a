// Loading a Gemma GGUF: check every tensor against the config, plan the backend's arena (weights, KV cache,
// activations), then read each tensor's bytes from the ByteSource straight into the arena.
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

export interface LoadedModel {
  gguf: GgufFile;
  cfg: GemmaConfig;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate;
  model: Gemma;
  cache: KvCache;
  contextSize: number;
}

export async function loadModel(src: ByteSource, backend: Backend, opts: LoadOptions = {}): Promise<LoadedModel> {
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
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize, nLayers } = cfg;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;

  // --- plan: every tensor checked, then placed ---
  const reads: { info: GgufTensorInfo; offset: number; weight: Weight }[] = [];
  const matrix = (name: string, rows: number, cols: number): Weight => {
    const info = tensor(gguf, name, [cols, rows]);
    if (!isSupportedType(info.type) || info.nbytes < 0) {
      throw new GgufError(
        `tensor "${name}" has type ${ggmlTypeName(info.type)}, which this engine does not support (supported: F32, F16, BF16, Q8_0, Q4_0)`,
      );
    }
    if (cols % typeLayout(info.type).blockSize !== 0) {
      throw new GgufError(`tensor "${name}": row length ${cols} is not a multiple of the ${ggmlTypeName(info.type)} block size`);
    }
    const offset = backend.reserve(info.nbytes);
    const repacked = info.type === GGML_TYPE.Q4_0 && rows % 8 === 0;
    const weight: Weight = { name, type: info.type, rows, cols, offset, nbytes: info.nbytes, repacked };
    reads.push({ info, offset, weight });
    return weight;
  };
  const vectors: { info: GgufTensorInfo; offset: number; n: number; set: (v: Float32Array) => void }[] = [];
  const vector = (name: string, n: number, set: (v: Float32Array) => void) => {
    const info = tensor(gguf, name, [n]);
    if (info.type !== GGML_TYPE.F32 && info.type !== GGML_TYPE.F16 && info.type !== GGML_TYPE.BF16) {
      throw new GgufError(`tensor "${name}" has type ${ggmlTypeName(info.type)}; norm weights must be F32, F16 or BF16`);
    }
    vectors.push({ info, offset: backend.reserve(n * 4), n, set });
  };

  const tokenEmbd = matrix("token_embd.weight", vocabSize, dim);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}.`;
    const lw = {
      wq: matrix(`${p}attn_q.weight`, qDim, dim),
      wk: matrix(`${p}attn_k.weight`, kvDim, dim),
      wv: matrix(`${p}attn_v.weight`, kvDim, dim),
      wo: matrix(`${p}attn_output.weight`, dim, qDim),
      wGate: matrix(`${p}ffn_gate.weight`, hiddenDim, dim),
      wUp: matrix(`${p}ffn_up.weight`, hiddenDim, dim),
      wDown: matrix(`${p}ffn_down.weight`, dim, hiddenDim),
    } as LayerWeights;
    vector(`${p}attn_norm.weight`, dim, (v) => (lw.attnNorm = v));
    vector(`${p}ffn_norm.weight`, dim, (v) => (lw.ffnNorm = v));
    layers.push(lw);
  }
  const weights: GemmaWeights = { tokenEmbd, layers, outputNorm: new Float32Array(0) };
  vector("output_norm.weight", dim, (v) => (weights.outputNorm = v));

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
  for (const r of reads) {
    await src.read(r.info.offset, r.info.nbytes, backend.bytes(r.offset, r.info.nbytes));
    backend.prepareWeight(r.weight);
    loaded += r.info.nbytes;
    opts.onProgress?.(loaded, total);
    await new Promise((res) => setTimeout(res, 0)); // a host's other work (progress probes) gets a turn
  }
  for (const v of vectors) {
    const raw = await src.read(v.info.offset, v.info.nbytes);
    const out = backend.f32(v.offset, v.n);
    dequantizeRow(v.info.type, raw, 0, v.n, out);
    v.set(out);
    loaded += v.info.nbytes;
    opts.onProgress?.(loaded, total);
  }

  const act = Object.fromEntries(
    Object.entries(actSizes).map(([k, n]) => [k, backend.f32(actOffsets[k]!, n)]),
  ) as unknown as Activations;
  const model = new Gemma(cfg, backend, weights, act, maxBatch, contextSize);
  cache.bind();
  return { gguf, cfg, tokenizer, chatTemplate, model, cache, contextSize };
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

