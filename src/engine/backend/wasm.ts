// WebAssembly SIMD backend: the arena is the instance's linear memory (weights live there once), and the
// matrix kernels come from wasm/kernels.ts. The host hands in a compiled WebAssembly.Module (workerd imports
// it statically; Node reads it from build/), so this file has no host imports. One instance per backend.
// A host with threads (Node) may build the backend over a shared memory and hand it KernelThreads: matrix
// products then split their rows across the threads (each row's sum is unchanged, so are the results).
import { GGML_TYPE, ggmlTypeName } from "../ggml-types.ts";
import { dequantizeRow } from "../quant.ts";
import { QK_K } from "../quant-k.ts";
import { GELU_F16 } from "../model/ops.ts";
import { alignUp, type Backend, type Weight } from "./backend.ts";

interface KernelExports {
  quantize_q8_0(x: number, qs: number, ds: number, sums: number, n: number, ss: number): void;
  quantize_q8_k(x: number, qs: number, ds: number, bsums: number, n: number): void;
  q8k_interleave4?(qs: number, ntok: number, cols: number, out: number): void;
  matmul_q5_0(w: number, rows: number, cols: number, qs: number, ds: number, ntok: number, out: number, ostride: number): void;
  matmul_q_min(five: number, w: number, rows: number, cols: number, qs: number, ds: number, ss: number, ntok: number, out: number, ostride: number): void;
  round_f16(x: number, n: number): void;
  round_bf16(x: number, n: number): void;
  matmul_q4_0(w: number, rows: number, cols: number, qs: number, ds: number, ntok: number, out: number, ostride: number): void;
  matmul_q8_0(w: number, rows: number, cols: number, qs: number, ds: number, ntok: number, out: number, ostride: number): void;
  repack_q8_0_rows(w: number, rows: number, cols: number, tmp: number, offset: number): number;
  q8_sign_split(qs: number, n: number, ax: number): void;
  q8_offset_interleave(qs: number, ds: number, ntok: number, cols: number, out: number, dg: number): void;
  dot_u8_probe(a: number, b: number, c: number): number;
  matmul_q8_0_rows(w: number, rows: number, cols: number, qs: number, ds: number, ax: number, ntok: number, out: number, ostride: number, subnormal: number, offset: number, dg: number): void;
  matmul_f16(w: number, rows: number, cols: number, x: number, ntok: number, out: number, ostride: number, tiny: number): void;
  matmul_bf16(w: number, rows: number, cols: number, x: number, ntok: number, out: number, ostride: number, tiny: number): void;
  matmul_f32(w: number, rows: number, cols: number, x: number, ntok: number, out: number, ostride: number, tiny: number): void;
  repack_q4_0_x4(w: number, rows: number, cols: number, tmp: number): void;
  repack_q4_k_x4(w: number, rows: number, cols: number, tmp: number): void;
  repack_q6_k(w: number, nblocks: number): void;
  dequant_q4_0_x4_row(w: number, cols: number, row: number, out: number): void;
  matmul_q4_0_x4(w: number, rows: number, cols: number, qs: number, ds: number, sums: number, ntok: number, out: number, ostride: number): void;
  attend_f16(out: number, q: number, k: number, v: number, a0: number, a1: number, b0: number, b1: number, stride: number, offset: number, d: number, nh: number, scratch: number, cap: number): void;
  attend_tiled(out: number, q: number, qStride: number, k: number, v: number, pos0: number, nq: number, cells: number, window: number, stride: number, offset: number, d: number, scratch: number, cap: number): void;
  matmul_k(kind: number, repacked: number, w: number, rows: number, cols: number, qs: number, ds: number, bsums: number, ntok: number, out: number, ostride: number, xi: number): void;
  geglu(out: number, gate: number, up: number, n: number, table: number): void;
  init_fused_madd(a: number, b: number, c: number): number;
  disable_fused_madd(): void;
}

