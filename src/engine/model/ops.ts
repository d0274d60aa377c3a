// Element-wise pieces of the forward pass, each rounding the way ggml's CPU ops do (f32 math, f16 where
// ggml keeps f16), so that greedy decoding agrees with llama.cpp token for token.
import { vecDot32Lanes } from "../backend/ggml-order.ts";
import { cosf, expf, f16ToF32, f32ToF16, sinf, tanhf, vExpf } from "../numeric.ts";

const fr = Math.fround;

/** ggml_rms_norm followed by ggml_mul with the weight: sum of squares in double, the rest in f32. */
export function rmsNorm(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
  const n = weight.length;
  for (let t = 0; t < x.length / n; t++) {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const v = x[t * n + i]!;
      sum += fr(v * v);
    }
    const mean = fr(sum / n);
    const scale = fr(1 / fr(Math.sqrt(fr(mean + eps))));
    for (let i = 0; i < n; i++) out[t * n + i] = fr(fr(x[t * n + i]! * scale) * weight[i]!);
  }
}

/**
 * RoPE, NeoX (rotate-half) form, as ggml_rope_ext: theta advances by repeated f32 multiplication and the
 * table holds glibc's cosf/sinf of it. Rows are computed when a position is first used.
 */
export class Rope {
  private readonly cos: Float32Array;
  private readonly sin: Float32Array;
  private readonly ready: Uint8Array;
  private readonly headDim: number;
  /** Rotated dimensions at the start of each head (ggml's n_dims); the rest pass through. */
  private readonly dims: number;
  private readonly thetaScale: number;
  /** Linear RoPE scaling: every angle times this (ggml's freq_scale; 1: none). */
  private readonly freqScale: number;

  constructor(headDim: number, dims: number, theta: number, maxPos: number, freqScale = 1) {
    this.freqScale = freqScale;
    this.headDim = headDim;
    this.dims = dims;
    const half = dims / 2;
    this.cos = new Float32Array(maxPos * half);
    this.sin = new Float32Array(maxPos * half);
    this.ready = new Uint8Array(maxPos);
    this.thetaScale = fr(Math.pow(theta, fr(-2 / dims)));
  }

  private row(pos: number): void {
    const half = this.dims / 2;
    let t = pos;
    for (let i = 0; i < half; i++) {
      const a = this.freqScale === 1 ? t : fr(this.freqScale * t); // ggml's rope_yarn without YaRN
      this.cos[pos * half + i] = cosf(a);
      this.sin[pos * half + i] = sinf(a);
      t = fr(t * this.thetaScale);
    }
    this.ready[pos] = 1;
  }

  /** The cos and sin values of position `pos` (dims/2 each; the table the WebGPU kernels upload). */
  values(pos: number): { cos: Float32Array; sin: Float32Array } {
    const half = this.dims / 2;
    if (!this.ready[pos]) this.row(pos);
    return { cos: this.cos.subarray(pos * half, (pos + 1) * half), sin: this.sin.subarray(pos * half, (pos + 1) * half) };
  }

  /** Rotate `nHeads` heads of `vec` (one token) in place for position `pos`. */
  apply(vec: Float32Array, nHeads: number, pos: number): void {
    const half = this.dims / 2;
    const { cos: c, sin: s } = this.values(pos);
    for (let h = 0; h < nHeads; h++) {
      const o = h * this.headDim;
      for (let i = 0; i < half; i++) {
        const x0 = vec[o + i]!;
        const x1 = vec[o + i + half]!;
        // x0*cos - x1*sin and x0*sin + x1*cos, with the first product fused (as GCC contracts them)
        vec[o + i] = fr(x0 * c[i]! - fr(x1 * s[i]!));
        vec[o + i + half] = fr(x0 * s[i]! + fr(x1 * c[i]!));
      }
    }
  }
}

/**
 * GELU (tanh form) through a table indexed by the f16 input, as ggml with GGML_GELU_FP16: each entry is
 * ggml_gelu_f32 evaluated in f32 arithmetic (every step rounded to f32), then stored as f16.
 */
