// The sampler's passes over the whole vocabulary in WebAssembly (wasm/kernels/softmax.ts): the largest logit, the
// weights exp((l - max) / T) with their sum, top-p's buckets and the ids they select, and the draw's walk (the
// per-setting figures: `npm run bench:sampling`'s second table). At Gemma's 256k ids the exp pass costs ~1 ms in
// f64x2 against ~2.3 ms for Math.exp in a loop (~9 ns a call), and the sampler runs once per generated token, so it
// is most of what sampling at temperature 1 costs beyond greedy (docs/performance.md "What sampling costs").
// The weights are f64 and agree with Math.exp to ~3e-16 relative; only the order of the sum differs (four lanes).
//
// A host provides a compiled non-shared kernels build (build/kernels-simd.wasm or -relaxed.wasm) with
// provideSamplerWasm(); without one the sampler runs the same passes in JavaScript. One instance serves every
// sampler of the isolate: a sampling call is synchronous, so calls never interleave.

interface SoftmaxExports {
  exp_weights(x: number, w: number, n: number, m: number, t: number, cut: number): number;
  max_f32(x: number, n: number): number;
  pick_index(w: number, n: number, r: number): number;
  bucket_mass(x: number, w: number, b: number, mass: number, n: number, m: number, scale: number, range: number, buckets: number): void;
  select_ids(b: number, n: number, lo: number, hi: number, out: number): number;
}

import type { VocabPasses } from "./sampler.ts";

const PAGE = 65536;
/** Top-p's buckets (Sampler.nucleus): the last one holds everything further below. */
export const NUCLEUS_BUCKETS = 4096;
const align = (bytes: number) => Math.ceil(bytes / 16) * 16;

/**
 * Where each array lies for n ids: past the module's static data (from 1024: vector constants, tables;
 * wasm-quantizer.ts), the values (f32), their weights (f64), their top-p buckets (u16), the ids top-p selects
 * (i32) and the buckets' mass (f64).
 */
function layout(n: number) {
  const x = 16384, w = x + align(n * 4), b = w + align(n * 8), ids = b + align(n * 2), mass = ids + align(n * 4);
  return { x, w, b, ids, mass, end: mass + (NUCLEUS_BUCKETS + 1) * 8 };
}

/**
 * The WebAssembly memory the sampler's kernels hold for a vocabulary of `nVocab` ids: 18 bytes an id (~4.6 MB at
 * 256k), in whole pages. The coordinator reserves it beside the grammar engine's (shard-plan.ts coordinatorReserveBytes).
 */
export function samplerMemoryBytes(nVocab: number): number {
  return Math.ceil(layout(nVocab).end / PAGE) * PAGE;
}

/** The sampler's passes (sampler.ts VocabPasses) on the kernels, over their own memory. */
export class SoftmaxKernels implements VocabPasses {
  private readonly memory = new WebAssembly.Memory({ initial: 1 });
  private readonly k: SoftmaxExports;
  private n = 0;
  private at = layout(0);
  private x = new Float32Array(0);
  /** The weights of the last exp pass that stored them: valid until the next load. */
  weights = new Float64Array(0);
  /** The top-p bucket of each id and each bucket's mass, after buckets(). */
  bucketOf = new Uint16Array(0);
  mass = new Float64Array(0);
  private ids = new Int32Array(0);

  constructor(module: WebAssembly.Module) {
    const env = { memory: this.memory, abort: () => { throw new Error("wasm abort"); } };
    this.k = new WebAssembly.Instance(module, { env }).exports as unknown as SoftmaxExports;
  }

  /** Copy the values every following call reads (until the next load). */
  load(l: Float32Array): void {
    const n = l.length;
    const end = samplerMemoryBytes(n);
    if (end > this.memory.buffer.byteLength) this.memory.grow((end - this.memory.buffer.byteLength) / PAGE);
    if (n !== this.n || this.x.buffer !== this.memory.buffer) {
      const at = (this.at = layout(n)), buf = this.memory.buffer;
      this.n = n;
      this.x = new Float32Array(buf, at.x, n);
      this.weights = new Float64Array(buf, at.w, n);
      this.bucketOf = new Uint16Array(buf, at.b, n);
      this.mass = new Float64Array(buf, at.mass, NUCLEUS_BUCKETS + 1);
      this.ids = new Int32Array(buf, at.ids, n);
    }
    this.x.set(l);
  }

  /** The largest value loaded (-Infinity for none; NaN is passed over). */
  max(): number {
    return this.k.max_f32(this.at.x, this.n);
  }

  /** sum of exp((x - m) / t) over the values x >= cut (0 for the others), kept in `weights` when `store`. */
  expSum(m: number, t: number, cut: number, store: boolean): number {
    return this.k.exp_weights(this.at.x, store ? this.at.w : 0, this.n, m, t, cut);
  }

  /** Top-p's buckets of the loaded values over `range` below m, `scale` buckets a unit, with `weights` as their mass. */
  buckets(m: number, scale: number, range: number): void {
    this.k.bucket_mass(this.at.x, this.at.w, this.at.b, this.at.mass, this.n, m, scale, range, NUCLEUS_BUCKETS);
  }

  /** The ids in buckets below c (a copy) and those in bucket c (Sampler.nucleus's kept and crossing ids). */
  select(c: number): { kept: Int32Array; crossing: number[] } {
    const nk = this.k.select_ids(this.at.b, this.n, 0, c, this.at.ids);
    const kept = this.ids.slice(0, nk);
    const nc = this.k.select_ids(this.at.b, this.n, c, c + 1, this.at.ids);
    return { kept, crossing: Array.from(this.ids.subarray(0, nc)) };
  }

  /** A draw from `weights` with r a uniform number times their total (Sampler.pick's walk). */
  pick(r: number): number {
    return this.k.pick_index(this.at.w, this.n, r);
  }
}

let shared: SoftmaxKernels | null = null;

/** The host's compiled kernels (a non-shared build) for the sampler; null: back to JavaScript. */
export function provideSamplerWasm(module: WebAssembly.Module | null): void {
  shared = module ? new SoftmaxKernels(module) : null;
}

/** The isolate's sampler kernels, when provided. */
export const samplerKernels = (): SoftmaxKernels | null => shared;
