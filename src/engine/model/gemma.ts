// The Gemma forward pass (after karpathy/llama2.c run.c): architecture only; bytes live in weights.ts,
// matrix kernels in the backend. It can run any range of layers on a given hidden state, so the model can
// be split across hosts (each holding some layers) that pass the hidden state along.
import type { Backend, Weight } from "../backend/backend.ts";
import type { GemmaConfig } from "../config.ts";
import { f32ToF16 } from "../numeric.ts";
import { dequantizeRow } from "../quant.ts";
import { attendHead, geglu, rmsNorm, Rope } from "./ops.ts";
import type { KvCache } from "./kv-cache.ts";

export interface LayerWeights {
  attnNorm: Float32Array; // (dim)
  wq: Weight; //             (nHeads * headDim, dim)
  wk: Weight; //             (nKvHeads * headDim, dim)
  wv: Weight; //             (nKvHeads * headDim, dim)
  wo: Weight; //             (dim, nHeads * headDim)
  ffnNorm: Float32Array; //  (dim)
  wGate: Weight; //          (hiddenDim, dim)
  wUp: Weight; //            (hiddenDim, dim)
  wDown: Weight; //          (dim, hiddenDim)
}

export interface GemmaWeights {
  tokenEmbd: Weight; //      (vocabSize, dim), also the LM head (tied)
  layers: LayerWeights[];
  outputNorm: Float32Array; // (dim)
}

/** Activation buffers for up to `maxBatch` tokens, all arena views. */
export interface Activations {
  x: Float32Array; //      (maxBatch, dim) residual stream
  xb: Float32Array; //     (maxBatch, dim) normed input / attention projection out
  q: Float32Array; //      (maxBatch, nHeads * headDim)
  k: Float32Array; //      (maxBatch, nKvHeads * headDim)
  v: Float32Array; //      (maxBatch, nKvHeads * headDim)
  att: Float32Array; //    (maxBatch, nHeads * headDim) attention output
  hb: Float32Array; //     (maxBatch, hiddenDim) gate
  hb2: Float32Array; //    (maxBatch, hiddenDim) up
  logits: Float32Array; // (vocabSize)
}

export class Gemma {
  readonly rope: Rope;
  private readonly accHead: Float32Array;
  private readonly embScale: number;

  readonly cfg: GemmaConfig;

  readonly backend: Backend;

  readonly weights: GemmaWeights;

  readonly act: Activations;

  readonly maxBatch: number;

  constructor(cfg: GemmaConfig, backend: Backend, weights: GemmaWeights, act: Activations, maxBatch: number, maxPositions: number) {
    this.cfg = cfg;
    this.backend = backend;
    this.weights = weights;
    this.act = act;
    this.maxBatch = maxBatch;
    this.rope = new Rope(cfg.headDim, cfg.ropeTheta, maxPositions);
    this.accHead = new Float32Array(cfg.headDim);
    this.embScale = Math.fround(Math.sqrt(cfg.dim));
  }

  /** Token embeddings scaled by sqrt(dim) into act.x (the shared matrix itself is never scaled). */
  embed(tokens: number[]): Float32Array {
    const { dim, vocabSize } = this.cfg;
    const e = this.weights.tokenEmbd;
    const bytes = this.backend.bytes(e.offset, e.nbytes);
    const rowBytes = e.nbytes / vocabSize;
    tokens.forEach((tok, t) => {
      if (!(tok >= 0 && tok < vocabSize)) throw new RangeError(`token id ${tok} is outside the vocabulary of ${vocabSize}`);
      const row = this.act.x.subarray(t * dim, (t + 1) * dim);
      dequantizeRow(e.type, bytes, tok * rowBytes, dim, row);
      for (let i = 0; i < dim; i++) row[i] = Math.fround(row[i]! * this.embScale);
    });
    return this.act.x.subarray(0, tokens.length * dim);
  }

