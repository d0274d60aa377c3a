// One part of a Gemma model in one backend's arena: a range of layers and/or a slice of the vocabulary (the tied
// embedding / LM head), the KV caches of its layers for each sequence slot, and activations for one prefill chunk.
// The whole model is the part that holds everything. What a part needs is laid out by one function,
// `reservePart`, so that the size a plan computes (shard-plan.ts) is the size the loader allocates.
import type { Backend, Weight } from "../backend/backend.ts";
import { alignUp } from "../backend/backend.ts";
import type { ByteSource } from "../byte-source.ts";
import type { GemmaConfig } from "../config.ts";
import { GGML_TYPE, ggmlTypeName, isSupportedType, supportedTypeNames, typeLayout } from "../ggml-types.ts";
import { GgufError, type GgufTensorInfo } from "../gguf.ts";
import { dequantizeRow } from "../quant.ts";
import { Gemma, type Activations, type GemmaWeights, type LayerWeights, type Outputs } from "./gemma.ts";
import { canReuse, KvCache } from "./kv-cache.ts";

/** What a part holds: layers [from, to) and/or rows [from, to) of token_embd. */
export interface PartSpec {
  layers?: [number, number];
  vocab?: [number, number];
}

/**
 * How a part is sized: KV positions per sequence, sequences it keeps KV for, tokens per forward step (a prefill
 * chunk, or decode tokens of several sequences with a chunk of a prompt), and the most rows of logits one step
 * returns (default 1: one sequence at a time).
 */
export interface PartSizing {
  contextSize: number;
  sequences: number;
  chunk: number;
  outputs?: number;
}

/** The tensor infos a part needs, by name (a whole GGUF's, or the subset a coordinator sends a shard). */
export type TensorLookup = (name: string) => GgufTensorInfo | undefined;

/**
 * One tensor of a part: a Weight whose `offset` is where its bytes are in the file (rows held: a vocabulary
 * slice holds some rows of token_embd; `repacked` follows the *whole* matrix's row count, as llama.cpp decides).
 */
export interface PartTensor extends Weight {
  kind: "matrix" | "vector";
}

export const LAYER_MATRICES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] as const;

/** The norm vectors of each layer of `cfg`'s architecture: [name, length, the LayerWeights field]. */
export function layerVectors(cfg: GemmaConfig): [string, number, keyof LayerWeights][] {
  const v: [string, number, keyof LayerWeights][] = [["attn_norm", cfg.dim, "attnNorm"], ["ffn_norm", cfg.dim, "ffnNorm"]];
  if (cfg.postNorms) v.push(["post_attention_norm", cfg.dim, "attnPostNorm"], ["post_ffw_norm", cfg.dim, "ffnPostNorm"]);
  if (cfg.qkNorm) v.push(["attn_q_norm", cfg.headDim, "qNorm"], ["attn_k_norm", cfg.headDim, "kNorm"]);
  return v;
}

/** The [rows, cols] of each Gemma matrix (ne1, ne0 in the file). */
function matrixShape(cfg: GemmaConfig, role: string): [number, number] {
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize } = cfg;
  const qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
  const shapes: Record<string, [number, number]> = {
    token_embd: [vocabSize, dim], attn_q: [qDim, dim], attn_k: [kvDim, dim], attn_v: [kvDim, dim], attn_output: [dim, qDim],
    ffn_gate: [hiddenDim, dim], ffn_up: [hiddenDim, dim], ffn_down: [dim, hiddenDim],
  };
  return shapes[role]!;
}

/** Look a tensor up and check its shape (ne0 first, as ggml writes it). */
export function checkedTensor(lookup: TensorLookup, name: string, dims: number[]): GgufTensorInfo {
  const t = lookup(name);
  if (!t) throw new GgufError(`missing tensor "${name}"`);
  const got = t.dims.slice();
  while (got.length > dims.length && got[got.length - 1] === 1) got.pop();
  if (got.length !== dims.length || got.some((d, i) => d !== dims[i])) {
    throw new GgufError(`tensor "${name}" has shape [${t.dims.join(", ")}], expected [${dims.join(", ")}]`);
  }
  return t;
}

/** A weight matrix, checked: present, its shape, a supported type, whole blocks per row. */
export function checkedMatrix(cfg: GemmaConfig, lookup: TensorLookup, name: string, role: string): GgufTensorInfo {
  const [rows, cols] = matrixShape(cfg, role);
  const info = checkedTensor(lookup, name, [cols, rows]);
  if (!isSupportedType(info.type)) {
    throw new GgufError(
      `tensor "${name}" has type ${ggmlTypeName(info.type)}, which this engine does not support (supported: ${supportedTypeNames()})`,
    );
  }
  if (cols % typeLayout(info.type).blockSize !== 0 || info.nbytes < 0) {
    throw new GgufError(`tensor "${name}": row length ${cols} is not a multiple of the ${ggmlTypeName(info.type)} block size`);
  }
  return info;
}