export const GELU_F16 = new Float32Array(65536);
{
  const SQRT_2_OVER_PI = fr(0.79788456080286535587989211986876);
  const GELU_COEF_A = fr(0.044715);
  for (let h = 0; h < 65536; h++) {
    const x = f16ToF32(h);
    // 1 + a*x*x is contracted into one fused multiply-add by the compiler (-ffp-contract=fast, FMA targets)
    const inner = fr(fr(SQRT_2_OVER_PI * x) * fr(fr(GELU_COEF_A * x) * x + 1));
    const g = fr(fr(0.5 * x) * fr(1 + fr(Math.tanh(inner))));
    GELU_F16[h] = f16ToF32(f32ToF16(g));
  }
}

/** GeGLU: out = gelu(gate) * up (ggml_vec_geglu_f32). */
export function geglu(out: Float32Array, gate: Float32Array, up: Float32Array): void {
  for (let i = 0; i < out.length; i++) {
    const x = gate[i]!;
    let g: number;
    if (x <= -10) g = 0;
    else if (x >= 10) g = x;
    else g = GELU_F16[f32ToF16(x)]!;
    out[i] = fr(g * up[i]!);
  }
}

/**
 * The cells of a KV layer of `cells` rows (position p in cell p % cells) that a query at position `q` sees, in
 * the order llama.cpp's flash attention visits them (cell order): [a0, a1), then [b0, b1). It sees positions
 * q - window + 1 .. q (`window` 0: all from 0). On a ring that has wrapped, the newest positions sit in the low
 * cells and come first.
 */
export function visibleCells(q: number, cells: number, window: number): [number, number, number, number] {
  const lo = window > 0 ? Math.max(0, q - window + 1) : 0;
  const qc = q % cells, lc = lo % cells;
  if (q - lo + 1 > cells) throw new RangeError(`a window of ${q - lo + 1} positions does not fit ${cells} cells`);
  return lc <= qc ? [lc, qc + 1, 0, 0] : [0, qc + 1, lc, cells];
}

/** A score as ggml's flash attention soft-caps it: cap * tanh(s / cap) in f32 (scale = 1 / cap first). */
export function softcapScore(s: number, cap: number): number {
  return cap === 0 ? s : fr(cap * tanhf(fr(s * fr(1 / cap))));
}

/**
 * Attention of one query head over the cached cells `vis` ([a0, a1) then [b0, b1), see visibleCells), as
 * ggml's CPU flash attention with an f16 KV cache: q rounded to f16, scores in f32 (soft-capped when `softcap`),
 * online softmax, the weighted sum of V accumulated in f16. `k`/`v` are f16 bit patterns, cell c of this KV head
 * at c*stride + offset.
 */
export function attendHead(
  out: Float32Array,
  q: Float32Array,
  k: Uint16Array,
  v: Uint16Array,
  vis: ArrayLike<number>,
  stride: number,
  offset: number,
  acc: Float32Array,
  softcap = 0,
): void {
  const d = q.length;
  const qh = new Float32Array(d);
  for (let i = 0; i < d; i++) qh[i] = f16ToF32(f32ToF16(q[i]!));
  const kf = new Float32Array(d);
  let S = 0;
  let M = -Infinity;
  acc.fill(0);
  for (let r = 0; r < 4; r += 2) for (let p = vis[r]!; p < vis[r + 1]!; p++) {
    const base = p * stride + offset;
    for (let i = 0; i < d; i++) kf[i] = f16ToF32(k[base + i]!);
    const s = softcapScore(vecDot32Lanes(d, kf, 0, qh, 0, true), softcap); // ggml_vec_dot_f16
    let ms = 1;
    let vs = 1;
    if (s > M) {
      const mOld = M;
      M = s;
      ms = expf(fr(mOld - M));
      for (let i = 0; i < d; i++) acc[i] = f16ToF32(f32ToF16(fr(acc[i]! * ms)));
    } else {
      vs = expf(fr(s - M));
    }
    for (let i = 0; i < d; i++) acc[i] = f16ToF32(f32ToF16(fr(acc[i]! + f16ToF32(v[base + i]!) * vs)));
    S = fr(fr(S * ms) + vs); // not contracted into an FMA in the shipped build
  }
  const inv = S === 0 ? 0 : fr(1 / S);
  for (let i = 0; i < d; i++) out[i] = fr(acc[i]! * inv);
}

