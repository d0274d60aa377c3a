// The Gemma forward pass (after karpathy/llama2.c run.c): architecture only; bytes live in weights.ts,
// matrix kernels in the backend. It can run any range of layers on a given hidden state, so the model can
// be split across hosts (each holding some layers) that pass the hidden state along.
import type { Backend, Weight } from "../backend/backend.ts";
import type { GemmaConfig } from "../config.ts";
import { f32ToF16 } from "../numeric.ts";
import { attendHead, attendHeadTiled, FA_TILED_MIN_ROWS, geglu, rmsNorm, Rope } from "./ops.ts";
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

/** Receives named intermediates (llama.cpp's names, e.g. "attn_norm-3") to bisect a mismatch layer by layer. */
export type TraceFn = (name: string, values: Float32Array) => void;

export class Gemma {
  /** Debugging: when set, every intermediate of the forward pass is passed here (copy it to keep it). */
  trace: TraceFn | undefined;
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
    this.rope = new Rope(cfg.headDim, cfg.ropeDims, cfg.ropeTheta, maxPositions);
    this.accHead = new Float32Array(cfg.headDim);
    this.embScale = Math.fround(Math.sqrt(cfg.dim));
  }

  /** Token embeddings scaled by sqrt(dim) into act.x (the shared matrix itself is never scaled). */
  embed(tokens: number[]): Float32Array {
    const { dim, vocabSize } = this.cfg;
    const e = this.weights.tokenEmbd;
    tokens.forEach((tok, t) => {
      if (!(tok >= 0 && tok < vocabSize)) throw new RangeError(`token id ${tok} is outside the vocabulary of ${vocabSize}`);
      const row = this.act.x.subarray(t * dim, (t + 1) * dim);
      this.backend.dequantizeRow(e, tok, row);
      for (let i = 0; i < dim; i++) row[i] = Math.fround(row[i]! * this.embScale);
    });
    return this.act.x.subarray(0, tokens.length * dim);
  }

  /**
   * Run layers [from, to) on the hidden states in act.x for `n` tokens at positions pos..pos+n-1,
   * writing their keys and values into `cache`, which must already hold positions 0..pos-1.
   * With `lastOnly`, the final layer's feed-forward runs on the last token only (its row moves to row 0),
   * as llama.cpp does when only the last token's logits are wanted; returns the number of rows left in act.x.
   */
  layers(n: number, pos: number, cache: KvCache, from = 0, to = this.cfg.nLayers, lastOnly = false): number {
    const { dim, hiddenDim, nHeads, nKvHeads, headDim, normEps } = this.cfg;
    const { x, xb, q, k, v, att, hb, hb2 } = this.act;
    const b = this.backend;
    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const qScale = Math.fround(1 / Math.fround(Math.sqrt(headDim)));
    const headsPerKv = nHeads / nKvHeads;
    let xs = x.subarray(0, n * dim);

    for (let l = from; l < to; l++) {
      const w = this.weights.layers[l]!;
      const kc = cache.k[l]!; // (seqLen, kvDim) f16
      const vc = cache.v[l]!; // (seqLen, kvDim) f16

      // attention: xb = rmsnorm(x) * attn_norm; q, k, v = projections
      rmsNorm(xb.subarray(0, n * dim), xs, w.attnNorm, normEps);
      this.trace?.(`attn_norm-${l}`, xb.subarray(0, n * dim));
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
      this.trace?.(`Qcur_scaled-${l}`, q.subarray(0, n * qDim));
      this.trace?.(`Vcur-${l}`, v.subarray(0, n * kvDim));
      // each query head attends over positions 0..pos+t (causal); query heads share KV heads in groups.
      // llama.cpp computes batches of 64+ tokens another way (tiled); the arithmetic follows it.
      const tiled = n >= FA_TILED_MIN_ROWS;
      if (tiled && b.attendHeadTiled && headDim % 4 === 0) {
        for (let h = 0; h < nHeads; h++) {
          const kvh = Math.floor(h / headsPerKv);
          b.attendHeadTiled(att.subarray(h * headDim), q.subarray(h * headDim), qDim, kc, vc, pos, n, kvDim, kvh * headDim, headDim);
        }
      } else {
        const attend = tiled ? attendHeadTiled : b.attendHead && headDim % 4 === 0 ? b.attendHead.bind(b) : attendHead;
        for (let t = 0; t < n; t++) {
          for (let h = 0; h < nHeads; h++) {
            const kvh = Math.floor(h / headsPerKv);
            attend(
              att.subarray(t * qDim + h * headDim, t * qDim + (h + 1) * headDim),
              q.subarray(t * qDim + h * headDim, t * qDim + (h + 1) * headDim),
              kc, vc, pos + t + 1, kvDim, kvh * headDim, this.accHead,
            );
          }
        }
      }
      this.trace?.(`kqv_out-${l}`, att.subarray(0, n * qDim));
      // x += wo(att)
      b.matmul(xb, w.wo, att, n);
      for (let i = 0; i < n * dim; i++) x[i] = Math.fround(x[i]! + xb[i]!);
      if (lastOnly && l === to - 1 && n > 1) {
        x.copyWithin(0, (n - 1) * dim, n * dim);
        n = 1;
        xs = x.subarray(0, dim);
      }
      this.trace?.(`sa_out-${l}`, xs);

      // feed-forward: x += down(gelu_tanh(gate(h)) * up(h)), h = rmsnorm(x) * ffn_norm
      rmsNorm(xb.subarray(0, n * dim), xs, w.ffnNorm, normEps);
      b.matmul(hb, w.wGate, xb, n);
      b.matmul(hb2, w.wUp, xb, n);
      (b.geglu ? b.geglu.bind(b) : geglu)(hb.subarray(0, n * hiddenDim), hb.subarray(0, n * hiddenDim), hb2.subarray(0, n * hiddenDim));
      this.trace?.(`ffn_geglu-${l}`, hb.subarray(0, n * hiddenDim));
      b.matmul(xb, w.wDown, hb, n);
      for (let i = 0; i < n * dim; i++) x[i] = Math.fround(x[i]! + xb[i]!);
      this.trace?.(`l_out-${l}`, xs);
    }
    return n;
  }

  /** Final norm and the tied LM head on token `t` of act.x: logits (vocabSize). */
  head(t: number): Float32Array {
    const { dim } = this.cfg;
    const xb = this.act.xb.subarray(0, dim);
    rmsNorm(xb, this.act.x.subarray(t * dim, (t + 1) * dim), this.weights.outputNorm, this.cfg.normEps);
    this.trace?.("result_norm", xb);
    this.backend.matmul(this.act.logits, this.weights.tokenEmbd, xb, 1);
    this.trace?.("result_output", this.act.logits);
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
      const last = i + this.maxBatch >= tokens.length;
      const rows = this.layers(chunk.length, pos + i, cache, 0, this.cfg.nLayers, last);
      if (last) return this.head(rows - 1);
    }
    throw new Error("unreachable");
  }
}