/** A norm vector of `n` values (default dim), checked. */
export function checkedVector(cfg: GemmaConfig, lookup: TensorLookup, name: string, n = cfg.dim): GgufTensorInfo {
  const info = checkedTensor(lookup, name, [n]);
  if (info.type !== GGML_TYPE.F32 && info.type !== GGML_TYPE.F16 && info.type !== GGML_TYPE.BF16) {
    throw new GgufError(`tensor "${name}" has type ${ggmlTypeName(info.type)}; norm weights must be F32, F16 or BF16`);
  }
  return info;
}

const isRepacked = (type: number, rows: number) => (type === GGML_TYPE.Q4_0 || type === GGML_TYPE.Q4_K) && rows % 8 === 0;

/** The tensors a part holds, in file order of roles, every one checked. */
export function partTensors(cfg: GemmaConfig, lookup: TensorLookup, spec: PartSpec): PartTensor[] {
  checkSpec(cfg, spec);
  const out: PartTensor[] = [];
  const matrix = (name: string, role: string) => {
    const info = checkedMatrix(cfg, lookup, name, role);
    const [rows, cols] = matrixShape(cfg, role);
    out.push({ name, kind: "matrix", type: info.type, rows, cols, offset: info.offset, nbytes: info.nbytes, repacked: isRepacked(info.type, rows) });
  };
  const vector = (name: string, n = cfg.dim) => {
    const info = checkedVector(cfg, lookup, name, n);
    out.push({ name, kind: "vector", type: info.type, rows: 1, cols: n, offset: info.offset, nbytes: info.nbytes, repacked: false });
  };
  if (spec.vocab) {
    // rows [v0, v1) of the embedding: whole rows, so a slice is a byte range of the tensor
    const info = checkedMatrix(cfg, lookup, "token_embd.weight", "token_embd");
    const [v0, v1] = spec.vocab;
    const rowBytes = info.nbytes / cfg.vocabSize;
    out.push({
      name: "token_embd.weight", kind: "matrix", type: info.type, rows: v1 - v0, cols: cfg.dim,
      offset: info.offset + v0 * rowBytes, nbytes: (v1 - v0) * rowBytes, repacked: isRepacked(info.type, cfg.vocabSize),
    });
  }
  if (spec.layers) {
    for (let l = spec.layers[0]; l < spec.layers[1]; l++) {
      for (const m of LAYER_MATRICES) matrix(`blk.${l}.${m}.weight`, m);
      for (const [v, n] of layerVectors(cfg)) vector(`blk.${l}.${v}.weight`, n);
    }
  }
  if (spec.vocab) vector("output_norm.weight");
  return out;
}

function checkSpec(cfg: GemmaConfig, spec: PartSpec): void {
  const ok = (r: [number, number] | undefined, n: number) => !r || (Number.isInteger(r[0]) && Number.isInteger(r[1]) && 0 <= r[0] && r[0] < r[1] && r[1] <= n);
  if (!ok(spec.layers, cfg.nLayers)) throw new RangeError(`layers [${spec.layers}] are not a range within the model's ${cfg.nLayers} layers`);
  if (!ok(spec.vocab, cfg.vocabSize)) throw new RangeError(`vocab [${spec.vocab}] is not a range within the model's ${cfg.vocabSize} tokens`);
  if (!spec.layers && !spec.vocab) throw new RangeError("a part must hold some layers or a slice of the vocabulary");
  // slices start on whole groups of rows (the repacked layouts interleave 4 or 8 rows)
  if (spec.vocab && spec.vocab[0] % 8 !== 0) throw new RangeError(`vocab slice [${spec.vocab}] must start at a multiple of 8 rows`);
}

/** Arena bytes of a part by what they hold (each reservation aligned as the backends align it). */
export interface PartBytes {
  weights: number;
  kv: number;
  activations: number;
  scratch: number;
  /** Everything: what the part reserves in its arena (a backend's own fixed bytes not included). */
  total: number;
}

interface Reservations {
  tensors: { t: PartTensor; offset: number }[];
  caches: KvCache[];
  act: Record<keyof Activations, { offset: number; n: number }>;
  scratch: { offset: number; bytes: number };
}