/** Query rows per batch from which ggml's CPU flash attention takes its tiled path (GGML_FA_TILE_Q). */
export const FA_TILED_MIN_ROWS = 64;
const FA_TILE_KV = 64; // GGML_FA_TILE_KV

/**
 * The same attention as `attendHead`, as ggml's tiled flash attention computes it for batches of 64+ query rows:
 * q stays f32, scores are FMA chains over the head dimension, the `filled` cells come in tiles of 64 with a
 * softmax per tile (ggml_v_expf, sums in double; a tile the query sees none of is skipped), and V is
 * accumulated in f32.
 */
export function attendHeadTiled(
  out: Float32Array,
  q: Float32Array,
  k: Uint16Array,
  v: Uint16Array,
  vis: ArrayLike<number>,
  filled: number,
  stride: number,
  offset: number,
  acc: Float32Array,
  softcap = 0,
): void {
  const d = q.length;
  const kq = new Float32Array(FA_TILE_KV);
  let S = 0;
  let M = -Infinity;
  acc.fill(0);
  const seen = (c: number) => (c >= vis[0]! && c < vis[1]!) || (c >= vis[2]! && c < vis[3]!);
  for (let t0 = 0; t0 < filled; t0 += FA_TILE_KV) {
    let tileMax = -Infinity;
    for (let j = 0; j < FA_TILE_KV; j++) {
      if (t0 + j >= filled || !seen(t0 + j)) {
        kq[j] = -Infinity;
        continue;
      }
      const base = (t0 + j) * stride + offset;
      let s = 0;
      for (let i = 0; i < d; i++) s = fr(q[i]! * f16ToF32(k[base + i]!) + s);
      s = softcapScore(s, softcap);
      kq[j] = s;
      if (s > tileMax) tileMax = s;
    }
    if (tileMax === -Infinity) continue; // nothing of this tile is seen
    const mNew = Math.max(M, tileMax);
    if (mNew > M) {
      const ms = expf(fr(M - mNew));
      for (let i = 0; i < d; i++) acc[i] = fr(acc[i]! * ms);
      S = fr(S * ms);
    }
    M = mNew;
    // ggml_vec_soft_max_f32: exp in groups of 8, each group summed as hsum_float_8, groups summed in double
    let sum = 0;
    for (let g = 0; g < FA_TILE_KV; g += 8) {
      for (let l = 0; l < 8; l++) kq[g + l] = vExpf(fr(kq[g + l]! - mNew));
      sum += fr(fr(fr(kq[g]! + kq[g + 4]!) + fr(kq[g + 2]! + kq[g + 6]!)) + fr(fr(kq[g + 1]! + kq[g + 5]!) + fr(kq[g + 3]! + kq[g + 7]!)));
    }
    S = fr(S + sum);
    // VKQ += softmax row x V tile: per output element an FMA chain over the tile's positions
    for (let j = 0; j < FA_TILE_KV; j++) {
      const p = kq[j]!;
      if (p === 0) continue; // a masked cell (adding 0 * v changes nothing)
      const base = (t0 + j) * stride + offset;
      for (let i = 0; i < d; i++) acc[i] = fr(p * f16ToF32(v[base + i]!) + acc[i]!);
    }
  }
  const inv = S === 0 ? 0 : fr(1 / S);
  for (let i = 0; i < d; i++) out[i] = fr(acc[i]! * inv);
}