  /**
   * Run layers [from, to) on the hidden states in act.x for `n` tokens at positions pos..pos+n-1,
   * writing their keys and values into `cache`, which must already hold positions 0..pos-1.
   */
  layers(n: number, pos: number, cache: KvCache, from = 0, to = this.cfg.nLayers): void {
    const { dim, hiddenDim, nHeads, nKvHeads, headDim, normEps } = this.cfg;
    const { x, xb, q, k, v, att, hb, hb2 } = this.act;
    const b = this.backend;
    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const qScale = Math.fround(1 / Math.fround(Math.sqrt(headDim)));
    const headsPerKv = nHeads / nKvHeads;
    const xs = x.subarray(0, n * dim);

    for (let l = from; l < to; l++) {
      const w = this.weights.layers[l]!;
      const kc = cache.k[l]!; // (seqLen, kvDim) f16
      const vc = cache.v[l]!; // (seqLen, kvDim) f16

      // attention: xb = rmsnorm(x) * attn_norm; q, k, v = projections
      rmsNorm(xb.subarray(0, n * dim), xs, w.attnNorm, normEps);
      b.matmul(q, w.wq, xb, n);
      b.matmul(k, w.wk, xb, n);
      b.matmul(v, w.wv, xb, n);
      for (let t = 0; t < n; t++) {
        const qt = q.subarray(t * qDim, (t + 1) * qDim);
        const kt = k.subarray(t * kvDim, (t + 1) * kvDim);
        this.rope.apply(qt, nHeads, pos + t);
        this.rope.apply(kt, nKvHeads, pos + t);
        for (let i = 0; i < qDim; i++) qt[i] = Math.fround(qt[i]! * qScale);
        // cache k and v of this position as f16
        const base = (pos + t) * kvDim;
        for (let i = 0; i < kvDim; i++) {
          kc[base + i] = f32ToF16(kt[i]!);
          vc[base + i] = f32ToF16(v[t * kvDim + i]!);
        }
      }
      // each query head attends over positions 0..pos+t (causal); query heads share KV heads in groups
      for (let t = 0; t < n; t++) {
        for (let h = 0; h < nHeads; h++) {
          const kvh = Math.floor(h / headsPerKv);
          attendHead(
            att.subarray(t * qDim + h * headDim, t * qDim + (h + 1) * headDim),
            q.subarray(t * qDim + h * headDim, t * qDim + (h + 1) * headDim),
            kc, vc, pos + t + 1, kvDim, kvh * headDim, this.accHead,
          );
        }
      }
      // x += wo(att)
      b.matmul(xb, w.wo, att, n);
      for (let i = 0; i < n * dim; i++) x[i] = Math.fround(x[i]! + xb[i]!);

      // feed-forward: x += down(gelu_tanh(gate(h)) * up(h)), h = rmsnorm(x) * ffn_norm
      rmsNorm(xb.subarray(0, n * dim), xs, w.ffnNorm, normEps);
      b.matmul(hb, w.wGate, xb, n);
      b.matmul(hb2, w.wUp, xb, n);
      geglu(hb.subarray(0, n * hiddenDim), hb.subarray(0, n * hiddenDim), hb2);
      b.matmul(xb, w.wDown, hb, n);
      for (let i = 0; i < n * dim; i++) x[i] = Math.fround(x[i]! + xb[i]!);
    }
  }

  /** Final norm and the tied LM head on token `t` of act.x: logits (vocabSize). */
  head(t: number): Float32Array {
    const { dim } = this.cfg;
    const xb = this.act.xb.subarray(0, dim);
    rmsNorm(xb, this.act.x.subarray(t * dim, (t + 1) * dim), this.weights.outputNorm, this.cfg.normEps);
    this.backend.matmul(this.act.logits, this.weights.tokenEmbd, xb, 1);
    return this.act.logits;
  }

  /** Process `tokens` at positions pos.. (in chunks of maxBatch) and return the logits of the last one. */
  forward(tokens: number[], pos: number, cache: KvCache): Float32Array {
    if (!tokens.length) throw new Error("forward() needs at least one token");
    if (pos + tokens.length > cache.seqLen) {
      throw new RangeError(`context full: ${pos + tokens.length} tokens do not fit in a context of ${cache.seqLen}`);
    }
    for (let i = 0; i < tokens.length; i += this.maxBatch) {
      const chunk = tokens.slice(i, i + this.maxBatch);
      this.embed(chunk);
      this.layers(chunk.length, pos + i, cache);
      if (i + this.maxBatch >= tokens.length) return this.head(chunk.length - 1);
    }
    throw new Error("unreachable");
  }
}