/**
 * The one layout of a part's arena: tensors, then the KV caches of each sequence slot, then activations for a
 * chunk of `sizing.chunk` tokens, then the backend's matmul/attention scratch. `backend` may be a counting
 * stand-in (see partBytes): every reservation goes through `reserve`.
 */
function reservePart(backend: Backend, cfg: GemmaConfig, tensors: PartTensor[], spec: PartSpec, sizing: PartSizing): Reservations {
  const { dim, hiddenDim, nHeads, nKvHeads, headDim } = cfg;
  const qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
  const placed = tensors.map((t) => ({ t, offset: backend.reserve(t.kind === "vector" ? t.cols * 4 : t.nbytes) }));
  const caches: KvCache[] = [];
  if (spec.layers) for (let s = 0; s < sizing.sequences; s++) caches.push(new KvCache(backend, cfg, sizing.contextSize, spec.layers[0], spec.layers[1]));
  const c = sizing.chunk;
  const outs = sizing.outputs ?? 1;
  const L = spec.layers ? 1 : 0;
  const sizes: Record<keyof Activations, number> = {
    x: Math.max(c, outs) * dim, xb: (L ? Math.max(c, outs) : outs) * dim, q: L * c * qDim, k: L * c * kvDim, v: L * c * kvDim, att: L * c * qDim,
    hb: L * c * hiddenDim, hb2: L * c * hiddenDim, logits: spec.vocab ? outs * (spec.vocab[1] - spec.vocab[0]) : 0,
  };
  const act = Object.fromEntries(Object.entries(sizes).map(([k, n]) => [k, { offset: backend.reserve(n * 4), n }])) as Reservations["act"];
  const bytes = L ? backend.scratchBytes(Math.max(dim, qDim, hiddenDim), Math.max(c, outs), headDim) : backend.scratchBytes(dim, outs, 0);
  const scratch = { offset: bytes ? backend.reserve(bytes) : 0, bytes };
  return { tensors: placed, caches, act, scratch };
}

/** A stand-in backend that only counts what a layout reserves, with the scratch sizes of `like`. */
class CountingBackend {
  size = 0;
  private readonly scratch: (cols: number, n: number, headDim?: number) => number;
  constructor(scratch: (cols: number, n: number, headDim?: number) => number) {
    this.scratch = scratch;
  }
  reserve(bytes: number): number {
    const at = this.size;
    this.size += alignUp(bytes);
    return at;
  }
  scratchBytes(cols: number, n: number, headDim?: number): number {
    return this.scratch(cols, n, headDim);
  }
}

/** What a part reserves, by kind, for a backend whose scratch needs are `scratch` (e.g. wasmScratchBytes). */
export function partBytes(
  cfg: GemmaConfig, tensors: PartTensor[], spec: PartSpec, sizing: PartSizing, scratch: (cols: number, n: number, headDim?: number) => number,
): PartBytes {
  const counter = new CountingBackend(scratch);
  const r = reservePart(counter as unknown as Backend, cfg, tensors, spec, sizing);
  const weights = tensors.reduce((s, t) => s + alignUp(t.kind === "vector" ? t.cols * 4 : t.nbytes), 0);
  let kv = 0;
  if (spec.layers) for (let l = spec.layers[0]; l < spec.layers[1]; l++) kv += 2 * alignUp(KvCache.layerBytes(cfg, l, sizing.contextSize) / 2);
  kv *= r.caches.length;
  const activations = Object.values(r.act).reduce((s, a) => s + alignUp(a.n * 4), 0);
  const scratchBytes = alignUp(r.scratch.bytes);
  return { weights, kv, activations, scratch: scratchBytes, total: counter.size };
}

/** Rows of sequence `slot` in a forward step (see RowSegment). */
export interface SlotSegment {
  slot: number;
  pos: number;
  n: number;
  batchRows: number;
  outputs: Outputs;
}

/** A loaded part: its forward-pass pieces over its own arena, and the sequences it holds KV for. */
export class ModelPart {
  readonly spec: PartSpec;
  readonly gemma: Gemma;
  readonly caches: KvCache[];
  readonly backend: Backend;
  /** Positions held per sequence slot (0: free). A call at a later position than held is refused. */
  private readonly filled: number[];
  /**
   * Per slot, the highest position written plus one since it last started at position 0: a sliding-window ring
   * may hold positions up to there even after a shorter sequence took the slot's prefix over (see canReuse).
   */
  private readonly written: number[];

  constructor(spec: PartSpec, gemma: Gemma, caches: KvCache[], backend: Backend) {
    this.spec = spec;
    this.gemma = gemma;
    this.caches = caches;
    this.backend = backend;
    this.filled = caches.map(() => 0);
    this.written = caches.map(() => 0);
  }