/**
 * Instantiate the kernels over `memory` and let the instance probe whether relaxed_madd is a fused multiply-add
 * here: then its hot kernels use it (`fusedMadd: false` keeps the f64 emulation; results are the same either way).
 * Every instance (each thread's) needs this.
 */
export function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory, fusedMadd = true): { k: KernelExports; fused: boolean } {
  const instance = new WebAssembly.Instance(module, { env: { memory, abort: () => { throw new Error("wasm abort"); } } });
  const k = instance.exports as unknown as KernelExports;
  if (fusedMadd && k.init_fused_madd(1 + 2 ** -23, 1 - 2 ** -23, -1)) return { k, fused: true };
  k.disable_fused_madd();
  return { k, fused: false };
}

/**
 * Whether the kernels' relaxed_dot_i8x16_i7x16_add_s multiplies bytes 128..255 of its second operand as unsigned,
 * exactly (quant.ts dot_u8_probe), at the extremes the Q8_0 offset form reaches and past them.
 */
function exactUnsignedDot(k: KernelExports): boolean {
  const cases = [[-127, 254, 5], [127, 254, -3], [-128, 255, 0], [127, 255, 7], [-1, 128, 0], [100, 200, -1000], [-127, 0, 129032], [3, 127, 1]];
  // (a build from before the probe, as scripts/ab-kernels.ts may load, has none: the sign trick)
  return typeof k.dot_u8_probe === "function" && cases.every(([a, b, c]) => k.dot_u8_probe(a!, b!, c!) === c! + 4 * a! * b!);
}

/** One kernel call for another thread: an export of wasm/kernels.ts and its arguments. */
export interface KernelCall {
  fn: keyof KernelExports;
  args: number[];
}

/** Other threads running instances of the same kernels over this backend's (shared) memory; the host provides them. */
export interface KernelThreads {
  /** Threads besides the caller's. */
  readonly count: number;
  /** Run calls[i] on thread i and `own` on the calling thread; return when all are done (rethrowing a failure). */
  run(calls: KernelCall[], own: () => void): void;
}

/** Rows below which a matrix product is not worth splitting. */
const MIN_ROWS_TO_SPLIT = 256;

const PAGE = 65536;
const MAX_PAGES = 65536; // 4 GiB: the wasm32 limit
const BASE = PAGE; // the first page is left to the module's own static data

/** Arena bytes every WasmBackend uses before the model reserves anything: the module's page and the GELU table. */
export const WASM_BASE_BYTES = BASE + alignUp(GELU_F16.byteLength);

/** WebAssembly memory for an arena of `bytes` (reserve() sizes, aligned, plus WASM_BASE_BYTES): whole 64 KiB pages. */
export function wasmMemoryBytes(arenaBytes: number): number {
  return Math.ceil(arenaBytes / PAGE) * PAGE;
}

/**
 * Scratch for `n` rows of `cols` activations and attention over `headDim` values per head:
 * Q8_0 activations: qs (cols bytes) + scale, sum and Q8_1's d * sum (4 bytes each) per block, per token, and for
 * Q8_0 weights in the rows layout |x| and x's sign (2 x cols bytes; the offset form's corrections, 1 x cols, fit in that);
 * or a copy of the activations rounded to f16/bf16 (4 bytes per value); or a row group being repacked;
 * or the query and accumulator of an attention head (8 x head_dim);
 * or the tiled attention of a head: nq x d accumulators, a key and a value tile (64 x d), 64 scores, 2 x nq.
 */
export function wasmScratchBytes(cols: number, n: number, headDim = cols): number {
  // one head tiled (attend_tiled), or up to 16 query heads of a KV head at once (attend_f16)
  const attention = Math.max(4 * (34 * headDim + 32), 4 * (n * headDim + 128 * headDim + 64 + 2 * n));
  return Math.max(3 * n * cols + 3 * (n * cols) / 8 + 32, n * cols * 4 + 8 * n + 256, (cols / 32) * 72, attention) + 64;
}

