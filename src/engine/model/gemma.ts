// The Gemma forward pass (after karpathy/llama2.c run.c): architecture only; tensor bytes are placed by part.ts,
// matrix kernels live in the backend. A Gemma holds a *part* of the model: any range of layers and/or a slice of
// the vocabulary (the tied embedding / LM head). The whole model is the part that holds all of both; a sharded
// model is several parts in several hosts that pass the hidden state along. pipeline.ts drives the steps below
// (embed, layers, head) over the chunks that chunks() cuts a prompt into.
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
  /** Rows [vocab[0], vocab[1]) of token_embd (vocabSize, dim), also the LM head (tied); absent in a layers-only part. */
  tokenEmbd?: Weight;
  vocab: [number, number];
  /** layers[l] for the layers this part holds, undefined for the others. */
  layers: (LayerWeights | undefined)[];
  outputNorm?: Float32Array; // (dim), with the LM head
}

/** Activation buffers for up to `maxBatch` tokens, all arena views (a part without layers has only x, xb, logits). */
export interface Activations {
  x: Float32Array; //      (maxBatch, dim) residual stream
  xb: Float32Array; //     (maxBatch, dim) normed input / attention projection out
  q: Float32Array; //      (maxBatch, nHeads * headDim)
  k: Float32Array; //      (maxBatch, nKvHeads * headDim)
  v: Float32Array; //      (maxBatch, nKvHeads * headDim)
  att: Float32Array; //    (maxBatch, nHeads * headDim) attention output
  hb: Float32Array; //     (maxBatch, hiddenDim) gate
  hb2: Float32Array; //    (maxBatch, hiddenDim) up
  logits: Float32Array; // (vocab[1] - vocab[0]) this part's slice of the logits
}

/**
 * Which rows of the final layer (nLayers - 1) go through its feed-forward: all, only the last (llama.cpp's
 * last micro-batch of a prompt, when only the last token's logits are wanted; the row moves to row 0), or none
 * (a chunk of a prompt whose outputs nobody reads: its keys and values are all that is kept).
 */
export type Outputs = "all" | "last" | "none";

/** One chunk of a prompt (or one decode token) as the forward pass processes it. */
export interface Chunk {
  /** Index of its first token in the tokens of the forward call. */
  start: number;
  n: number;
  /**
   * Rows of the llama.cpp micro-batch the chunk belongs to: llama.cpp picks its kernels by that count (tinyBLAS
   * for 2+ rows, the tiled flash attention for 64+), so a chunk smaller than its micro-batch computes as the
   * micro-batch would, row for row.
   */
  batchRows: number;
  outputs: Outputs;
}

/**
 * How a forward call over `n` tokens is cut: into llama.cpp's micro-batches of `ubatch` tokens (the same cuts
 * give the same arithmetic), each into chunks of at most `chunk` tokens (what fits a host's memory). `chunk` must
 * be a multiple of 4: kernels that treat groups of 4 tokens together (llama.cpp's Q4_K gemm) then see the same
 * groups as in the whole micro-batch. Only the very last chunk has outputs.
 */
export function* chunks(n: number, ubatch: number, chunk: number): Generator<Chunk> {
  if (chunk < ubatch && chunk % 4 !== 0) throw new RangeError(`a prefill chunk of ${chunk} tokens is not a multiple of 4`);
  for (let u = 0; u < n; u += ubatch) {
    const batchRows = Math.min(ubatch, n - u);
    for (let c = 0; c < batchRows; c += chunk) {
      const m = Math.min(chunk, batchRows - c);
      yield { start: u + c, n: m, batchRows, outputs: u + c + m >= n ? "last" : "none" };
    }
  }
}

/** Receives named intermediates (llama.cpp's names, e.g. "attn_norm-3") to bisect a mismatch layer by layer. */
export type TraceFn = (name: string, values: Float32Array) => void;

export class Gemma {
  /** Debugging: when set, every intermediate of the forward pass is passed here (copy it to keep it). */
  trace: TraceFn | undefined;
  private ropeTable: Rope | undefined;
  private readonly maxPositions: number;
  private readonly accHead: Float32Array;
  private readonly embScale: number;
  readonly cfg: GemmaConfig;
  readonly backend: Backend;
  readonly weights: GemmaWeights;
  readonly act: Activations;
  /** Rows of act (the largest chunk). */
  readonly maxBatch: number;

  constructor(cfg: GemmaConfig, backend: Backend, weights: GemmaWeights, act: Activations, maxBatch: number, maxPositions: number) {
    this.cfg = cfg;
    this.backend = backend;
    this.weights = weights;
    this.act = act;
    this.maxBatch = maxBatch;
    this.maxPositions = maxPositions;
    this.accHead = new Float32Array(cfg.headDim);
    this.embScale = Math.fround(Math.sqrt(cfg.dim));
  }

  /** RoPE's cos/sin table, made when a part with layers first needs it (a vocabulary slice never does). */
  get rope(): Rope {
    return (this.ropeTable ??= new Rope(this.cfg.headDim, this.cfg.ropeDims, this.cfg.ropeTheta, this.maxPositions));
  }