  get sequencesInUse(): number {
    return this.filled.filter((n) => n > 0).length;
  }

  /** Scaled embeddings of `tokens` (all inside this part's vocabulary slice): (n, dim), an arena view. */
  embed(tokens: number[]): Float32Array {
    if (tokens.length > this.gemma.maxBatch) throw new RangeError(`${tokens.length} tokens are more than a chunk of ${this.gemma.maxBatch}`);
    return this.gemma.embed(tokens);
  }

  /**
   * This part's layers on `n` hidden states (n, dim) at positions pos.. of sequence `slot`; returns the rows left
   * (an arena view: see Outputs).
   */
  layers(x: Float32Array, slot: number, pos: number, n: number, batchRows: number, outputs: Outputs): Float32Array {
    return this.layersBatch(x, [{ slot, pos, n, batchRows, outputs }]).x;
  }

  /**
   * One forward step over rows of several sequences (their hidden states one after another in `x`): each
   * segment's rows at positions pos.. of its slot, as Gemma.layersBatch computes them. Returns the rows left (an
   * arena view, in segment order) and how many each segment kept.
   */
  layersBatch(x: Float32Array, segs: SlotSegment[]): { x: Float32Array; rows: number[] } {
    const { dim } = this.gemma.cfg;
    const range = this.spec.layers;
    if (!range) throw new Error("this part holds no layers");
    const total = segs.reduce((s, g) => s + g.n, 0);
    if (!(total >= 1 && total <= this.gemma.maxBatch) || x.length < total * dim) throw new RangeError(`${total} rows do not fit a step of ${this.gemma.maxBatch} (or fewer than ${total} rows came)`);
    const rowSegs = segs.map((g) => {
      const cache = this.caches[g.slot];
      if (!cache) throw new RangeError(`sequence slot ${g.slot} does not exist (this part has ${this.caches.length})`);
      if (!(g.n >= 1)) throw new RangeError(`a segment needs at least one row, got ${g.n}`);
      if (g.pos > this.filled[g.slot]!) {
        throw new Error(`sequence slot ${g.slot} holds ${this.filled[g.slot]} positions here, so position ${g.pos} cannot follow (was this part restarted?)`);
      }
      if (g.pos + g.n > cache.seqLen) throw new RangeError(`context full: ${g.pos + g.n} tokens do not fit in a context of ${cache.seqLen}`);
      return { cache, pos: g.pos, n: g.n, batchRows: g.batchRows, outputs: g.outputs };
    });
    if (new Set(segs.map((g) => g.slot)).size !== segs.length) throw new Error("a step holds at most one segment per sequence slot");
    const act = this.gemma.act.x;
    if (x.buffer !== act.buffer || x.byteOffset !== act.byteOffset) act.set(x.subarray(0, total * dim));
    const rows = this.gemma.layersBatch(rowSegs, range[0], range[1]);
    for (const g of segs) {
      this.filled[g.slot] = g.pos + g.n;
      this.written[g.slot] = g.pos === 0 ? g.pos + g.n : Math.max(this.written[g.slot]!, g.pos + g.n);
    }
    return { x: act.subarray(0, rows.reduce((a, r) => a + r, 0) * dim), rows };
  }

  /** This part's slice of the logits for one final hidden state (dim). */
  head(h: Float32Array): Float32Array {
    return this.gemma.head(h);
  }

  /** This part's slice of the logits for `m` final hidden states: (m, slice), each row computed alone. */
  headRows(h: Float32Array, m: number): Float32Array {
    return this.gemma.headRows(h, m);
  }

  /** Positions held by sequence slot `slot`. */
  filledIn(slot: number): number {
    return this.filled[slot] ?? 0;
  }

  /** Copy the keys and values of positions [0, n) from slot `from` to slot `to` (a shared prompt prefix). */
  copyKv(from: number, to: number, n: number): void {
    const a = this.caches[from], b = this.caches[to];
    if (!a || !b) throw new RangeError(`sequence slots ${from} and ${to} must exist (this part has ${this.caches.length})`);
    if (n > this.filled[from]!) throw new RangeError(`slot ${from} holds ${this.filled[from]} positions, not ${n}`);
    if (!canReuse(this.gemma.cfg, a.seqLen, this.written[from]!, n)) throw new RangeError(`slot ${from} no longer holds the sliding-window positions before ${n} (its rings have moved on)`);
    b.copyFrom(a, n, this.written[from]!);
    this.filled[to] = n;
    this.written[to] = this.written[from]!;
  }

