// The compute interface the forward pass runs on. A backend owns one memory arena (weights, KV cache and
// activations live there once, with no global state) and the matrix kernels that read the weights in
// their stored ggml type. Everything else in the forward pass is plain TypeScript over arena views.

/** A weight matrix stored in the arena: `rows` rows of `cols` values in ggml type `type`. */
export interface Weight {
  name: string;
  type: number;
  rows: number;
  cols: number;
  /** Byte offset of the data in the arena. */
  offset: number;
  nbytes: number;
  /**
   * llama.cpp's CPU backend (x86, AVX2) repacks Q4_0 and Q4_K matrices with a multiple of 8 rows (the LM head's
   * copy of the token embedding included) into interleaved blocks whose kernels sum in another order; kernels that
   * reproduce llama.cpp's rounding need to know.
   */
  repacked: boolean;
}

export interface Backend {
  readonly name: string;
  /**
   * Reserve `bytes` in the arena (64-byte aligned) and return the offset. All reservations happen before
   * `commit()`, which allocates the arena once; after that views never move.
   */
  reserve(bytes: number): number;
  commit(): void;
  /** Views into the arena (valid after commit). */
  bytes(offset: number, length: number): Uint8Array;
  f32(offset: number, length: number): Float32Array;
  u16(offset: number, length: number): Uint16Array;
  /**
   * out[t*w.rows + r] = dot(row r of w, x[t*w.cols .. (t+1)*w.cols]) for t < n, with the activations
   * rounded the way llama.cpp's CPU backend does for the weight type (Q8_0 blocks for Q4_0/Q8_0 weights,
   * f16 for F16, bf16 for BF16, f32 for F32). `x` and `out` must be arena views. `batchRows` (default n): rows of
   * the llama.cpp batch these n belong to, which picks llama.cpp's kernel (tinyBLAS for 2+ rows of F16/BF16/F32);
   * a part of a batch is summed as the whole batch would sum it, row for row. `batchRows` 1 with n > 1: n
   * single-token rows (decode steps of several sequences), each summed as a one-token product.
   */
  matmul(out: Float32Array, w: Weight, x: Float32Array, n: number, batchRows?: number): void;
  /**
   * Called once a weight's bytes are in the arena: a backend may rearrange them in place into the layout its
   * kernels read fastest (every later access goes through `matmul` and `dequantizeRow`).
   */
  prepareWeight(w: Weight): void;
  /**
   * Optional: called for each matrix once every weight is in place, before the first forward pass: a backend whose
   * weights live in host memory reads one word of each page, so that the first request does not pay the first reads.
   */
  warmWeight?(w: Weight): void;
  /** Row `row` of `w` as f32 values into `out` (cols long; the embedding lookup). */
  dequantizeRow(w: Weight, row: number, out: Float32Array): void;
  /**
   * Optional: `attendHead` of model/ops.ts (the same bits) in the backend's own kernels, for `heads` query heads
   * that share the KV head (q and out: heads x head_dim, head after head; each head's bits as alone): the cells
   * `vis` ([a0, a1) then [b0, b1)), scores soft-capped by `softcap` (0: none). All arrays are arena views.
   */
  attendHead?(out: Float32Array, q: Float32Array, k: Uint16Array, v: Uint16Array, vis: ArrayLike<number>, stride: number, offset: number, softcap: number, heads?: number): void;
  /**
   * Optional: `attendHeadTiled` for the `nq` rows of one head of a batch at once (row r at element r*qStride of
   * `q` and `out`, position pos0 + r) over a KV layer of `cells` rows (position p in cell p % cells), each row
   * seeing the last `window` positions (0: all).
   */
  attendHeadTiled?(
    out: Float32Array, q: Float32Array, qStride: number, k: Uint16Array, v: Uint16Array, pos0: number, nq: number, cells: number, window: number,
    stride: number, offset: number, d: number, softcap: number,
  ): void;
  /** Optional: `geglu` of model/ops.ts (the same bits) in the backend's own kernels. All arrays are arena views. */
  geglu?(out: Float32Array, gate: Float32Array, up: Float32Array): void;
  /**
   * Scratch bytes `matmul` needs for `n` rows of `cols` activations, and the attention kernels for `n` query rows
   * of `headDim` (default: cols) values (reserved by the model).
   */
  scratchBytes(cols: number, n: number, headDim?: number): number;
  /** Set the scratch area (an arena offset of at least scratchBytes()). */
  setScratch(offset: number, bytes: number): void;
}

export const ARENA_ALIGN = 64;

export function alignUp(n: number, a = ARENA_ALIGN): number {
  return Math.ceil(n / a) * a;
}