  /** Token embeddings scaled by sqrt(dim) into act.x (the shared matrix itself is never scaled). */
  embed(tokens: number[]): Float32Array {
    const { dim, vocabSize } = this.cfg;
    const e = this.weights.tokenEmbd;
    const [v0, v1] = this.weights.vocab;
    if (!e) throw new Error("this part of the model holds no token embeddings");
    tokens.forEach((tok, t) => {
      if (!(tok >= 0 && tok < vocabSize)) throw new RangeError(`token id ${tok} is outside the vocabulary of ${vocabSize}`);
      if (tok < v0 || tok >= v1) throw new RangeError(`token id ${tok} is outside this part's vocabulary slice [${v0}, ${v1})`);
      const row = this.act.x.subarray(t * dim, (t + 1) * dim);
      this.backend.dequantizeRow(e, tok - v0, row);
      for (let i = 0; i < dim; i++) row[i] = Math.fround(row[i]! * this.embScale);
    });
    return this.act.x.subarray(0, tokens.length * dim);
  }

  /**
   * Run layers [from, to) on the hidden states in act.x for `n` tokens at positions pos..pos+n-1, writing their
   * keys and values into `cache`, which must already hold positions 0..pos-1. `batchRows` (default n): rows of
   * the llama.cpp micro-batch these tokens belong to (see Chunk). `outputs` applies when the range ends with the
   * final layer. Returns the number of rows left in act.x.
   */
  layers(n: number, pos: number, cache: KvCache, from = 0, to = this.cfg.nLayers, outputs: Outputs = "all", batchRows = n): number {
    const { dim, hiddenDim, nHeads, nKvHeads, headDim, normEps, nLayers } = this.cfg;
    const { x, xb, q, k, v, att, hb, hb2 } = this.act;
    const b = this.backend;
    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const qScale = Math.fround(1 / Math.fround(Math.sqrt(headDim)));
    const headsPerKv = nHeads / nKvHeads;
    let xs = x.subarray(0, n * dim);
    let rows = batchRows; // the micro-batch's row count, for kernel choices (1 once only the last row is left)
    const rope = this.rope;

    for (let l = from; l < to; l++) {
      const w = this.weights.layers[l];
      if (!w) throw new Error(`this part of the model does not hold layer ${l}`);
      const kc = cache.k[l]!; // (seqLen, kvDim) f16
      const vc = cache.v[l]!; // (seqLen, kvDim) f16

      // attention: xb = rmsnorm(x) * attn_norm; q, k, v = projections
      rmsNorm(xb.subarray(0, n * dim), xs, w.attnNorm, normEps);
      this.trace?.(`attn_norm-${l}`, xb.subarray(0, n * dim));
      b.matmul(q, w.wq, xb, n, rows);
      b.matmul(k, w.wk, xb, n, rows);
      b.matmul(v, w.wv, xb, n, rows);
      for (let t = 0; t < n; t++) {
        const qt = q.subarray(t * qDim, (t + 1) * qDim);
        const kt = k.subarray(t * kvDim, (t + 1) * kvDim);
        rope.apply(qt, nHeads, pos + t);
        rope.apply(kt, nKvHeads, pos + t);
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
      // llama.cpp computes micro-batches of 64+ tokens another way (tiled); the arithmetic follows it.
      const tiled = rows >= FA_TILED_MIN_ROWS;
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
      if (l === nLayers - 1 && outputs === "none") return 0; // nothing reads this chunk's output
      // x += wo(att)
      b.matmul(xb, w.wo, att, n, rows);
      for (let i = 0; i < n * dim; i++) x[i] = Math.fround(x[i]! + xb[i]!);
      if (l === nLayers - 1 && outputs === "last" && n > 1) {
        x.copyWithin(0, (n - 1) * dim, n * dim);
        n = 1;
        rows = 1;
        xs = x.subarray(0, dim);
      }
      this.trace?.(`sa_out-${l}`, xs);

      // feed-forward: x += down(gelu_tanh(gate(h)) * up(h)), h = rmsnorm(x) * ffn_norm
      rmsNorm(xb.subarray(0, n * dim), xs, w.ffnNorm, normEps);
      b.matmul(hb, w.wGate, xb, n, rows);
      b.matmul(hb2, w.wUp, xb, n, rows);
      (b.geglu ? b.geglu.bind(b) : geglu)(hb.subarray(0, n * hiddenDim), hb.subarray(0, n * hiddenDim), hb2.subarray(0, n * hiddenDim));
      this.trace?.(`ffn_geglu-${l}`, hb.subarray(0, n * hiddenDim));
      b.matmul(xb, w.wDown, hb, n, rows);
      for (let i = 0; i < n * dim; i++) x[i] = Math.fround(x[i]! + xb[i]!);
      this.trace?.(`l_out-${l}`, xs);
    }
    return n;
  }

  /** Final norm and the tied LM head on one hidden state `h` (dim): this part's slice of the logits. */
  head(h: Float32Array): Float32Array {
    const { dim } = this.cfg;
    const { tokenEmbd, outputNorm } = this.weights;
    if (!tokenEmbd || !outputNorm) throw new Error("this part of the model holds no LM head");
    const xb = this.act.xb.subarray(0, dim);
    rmsNorm(xb, h.subarray(0, dim), outputNorm, this.cfg.normEps);
    this.trace?.("result_norm", xb);
    this.backend.matmul(this.act.logits, tokenEmbd, xb, 1);
    this.trace?.("result_output", this.act.logits);
    return this.act.logits;
  }
}