  /** The sequence in `slot` is over: its positions are free for the next one. */
  release(slot: number): void {
    if (slot >= 0 && slot < this.filled.length) this.filled[slot] = this.written[slot] = 0;
  }
}

/** A norm vector's values as f32, whatever its stored type. */
export async function readVector(src: ByteSource, info: { type: number; offset: number; nbytes: number }, n: number, out: Float32Array = new Float32Array(n)): Promise<Float32Array> {
  dequantizeRow(info.type, await src.read(info.offset, info.nbytes), 0, n, out);
  return out;
}

/**
 * Load a part: plan its arena, then read each of its tensors' bytes from `src` straight into it (a vocabulary
 * slice reads only its rows). A read that fails names the tensor.
 */
export async function loadPart(
  src: ByteSource, backend: Backend, cfg: GemmaConfig, lookup: TensorLookup, spec: PartSpec, sizing: PartSizing,
  opts: { onProgress?: (loaded: number, total: number) => void } = {},
): Promise<ModelPart> {
  if (!(Number.isInteger(sizing.chunk) && sizing.chunk >= 1)) throw new RangeError(`a chunk must be a positive integer, got ${sizing.chunk}`);
  if (!(Number.isInteger(sizing.sequences) && sizing.sequences >= 1)) throw new RangeError(`sequences must be a positive integer, got ${sizing.sequences}`);
  const tensors = partTensors(cfg, lookup, spec);
  const r = reservePart(backend, cfg, tensors, spec, sizing);
  backend.commit();
  backend.setScratch(r.scratch.offset, r.scratch.bytes);

  const total = tensors.reduce((s, t) => s + t.nbytes, 0);
  let loaded = 0;
  const weights = new Map<string, Weight | Float32Array>();
  const named = <T>(t: PartTensor, p: Promise<T>) => p.catch((e: Error) => {
    throw new Error(`tensor "${t.name}" (${t.nbytes} bytes at offset ${t.offset}): ${e.message}`);
  });
  for (const { t, offset } of r.tensors) {
    if (t.kind === "vector") {
      weights.set(t.name, await named(t, readVector(src, t, t.cols, backend.f32(offset, t.cols))));
    } else {
      const { kind: _, ...file } = t;
      const w: Weight = { ...file, offset }; // the same matrix, at its place in the arena
      await named(t, src.read(t.offset, t.nbytes, backend.bytes(offset, t.nbytes)));
      backend.prepareWeight(w);
      weights.set(t.name, w);
      await new Promise((res) => setTimeout(res, 0)); // a host's other work (progress probes) gets a turn
    }
    loaded += t.nbytes;
    opts.onProgress?.(loaded, total);
  }
  if (backend.warmWeight) {
    for (const w of weights.values()) {
      if (w instanceof Float32Array) continue;
      backend.warmWeight(w);
      await new Promise((res) => setTimeout(res, 0));
    }
  }
  const m = (name: string) => weights.get(name) as Weight;
  const v = (name: string) => weights.get(name) as Float32Array;
  const layers: (LayerWeights | undefined)[] = new Array(cfg.nLayers).fill(undefined);
  if (spec.layers) {
    for (let l = spec.layers[0]; l < spec.layers[1]; l++) {
      const p = `blk.${l}.`;
      const lw: LayerWeights = {
        attnNorm: v(`${p}attn_norm.weight`), wq: m(`${p}attn_q.weight`), wk: m(`${p}attn_k.weight`), wv: m(`${p}attn_v.weight`),
        wo: m(`${p}attn_output.weight`), ffnNorm: v(`${p}ffn_norm.weight`), wGate: m(`${p}ffn_gate.weight`), wUp: m(`${p}ffn_up.weight`),
        wDown: m(`${p}ffn_down.weight`),
      };
      for (const [name, , field] of layerVectors(cfg)) (lw as unknown as Record<string, Float32Array>)[field] = v(`${p}${name}.weight`);
      layers[l] = lw;
    }
  }
  const gw: GemmaWeights = {
    tokenEmbd: spec.vocab ? m("token_embd.weight") : undefined,
    vocab: spec.vocab ?? [0, 0],
    layers,
    outputNorm: spec.vocab ? v("output_norm.weight") : undefined,
  };
  const act = Object.fromEntries(Object.entries(r.act).map(([k, a]) => [k, backend.f32(a.offset, a.n)])) as unknown as Activations;
  for (const c of r.caches) c.bind();
  const gemma = new Gemma(cfg, backend, gw, act, sizing.chunk, sizing.contextSize);
  return new ModelPart(spec, gemma, r.caches, backend);
}
