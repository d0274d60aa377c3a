// The Gemma forward pass (after karpathy/llama2.c run.c): architecture only; tensor bytes are placed by part.ts,
// matrix kernels live in the backend. A Gemma holds a *part* of the model: any range of layers and/or a slice of
// the vocabulary (the tied embedding / LM head). The whole model is the part that holds all of both; a sharded
// model is several parts in several hosts that pass the hidden state along. pipeline.ts drives the steps below
// (embed, layers, head) over the chunks that chunks() cuts a prompt into. What each architecture computes is
// described in config.ts (layerSteps, layerKind and the config's flags); this file executes that description.
import type { Backend, Weight } from "../backend/backend.ts";
import { layerKind, layerSteps, type GemmaConfig, type LayerKind, type LayerStep } from "../config.ts";
import { f32ToF16, tanhf } from "../numeric.ts";
import { attendHead, attendHeadTiled, FA_TILED_MIN_ROWS, geglu, rmsNorm, Rope, visibleCells } from "./ops.ts";
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
  attnPostNorm?: Float32Array; // (dim) Gemma 2 and 3
  ffnPostNorm?: Float32Array; //  (dim) Gemma 2 and 3
  qNorm?: Float32Array; //        (headDim) Gemma 3
  kNorm?: Float32Array; //        (headDim) Gemma 3
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

/**
 * Rows of one sequence in a batched forward pass: `n` tokens at positions pos.. whose keys and values go into
 * `cache` (which holds positions 0..pos-1), computed as rows of a llama.cpp micro-batch of `batchRows` (1: a
 * decode token) with `outputs` at the final layer.
 */
export interface RowSegment {
  cache: KvCache;
  pos: number;
  n: number;
  batchRows: number;
  outputs: Outputs;
}

/** Receives named intermediates (llama.cpp's names, e.g. "attn_norm-3") to bisect a mismatch layer by layer. */
export type TraceFn = (name: string, values: Float32Array) => void;