/** Relaxed SIMD support: validate a tiny module that uses i16x8.relaxed_dot_i8x16_i7x16_s. */
export function hasRelaxedSimd(): boolean {
  // (module (func (result v128) v128.const i64x2 0 0 v128.const i64x2 0 0 i16x8.relaxed_dot_i8x16_i7x16_s))
  const bytes = new Uint8Array([
    0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 43, 1, 41, 0,
    253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    253, 146, 2, 11,
  ]);
  try {
    return WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}

export class WasmBackend implements Backend {
  readonly name: string;
  private readonly memory: WebAssembly.Memory;
  private readonly k: KernelExports;
  private size = BASE;
  private committed = false;
  /** warmWeight()'s reads, combined (read by nothing: it only keeps the reads). */
  private touched = 0;
  private scratch = 0;
  private scratchLen = 0;
  /** Offsets of Q4_0 and Q4_K weights stored in their x4 layouts (repacked in prepareWeight). */
  private readonly x4 = new Set<number>();
  /** Offsets of Q6_K weights stored in the "pqr" layout (kquant.ts repack_q6_k). */
  private readonly q6pqr = new Set<number>();
  /** Q8_0 weights stored in the rows layout (quant.ts repack_q8_0_rows: each row's scales first), by offset: whether some scale is subnormal. */
  private readonly q8rows = new Map<number, boolean>();
  /**
   * Q8_0 rows stored as q + 127 and multiplied by one unsigned dot product (quant.ts dot_u8_probe): where this
   * engine lowers relaxed_dot_i8x16_i7x16_add_s to an exact unsigned-by-signed dot (x64 with AVX-VNNI).
   */
  readonly unsignedDot: boolean;
  /**
   * Q4_K's one-token x4 products by i32x4.relaxed_dot_i8x16_i7x16_add_s (kquant.ts x4_acc): exact on every engine
   * for their 4-bit weights, faster only where it is one instruction, so by default where unsignedDot found that.
   */
  readonly dotAdd: boolean;

  private threads: KernelThreads | undefined;
  /** The memory's maximum, in pages (the budget, or 4 GiB). */
  private readonly maxPages: number;
  /** The kernels use relaxed_madd, found to be a fused multiply-add here (relaxed build only). */
  readonly fusedMadd: boolean;
  /** Arena offset of ggml's f16 GELU table (f32 values), written at the first geglu. */
  private readonly geluTable: number;
  private geluTableWritten = false;

  /**
   * `module`: the compiled kernels (relaxed or plain build; a -mt build with `shared`); `variant` names it in
   * messages. `shared`: the memory is a shared one, for setThreads(). `fusedMadd: false`: never use relaxed_madd
   * (tests compare both paths).
   */
  constructor(module: WebAssembly.Module, variant: "relaxed" | "simd", opts: { shared?: boolean; fusedMadd?: boolean; unsignedDot?: boolean; dotAdd?: boolean; maxBytes?: number } = {}) {
    this.name = `wasm-${variant}`;
    this.maxPages = opts.maxBytes === undefined ? MAX_PAGES : Math.min(MAX_PAGES, Math.floor(opts.maxBytes / PAGE));
    if (this.maxPages < 2) throw new RangeError(`a WebAssembly memory budget of ${opts.maxBytes} bytes is below two 64 KiB pages`);
    // the maximum is the budget: growing past it fails, it never happens silently
    this.memory = new WebAssembly.Memory({ initial: 2, maximum: this.maxPages, shared: opts.shared ?? false });
    const { k, fused } = instantiateKernels(module, this.memory, opts.fusedMadd);
    this.k = k;
    this.fusedMadd = fused;
    this.unsignedDot = opts.unsignedDot !== false && exactUnsignedDot(k);
    this.dotAdd = variant === "relaxed" && (opts.dotAdd ?? this.unsignedDot);
    this.geluTable = this.reserve(GELU_F16.byteLength);
  }

  /** Bytes of WebAssembly memory this backend holds now (what a budget is checked against). */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** The linear memory (for the host's threads to instantiate the same kernels over). */
  get sharedMemory(): WebAssembly.Memory {
    if (!(this.memory.buffer instanceof SharedArrayBuffer)) throw new Error("this backend was not built over a shared memory");
    return this.memory;
  }

  /** Split matrix products (single tokens and prompt batches) across these threads from now on. */
  setThreads(threads: KernelThreads): void {
    this.sharedMemory; // checks
    this.threads = threads;
  }

  /**
   * Run kernel `fn` (its arguments from `args(w, rows, out)`) on the whole matrix, or on row ranges across the
   * threads when there are any: a range starting at row r0 starts r0 * rowBytes into the weights (the x4 layout
   * keeps that: 4 rows take 4 rows' bytes) and r0 * 4 bytes into `out` (whose token stride stays the full rows).
   */
  private split(fn: KernelCall["fn"], w: Weight, rowBytes: number, out: number, args: (w: number, rows: number, out: number) => number[]): void {
    const k = this.k as unknown as Record<string, (...a: number[]) => void>;
    const parts = this.threads ? this.threads.count + 1 : 1;
    if (parts === 1 || w.rows < MIN_ROWS_TO_SPLIT) {
      k[fn]!(...args(w.offset, w.rows, out));
      return;
    }
    // row ranges of multiples of 8 (whole x4 groups), the caller's last
    const per = Math.ceil(w.rows / parts / 8) * 8;
    const calls: KernelCall[] = [];
    for (let r0 = 0; r0 < w.rows - per; r0 += per) {
      const rows = Math.min(per, w.rows - r0);
      calls.push({ fn, args: args(w.offset + r0 * rowBytes, rows, out + r0 * 4) });
    }
    const r0 = calls.length * per;
    this.threads!.run(calls, () => k[fn]!(...args(w.offset + r0 * rowBytes, w.rows - r0, out + r0 * 4)));
  }

  reserve(bytes: number): number {
    if (this.committed) throw new Error("reserve() after commit()");
    const off = this.size;
    this.size += alignUp(bytes);
    return off;
  }

  commit(): void {
    const pages = Math.ceil(this.size / PAGE);
    if (pages > this.maxPages) {
      throw new RangeError(
        this.maxPages === MAX_PAGES
          ? `the model needs ${(this.size / 2 ** 30).toFixed(2)} GiB of WebAssembly memory; wasm32 allows 4 GiB`
          : `the model needs ${pages * PAGE} bytes of WebAssembly memory, over its budget of ${this.maxPages * PAGE} bytes`,
      );
    }
    const have = this.memory.buffer.byteLength / PAGE;
    if (pages > have) this.memory.grow(pages - have);
    this.committed = true;
  }

  bytes(offset: number, length: number) {
    return new Uint8Array(this.memory.buffer, offset, length);
  }
  f32(offset: number, length: number) {
    return new Float32Array(this.memory.buffer, offset, length);
  }
  u16(offset: number, length: number) {
    return new Uint16Array(this.memory.buffer, offset, length);
  }

  scratchBytes(cols: number, n: number, headDim = cols): number {
    return wasmScratchBytes(cols, n, headDim);
  }

  prepareWeight(w: Weight): void {
    // llama.cpp's repacked Q4_0 (rows % 8 == 0) sums in the order of the x4 kernel
    if (w.type === GGML_TYPE.Q4_0 && w.repacked) {
      if ((w.cols / 32) * 72 > this.scratchLen) throw new Error(`${w.name}: scratch too small to repack`);
      this.k.repack_q4_0_x4(w.offset, w.rows, w.cols, this.scratch);
      this.x4.add(w.offset);
    }
    // and repacked Q4_K: four rows' blocks interleaved, so that the four-row kernels read one stream (not four)
    if (w.type === GGML_TYPE.Q4_K && w.repacked) {
      if ((w.cols / 256) * 144 * 4 > this.scratchLen) throw new Error(`${w.name}: scratch too small to repack`);
      this.k.repack_q4_k_x4(w.offset, w.rows, w.cols, this.scratch);
      this.x4.add(w.offset);
    }
    // Q6_K, every matrix: the quants rearranged within each block (kquant.ts q6_u), which its products unpack in
    // fewer operations; the same values and sums
    if (w.type === GGML_TYPE.Q6_K && this.k.repack_q6_k) {
      this.k.repack_q6_k(w.offset, w.nbytes / 210);
      this.q6pqr.add(w.offset);
    }
    // Q8_0, every matrix (vec_dot and tinyBLAS sum alike): each row's scales gathered, four converted at once
    if (w.type === GGML_TYPE.Q8_0) {
      if ((w.cols / 32) * 34 > this.scratchLen) throw new Error(`${w.name}: scratch too small to repack`);
      const r = this.k.repack_q8_0_rows(w.offset, w.rows, w.cols, this.scratch, this.unsignedDot ? 1 : 0);
      if (r) this.q8rows.set(w.offset, r === 2);
    }
  }

  /**
   * One read of each 4 KiB page of the weight. Pages written at load are slow on their first read on some virtual
   * machines (on this project's Firecracker VMs ~3 us a page: 0.5-1.4 s for Gemma-2B's 1.4 GB, a first forward pass
   * that much slower than the second). Read at the end of the load, they are part of it, not of the first request;
   * read right after each weight's own write they were still slow later (first forward 1.31 s vs 0.83). llama.cpp's
   * tools warm up at load too, with a decode. Over pages already read once it takes ~50 ms per 1.4 GB.
   */
  warmWeight(w: Weight): void {
    const words = new Int32Array(this.memory.buffer, w.offset, w.nbytes >> 2);
    let sum = 0;
    for (let i = 0; i < words.length; i += 1024) sum ^= words[i]!;
    this.touched ^= sum; // kept, so that the reads cannot be optimized away
  }

  dequantizeRow(w: Weight, row: number, out: Float32Array): void {
    if (this.x4.has(w.offset) && w.type === GGML_TYPE.Q4_0) {
      this.k.dequant_q4_0_x4_row(w.offset, w.cols, row, this.ptr(out));
      return;
    }
    if (this.x4.has(w.offset)) {
      // Q4_K x4 (kquant.ts repack_q4_k_x4): the row's 144-byte blocks gathered back from its group's 576-byte ones
      const nb = w.cols / 256, all = this.bytes(w.offset, w.nbytes), r = row & 3;
      const blocks = new Uint8Array(nb * 144);
      for (let b = 0; b < nb; b++) {
        const src = (row >> 2) * nb * 576 + b * 576, dst = b * 144;
        blocks.set(all.subarray(src + 2 * r, src + 2 * r + 2), dst); // d
        blocks.set(all.subarray(src + 8 + 2 * r, src + 8 + 2 * r + 2), dst + 2); // dmin
        for (let u = 0; u < 3; u++) blocks.set(all.subarray(src + 16 + 16 * u + 4 * r, src + 20 + 16 * u + 4 * r), dst + 4 + 4 * u); // scales
        for (let c = 0; c < 32; c++) blocks.set(all.subarray(src + 64 + 16 * c + 4 * r, src + 68 + 16 * c + 4 * r), dst + 16 + 4 * c); // quants
      }
      dequantizeRow(w.type, blocks, 0, w.cols, out);
      return;
    }
    const rowBytes = w.nbytes / w.rows;
    if (this.q8rows.has(w.offset)) {
      // Q8_0 rows layout: the row's 34-byte blocks rebuilt from its scales and quants
      const nb = w.cols / 32, src = this.bytes(w.offset + row * rowBytes, rowBytes), blocks = new Uint8Array(rowBytes);
      for (let b = 0; b < nb; b++) {
        blocks.set(src.subarray(2 * b, 2 * b + 2), 34 * b);
        blocks.set(src.subarray(2 * nb + 32 * b, 2 * nb + 32 * b + 32), 34 * b + 2);
        if (this.unsignedDot) for (let i = 34 * b + 2; i < 34 * b + 34; i++) blocks[i] = blocks[i]! - 127; // stored as q + 127
      }
      dequantizeRow(w.type, blocks, 0, w.cols, out);
      return;
    }
    if (this.q6pqr.has(w.offset)) {
      dequantizeRow(w.type, q6kFileBytes(this.bytes(w.offset + row * rowBytes, rowBytes)), 0, w.cols, out);
      return;
    }
    dequantizeRow(w.type, this.bytes(w.offset, w.nbytes), row * rowBytes, w.cols, out);
  }
  setScratch(offset: number, bytes: number): void {
    this.scratch = offset;
    this.scratchLen = bytes;
  }

  private ptr(a: Float32Array | Uint16Array): number {
    if (a.buffer !== this.memory.buffer) throw new Error("kernel operands must be views of this backend's arena");
    return a.byteOffset;
  }

  attendHeadTiled(
    out: Float32Array, q: Float32Array, qStride: number, k: Uint16Array, v: Uint16Array, pos0: number, nq: number, cells: number, window: number,
    stride: number, offset: number, d: number, softcap = 0,
  ): void {
    const need = 4 * (nq * d + 128 * d + 64 + 2 * nq);
    if (d % 4 !== 0 || need > this.scratchLen) throw new Error(`tiled attention needs head_dim % 4 == 0 and ${need} bytes of scratch`);
    this.k.attend_tiled(this.ptr(out), this.ptr(q), qStride, this.ptr(k), this.ptr(v), pos0, nq, cells, window, stride, offset, d, this.scratch, softcap);
  }

  geglu(out: Float32Array, gate: Float32Array, up: Float32Array): void {
    if (!this.geluTableWritten) {
      this.f32(this.geluTable, GELU_F16.length).set(GELU_F16);
      this.geluTableWritten = true;
    }
    this.k.geglu(this.ptr(out), this.ptr(gate), this.ptr(up), out.length, this.geluTable);
  }

  attendHead(out: Float32Array, q: Float32Array, k: Uint16Array, v: Uint16Array, vis: ArrayLike<number>, stride: number, offset: number, softcap = 0, heads = 1): void {
    const d = q.length / heads;
    // attention.ts attend_f16, up to 16 heads a call (wasmScratchBytes): q rounded and the sums (heads x d each), one
    // cell's K and V in f32, M and S per head
    const most = Math.min(heads, 16), need = 4 * (2 * most * d + 2 * d + 2 * most);
    if (d % 4 !== 0 || need > this.scratchLen) throw new Error(`attention kernel needs head_dim % 4 == 0 and ${need} bytes of scratch (${most} heads of ${d})`);
    // heads h..h+n-1 with `scratch` (attend_f16's arguments)
    const args = (h: number, n: number, scratch: number) =>
      [this.ptr(out) + 4 * h * d, this.ptr(q) + 4 * h * d, this.ptr(k), this.ptr(v), vis[0]!, vis[1]!, vis[2]!, vis[3]!, stride, offset, d, n, scratch, softcap] as const;
    // with threads: the query heads split among them, each part in its own slice of the scratch (a head's bits are
    // the same whichever heads share its call)
    const parts = this.threads ? Math.min(this.threads.count + 1, heads) : 1;
    const per = Math.ceil(heads / parts), slice = alignUp(4 * (2 * per * d + 2 * d + 2 * per));
    if (parts > 1 && per <= 16 && parts * slice <= this.scratchLen) {
      const calls: KernelCall[] = [];
      let h = 0;
      for (; h + per < heads; h += per) calls.push({ fn: "attend_f16", args: [...args(h, per, this.scratch + (calls.length + 1) * slice)] });
      const last = args(h, heads - h, this.scratch);
      this.threads!.run(calls, () => this.k.attend_f16(...last));
      return;
    }
    for (let h = 0; h < heads; h += 16) this.k.attend_f16(...args(h, Math.min(16, heads - h), this.scratch));
  }

  matmul(out: Float32Array, w: Weight, x: Float32Array, n: number, batchRows = n): void {
    const { rows, cols } = w;
    const xp = this.ptr(x);
    const op = this.ptr(out);
    if (wasmScratchBytes(cols, n, 0) > this.scratchLen) throw new Error(`matmul of ${n} x ${cols} needs more scratch than reserved`);
    const k = this.k;
    const rowBytes = w.nbytes / rows;
    switch (w.type) {
      case GGML_TYPE.Q4_0:
      case GGML_TYPE.Q4_1:
      case GGML_TYPE.Q5_0:
      case GGML_TYPE.Q5_1:
      case GGML_TYPE.Q8_0: {
        const nb = (n * cols) / 32;
        const qs = this.scratch;
        const ds = alignUp(qs + n * cols, 16);
        const sums = ds + nb * 4;
        const ss = sums + nb * 4; // Q8_1's d * sum(q), for the types with a min
        const withMin = w.type === GGML_TYPE.Q4_1 || w.type === GGML_TYPE.Q5_1;
        k.quantize_q8_0(xp, qs, ds, sums, n * cols, withMin ? ss : 0);
        if (withMin) this.split("matmul_q_min", w, rowBytes, op, (p, r, o) => [w.type === GGML_TYPE.Q5_1 ? 1 : 0, p, r, cols, qs, ds, ss, n, o, rows]);
        else if (w.type === GGML_TYPE.Q5_0) this.split("matmul_q5_0", w, rowBytes, op, (p, r, o) => [p, r, cols, qs, ds, n, o, rows]);
        else if (this.x4.has(w.offset)) this.split("matmul_q4_0_x4", w, rowBytes, op, (p, r, o) => [p, r, cols, qs, ds, sums, n, o, rows]);
        else if (w.type === GGML_TYPE.Q4_0) this.split("matmul_q4_0", w, rowBytes, op, (p, r, o) => [p, r, cols, qs, ds, n, o, rows]);
        else if (this.q8rows.has(w.offset)) {
          const ax = alignUp(ss + nb * 4, 16);
          const offset = this.unsignedDot ? 1 : 0;
          if (offset) k.q8_offset_interleave(qs, ds, n, cols, ax, sums); // the offset form: x with its corrections, and the scales, grouped (sums is unused for Q8_0)
          else k.q8_sign_split(qs, n * cols, ax);
          const subnormal = this.q8rows.get(w.offset) ? 1 : 0;
          this.split("matmul_q8_0_rows", w, rowBytes, op, (p, r, o) => [p, r, cols, qs, ds, ax, n, o, rows, subnormal, offset, sums]);
        }
        else this.split("matmul_q8_0", w, rowBytes, op, (p, r, o) => [p, r, cols, qs, ds, n, o, rows]);
        return;
      }
      case GGML_TYPE.F16:
      case GGML_TYPE.BF16:
      case GGML_TYPE.F32: {
        // llamafile_sgemm (tinyBLAS) takes batches of 2+ tokens when the shapes allow; single tokens use vec_dot
        const tiny = batchRows >= 2 && rows % 4 === 0 && cols % 8 === 0 ? 1 : 0;
        if (w.type === GGML_TYPE.F32) {
          this.split("matmul_f32", w, rowBytes, op, (p, r, o) => [p, r, cols, xp, n, o, rows, tiny]);
          return;
        }
        const xr = this.scratch;
        new Float32Array(this.memory.buffer, xr, n * cols).set(x.subarray(0, n * cols));
        if (w.type === GGML_TYPE.F16) {
          k.round_f16(xr, n * cols);
          this.split("matmul_f16", w, rowBytes, op, (p, r, o) => [p, r, cols, xr, n, o, rows, tiny]);
        } else {
          k.round_bf16(xr, n * cols);
          this.split("matmul_bf16", w, rowBytes, op, (p, r, o) => [p, r, cols, xr, n, o, rows, tiny]);
        }
        return;
      }
      case GGML_TYPE.Q4_K:
      case GGML_TYPE.Q5_K:
      case GGML_TYPE.Q6_K: {
        // Q8_K activations (activations.ts quantize_q8_k, the reference backend's quantizeActivationsQ8_K bit for bit): qs, then ds, then bsums
        const kind = w.type === GGML_TYPE.Q4_K ? 0 : w.type === GGML_TYPE.Q5_K ? 1 : 2;
        const nb = (n * cols) / QK_K;
        const qs = this.scratch, ds = alignUp(qs + n * cols, 16), bsums = ds + nb * 4;
        k.quantize_q8_k(xp, qs, ds, bsums, n * cols);
        // repacked: 1 gemm's order for groups of 4 tokens, 2 gemv's for every token; | 4 the x4 layout; | 8 its
        // one-token products by the dot-add (dotAdd)
        const flags = (w.repacked ? (batchRows === 1 ? 2 : 1) : 0) | (this.x4.has(w.offset) ? 4 : 0) | (this.dotAdd ? 8 : 0);
        // the x4 prompt kernel (groups of 4 tokens in gemm's order) reads the quants regrouped by 4 tokens (a
        // build from before it, as scripts/ab-kernels.ts may load, has no q8k_interleave4 and reads qs)
        const xi = alignUp(bsums + (n * cols) / 4, 16);
        if ((flags & 5) === 5 && n >= 4) k.q8k_interleave4?.(qs, n, cols, xi);
        this.split("matmul_k", w, rowBytes, op, (p, r, o) => [kind, flags, p, r, cols, qs, ds, bsums, n, o, rows, xi]);
        return;
      }
      default:
        throw new Error(`${w.name}: no wasm matmul for ggml type ${ggmlTypeName(w.type)}`);
    }
  }
}

/**
 * Q6_K blocks in the "pqr" layout (kquant.ts repack_q6_k: P = u0 | u3[0:2] << 6, Q = u1 | u3[2:4] << 6,
 * R = u2 | u3[4:6] << 6 at the places of the file's ql bytes a, c and qh bytes hb) back to the file's bytes, copied.
 */
export function q6kFileBytes(src: Uint8Array): Uint8Array {
  const out = Uint8Array.from(src);
  for (let blk = 0; blk < src.length; blk += 210) {
    for (let h = 0; h < 4; h++) {
      const pa = blk + (h >> 1) * 64 + (h & 1) * 16, pc = pa + 32, ph = blk + 128 + (h >> 1) * 32 + (h & 1) * 16;
      for (let l = 0; l < 16; l++) {
        const p = src[pa + l]!, q = src[pc + l]!, r = src[ph + l]!;
        const u0 = p & 63, u1 = q & 63, u2 = r & 63, u3 = (p >> 6) | ((q >> 6) << 2) | ((r >> 6) << 4);
        out[pa + l] = (u0 & 15) | ((u2 & 15) << 4);
        out[pc + l] = (u1 & 15) | ((u3 & 15) << 4);
        out[ph + l] = (u0 >> 4) | ((u1 >> 4) << 2) | ((u2 >> 4) << 4) | ((u3 >> 4) << 6);
      }
    }
  }
  return out;
}