export class Gemma {
  /** Debugging: when set, every intermediate of the forward pass is passed here (copy it to keep it). */
  trace: TraceFn | undefined;
  private ropeTables: (Rope | undefined)[] = [];
  private readonly maxPositions: number;
  private readonly accHead: Float32Array;
  /** The steps of every layer (config.ts layerSteps): this file executes that description. */
  private readonly steps: LayerStep[];
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
    this.steps = layerSteps(cfg);
  }

  /** The RoPE cos/sin table of a layer kind (global or local: their own base and scale), made when first needed. */
  ropeOf(kind: LayerKind): Rope {
    return (this.ropeTables[kind.local ? 1 : 0] ??= new Rope(this.cfg.headDim, this.cfg.ropeDims, kind.ropeTheta, this.maxPositions, kind.ropeScale));
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
      for (let i = 0; i < dim; i++) row[i] = Math.fround(row[i]! * this.cfg.embedScale);
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
    return this.layersBatch([{ cache, pos, n, batchRows, outputs }], from, to)[0]!;
  }

  /**
   * Layers [from, to) on a batch of row segments from several sequences, their rows one after another in act.x
   * (see RowSegment). Each segment computes exactly as it would alone: its rows' matrix products take the
   * kernel its own batchRows picks (segments of single-token rows share one product, which reads each weight
   * once for all of them), its attention reads its own cache. Returns the rows left per segment (see Outputs);
   * the rows left stay in act.x in segment order.
   */
  layersBatch(segs: RowSegment[], from = 0, to = this.cfg.nLayers): number[] {
    const { dim, hiddenDim, nHeads, nKvHeads, headDim, normEps, nLayers, qScale, attnSoftcap } = this.cfg;
    const { x, xb, q, k, v, att, hb, hb2 } = this.act;
    const b = this.backend;
    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const headsPerKv = nHeads / nKvHeads;
    // per segment: its first row in act.x, its rows, and the micro-batch row count that picks kernels
    let live = segs.map((s, i) => ({ i, row: 0, n: s.n, rows: s.batchRows }));
    let at = 0;
    for (const s of live) (s.row = at), (at += s.n);
    let total = at;
    if (total > this.maxBatch) throw new RangeError(`${total} rows are more than a chunk of ${this.maxBatch}`);
    // matrix products over groups of segments: consecutive single-token rows together, other segments alone
    const groupsOf = (ls: typeof live) => {
      const gs: { row: number; n: number; rows: number }[] = [];
      for (const s of ls) {
        const last = gs[gs.length - 1];
        if (s.rows === 1 && last && last.rows === 1 && last.row + last.n === s.row) last.n += s.n;
        else gs.push({ row: s.row, n: s.n, rows: s.rows });
      }
      return gs;
    };
    let groups = groupsOf(live);
    const mm = (out: Float32Array, od: number, w: Weight, inp: Float32Array, id: number) => {
      for (const g of groups) b.matmul(out.subarray(g.row * od), w, inp.subarray(g.row * id), g.n, g.rows);
    };

    const ret = segs.map((s) => s.n);
    const rows = (a: Float32Array, width: number) => a.subarray(0, total * width);
    for (let l = from; l < to; l++) {
      const w = this.weights.layers[l];
      if (!w) throw new Error(`this part of the model does not hold layer ${l}`);
      const kind = layerKind(this.cfg, l);
      const final = l === nLayers - 1;
      for (const step of this.steps) {
        switch (step) {
          case "attn_norm":
            rmsNorm(rows(xb, dim), rows(x, dim), w.attnNorm, normEps);
            this.trace?.(`attn_norm-${l}`, rows(xb, dim));
            break;
          case "qkv":
            mm(q, qDim, w.wq, xb, dim);
            mm(k, kvDim, w.wk, xb, dim);
            mm(v, kvDim, w.wv, xb, dim);
            break;
          case "qk_norm":
            rmsNorm(rows(q, qDim), rows(q, qDim), w.qNorm!, normEps); // rows of headDim: one per head
            rmsNorm(rows(k, kvDim), rows(k, kvDim), w.kNorm!, normEps);
            this.trace?.(`Qcur_normed-${l}`, rows(q, qDim));
            this.trace?.(`Kcur_normed-${l}`, rows(k, kvDim));
            break;
          case "rope_store": {
            const rope = this.ropeOf(kind);
            for (const s of live) {
              const { cache, pos } = segs[s.i]!;
              const kc = cache.k[l]!; // (cells, kvDim) f16: position p in cell p % cells
              const vc = cache.v[l]!;
              const cells = cache.cells[l]!;
              for (let j = 0; j < s.n; j++) {
                const t = s.row + j;
                const qt = q.subarray(t * qDim, (t + 1) * qDim);
                const kt = k.subarray(t * kvDim, (t + 1) * kvDim);
                rope.apply(qt, nHeads, pos + j);
                rope.apply(kt, nKvHeads, pos + j);
                for (let i = 0; i < qDim; i++) qt[i] = Math.fround(qt[i]! * qScale);
                const base = ((pos + j) % cells) * kvDim;
                for (let i = 0; i < kvDim; i++) {
                  kc[base + i] = f32ToF16(kt[i]!);
                  vc[base + i] = f32ToF16(v[t * kvDim + i]!);
                }
              }
            }
            this.trace?.(`Qcur_scaled-${l}`, rows(q, qDim));
            this.trace?.(`Vcur-${l}`, rows(v, kvDim));
            break;
          }
          case "attention":
            // each query head attends over the cells its window shows it (causal; all positions on a global
            // layer), query heads sharing KV heads in groups. llama.cpp computes micro-batches of 64+ tokens
            // another way (tiled); the arithmetic follows it.
            for (const s of live) {
              const { cache, pos } = segs[s.i]!;
              const kc = cache.k[l]!, vc = cache.v[l]!;
              const cells = cache.cells[l]!;
              const filled = Math.min(cells, pos + s.n);
              const tiled = s.rows >= FA_TILED_MIN_ROWS;
              if (tiled && b.attendHeadTiled && headDim % 4 === 0) {
                for (let h = 0; h < nHeads; h++) {
                  const kvh = Math.floor(h / headsPerKv);
                  b.attendHeadTiled(att.subarray(s.row * qDim + h * headDim), q.subarray(s.row * qDim + h * headDim), qDim, kc, vc, pos, s.n, cells, kind.window, kvDim, kvh * headDim, headDim, attnSoftcap);
                }
                continue;
              }
              for (let j = 0; j < s.n; j++) {
                const t = s.row + j;
                const vis = visibleCells(pos + j, cells, kind.window);
                if (!tiled && b.attendHead && headDim % 4 === 0) {
                  // the query heads of a KV head together (each head's bits as alone; they share its K and V reads)
                  for (let kvh = 0; kvh < nHeads / headsPerKv; kvh++) {
                    const h0 = t * qDim + kvh * headsPerKv * headDim, h1 = h0 + headsPerKv * headDim;
                    b.attendHead(att.subarray(h0, h1), q.subarray(h0, h1), kc, vc, vis, kvDim, kvh * headDim, attnSoftcap, headsPerKv);
                  }
                  continue;
                }
                for (let h = 0; h < nHeads; h++) {
                  const kvh = Math.floor(h / headsPerKv);
                  const o = att.subarray(t * qDim + h * headDim, t * qDim + (h + 1) * headDim);
                  const qh = q.subarray(t * qDim + h * headDim, t * qDim + (h + 1) * headDim);
                  if (tiled) attendHeadTiled(o, qh, kc, vc, vis, filled, kvDim, kvh * headDim, this.accHead, attnSoftcap);
                  else attendHead(o, qh, kc, vc, vis, kvDim, kvh * headDim, this.accHead, attnSoftcap);
                }
              }
            }
            this.trace?.(`kqv_out-${l}`, rows(att, qDim));
            break;
          case "attn_out":
            if (final && segs.every((s) => s.outputs === "none")) return segs.map(() => 0); // nothing reads this output
            mm(xb, dim, w.wo, att, qDim);
            break;
          case "attn_post_norm":
            rmsNorm(rows(xb, dim), rows(xb, dim), w.attnPostNorm!, normEps);
            this.trace?.(`attn_post_norm-${l}`, rows(xb, dim));
            break;
          case "attn_residual":
            for (let i = 0; i < total * dim; i++) x[i] = Math.fround(x[i]! + xb[i]!);
            if (final) {
              // only the rows whose outputs are wanted go on (llama.cpp's inp_out_ids): all, the last one, or none.
              // llama.cpp selects them right after attn_out; every step between is row by row, so it is the same.
              const kept: typeof live = [];
              let to = 0;
              for (const s of live) {
                const o = segs[s.i]!.outputs;
                const keep = o === "all" ? s.n : o === "last" ? 1 : 0;
                if (keep === 0) continue;
                const fromRow = s.row + s.n - keep;
                if (fromRow !== to) x.copyWithin(to * dim, fromRow * dim, (fromRow + keep) * dim);
                // rows left after llama.cpp's output-row selection are products of their own count: one for "last"
                kept.push({ i: s.i, row: to, n: keep, rows: o === "last" ? 1 : s.rows });
                to += keep;
              }
              for (const s of segs.keys()) ret[s] = 0;
              for (const s of kept) ret[s.i] = s.n;
              live = kept;
              total = to;
              groups = groupsOf(live);
            }
            this.trace?.(`sa_out-${l}`, rows(x, dim));
            break;
          case "ffn_norm":
            rmsNorm(rows(xb, dim), rows(x, dim), w.ffnNorm, normEps);
            break;
          case "ffn":
            mm(hb, hiddenDim, w.wGate, xb, dim);
            mm(hb2, hiddenDim, w.wUp, xb, dim);
            (b.geglu ? b.geglu.bind(b) : geglu)(rows(hb, hiddenDim), rows(hb, hiddenDim), rows(hb2, hiddenDim));
            this.trace?.(`ffn_geglu-${l}`, rows(hb, hiddenDim));
            mm(xb, dim, w.wDown, hb, hiddenDim);
            break;
          case "ffn_post_norm":
            rmsNorm(rows(xb, dim), rows(xb, dim), w.ffnPostNorm!, normEps);
            break;
          case "ffn_residual":
            for (let i = 0; i < total * dim; i++) x[i] = Math.fround(x[i]! + xb[i]!);
            this.trace?.(`l_out-${l}`, rows(x, dim));
            break;
        }
      }
    }
    return ret;
  }

  /** Final norm and the tied LM head on one hidden state `h` (dim): this part's slice of the logits. */
  head(h: Float32Array): Float32Array {
    return this.headRows(h, 1);
  }

  /**
   * The LM head on `m` final hidden states (m, dim), each a one-token product as llama.cpp computes an output
   * row: (m, slice) logits, an arena view that the next call overwrites.
   */
  headRows(h: Float32Array, m: number): Float32Array {
    const { dim } = this.cfg;
    const { tokenEmbd, outputNorm } = this.weights;
    if (!tokenEmbd || !outputNorm) throw new Error("this part of the model holds no LM head");
    const slice = this.weights.vocab[1] - this.weights.vocab[0];
    if (m * slice > this.act.logits.length || m * dim > this.act.xb.length) throw new RangeError(`${m} output rows are more than this part holds logits for`);
    const xb = this.act.xb.subarray(0, m * dim);
    rmsNorm(xb, h.subarray(0, m * dim), outputNorm, this.cfg.normEps);
    this.trace?.("result_norm", xb);
    const logits = this.act.logits.subarray(0, m * slice);
    this.backend.matmul(logits, tokenEmbd, xb, m, 1);
    const cap = this.cfg.finalSoftcap;
    if (cap) {
      // final soft-capping as three ggml ops: scale by 1 / cap, tanh, scale by cap (Gemma 2)
      const inv = Math.fround(1 / cap);
      for (let i = 0; i < logits.length; i++) logits[i] = Math.fround(cap * tanhf(Math.fround(logits[i]! * inv)));
    }
    this.trace?.("result_output", logits);
    return logits;
  }
}
