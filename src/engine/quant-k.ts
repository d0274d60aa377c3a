// The K-quant super-block formats (ggml-common.h: 256 values a block) and ggml's reference quantizers for them, bit
// for bit (ggml-quants.c: quantize_row_q{4,5,6}_K_ref with make_qkx2_quants / make_qx_quants, in f32 arithmetic),
// row dequantization (dequantize_row_q{4,5,6}_K), and the Q8_K activations the matrix products use.
//   Q4_K (144 bytes): f16 d | f16 dmin | 12 bytes: 8 six-bit scales and mins | 128 bytes: 4-bit values
//   Q5_K (176 bytes): f16 d | f16 dmin | 12 bytes scales/mins | 32 bytes: 5th bits | 128 bytes: low 4 bits
//   Q6_K (210 bytes): 128 bytes: low 4 bits | 64 bytes: high 2 bits | 16 int8 scales | f16 d
// Q4_K/Q5_K: x = d*scale[s]*q - dmin*min[s] for 8 sub-blocks of 32; Q6_K: x = d*scale[s]*(q-32) for 16 of 16.
import { hsum8 } from "./backend/ggml-order.ts";
import { GGML_TYPE, typeLayout } from "./ggml-types.ts";
import { f16ToF32, f32ToF16 } from "./numeric.ts";

export const QK_K = 256;
const fr = Math.fround;
const GROUP_MAX_EPS = fr(1e-15);
const F01 = fr(0.1);

/** nearest_int: round half to even by adding 1.5 * 2^23 in f32 (|v| < 2^22). */
export function nearestInt(v: number): number {
  return fr(v + 12582912) - 12582912;
}

const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

/** make_qkx2_quants: a scale and a min for n values (L gets 0..nmax); returns [scale, the_min]. */
function makeQkx2Quants(n: number, nmax: number, x: Float32Array, weights: Float32Array, L: Uint8Array, Laux: Uint8Array,
  rmin: number, rdelta: number, nstep: number): [number, number] {
  let min = x[0]!;
  let max = x[0]!;
  let sumW = weights[0]!;
  let sumX = fr(sumW * x[0]!);
  for (let i = 1; i < n; i++) {
    if (x[i]! < min) min = x[i]!;
    if (x[i]! > max) max = x[i]!;
    sumW = fr(sumW + weights[i]!);
    sumX = fr(sumX + fr(weights[i]! * x[i]!));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, 0, n);
    return [0, -min];
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    L[i] = clamp(nearestInt(fr(iscale * fr(x[i]! - min))), 0, nmax);
    const diff = fr(fr(fr(scale * L[i]!) + min) - x[i]!);
    bestError = fr(bestError + fr(weights[i]! * fr(diff * diff)));
  }
  if (nstep < 1) return [scale, -min];
  for (let is = 0; is <= nstep; is++) {
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = clamp(nearestInt(fr(iscale * fr(x[i]! - min))), 0, nmax);
      Laux[i] = l;
      const wl = fr(weights[i]! * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * x[i]!));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        const diff = fr(fr(fr(thisScale * Laux[i]!) + thisMin) - x[i]!);
        curError = fr(curError + fr(weights[i]! * fr(diff * diff)));
      }
      if (curError < bestError) {
        L.set(Laux.subarray(0, n));
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/** make_qx_quants with rmse_type 1 and no importance weights: L gets l + nmax (0..2*nmax-1); returns the scale. */
function makeQxQuants(n: number, nmax: number, x: Float32Array, L: Uint8Array): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[i]!);
    if (ax > amax) {
      amax = ax;
      max = x[i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, 0, n);
    return 0;
  }
  const sums = (iscale: number, store: boolean): [number, number] => {
    let sumlx = 0, suml2 = 0;
    for (let i = 0; i < n; i++) {
      const l = clamp(nearestInt(fr(iscale * x[i]!)), -nmax, nmax - 1);
      if (store) L[i] = l + nmax;
      const w = fr(x[i]! * x[i]!);
      sumlx = fr(sumlx + fr(fr(w * x[i]!) * l));
      suml2 = fr(suml2 + fr(fr(w * l) * l));
    }
    return [sumlx, suml2];
  };
  let [sumlx, suml2] = sums(fr(-nmax / max), true);
  let scale = suml2 ? fr(sumlx / suml2) : 0;
  let best = fr(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = fr(-fr(nmax + fr(F01 * is)) / max);
    [sumlx, suml2] = sums(iscale, false);
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      sums(iscale, true);
      scale = fr(sumlx / suml2);
      best = fr(scale * sumlx);
    }
  }
  return scale;
}

/** get_scale_min_k4: the six-bit scale and min of sub-block j from the 12 packed bytes at q[o..o+11]. */
export function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j]! & 63, q[o + j + 4]! & 63];
  return [(q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >> 6) << 4), (q[o + j + 4]! >> 4) | ((q[o + j]! >> 6) << 4)];
}

/** quantize_row_q4_K_ref (bits = 4) and quantize_row_q5_K_ref (bits = 5): x.length a multiple of 256. */
function quantizeQ45K(x: Float32Array, bits: 4 | 5): Uint8Array {
  const nb = x.length / QK_K;
  const bb = bits === 4 ? 144 : 176;
  const out = new Uint8Array(nb * bb);
  const dv = new DataView(out.buffer);
  const nmax = bits === 4 ? 15 : 31;
  const L = new Uint8Array(QK_K), Laux = new Uint8Array(32), weights = new Float32Array(32);
  const scales = new Float32Array(8), mins = new Float32Array(8);
  for (let i = 0; i < nb; i++) {
    const xb = x.subarray(i * QK_K, (i + 1) * QK_K);
    const p = i * bb;
    let maxScale = 0, maxMin = 0;
    for (let j = 0; j < 8; j++) {
      const xs = xb.subarray(32 * j, 32 * j + 32);
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(xs[l]! * xs[l]!));
      const avX = fr(Math.sqrt(fr(sumX2 / 32)));
      for (let l = 0; l < 32; l++) weights[l] = fr(avX + Math.abs(xs[l]!));
      const [s, m] = bits === 4
        ? makeQkx2Quants(32, nmax, xs, weights, L.subarray(32 * j), Laux, -1, F01, 20)
        : makeQkx2Quants(32, nmax, xs, weights, L.subarray(32 * j), Laux, -0.5, F01, 15);
      scales[j] = s;
      mins[j] = m;
      if (scales[j]! > maxScale) maxScale = scales[j]!;
      if (mins[j]! > maxMin) maxMin = mins[j]!;
    }
    const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
    const sc = p + 4; // the 12 scale bytes
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, nearestInt(fr(invScale * scales[j]!)) & 0xff);
      const lm = Math.min(63, nearestInt(fr(invMin * mins[j]!)) & 0xff);
      if (j < 4) {
        out[sc + j] = ls;
        out[sc + j + 4] = lm;
      } else {
        out[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        out[sc + j - 4] = out[sc + j - 4]! | ((ls >> 4) << 6);
        out[sc + j] = out[sc + j]! | ((lm >> 4) << 6);
      }
    }
    dv.setUint16(p, f32ToF16(fr(maxScale / 63)), true);
    dv.setUint16(p + 2, f32ToF16(fr(maxMin / 63)), true);
    const d = f16ToF32(dv.getUint16(p, true)), dmin = f16ToF32(dv.getUint16(p + 2, true));
    for (let j = 0; j < 8; j++) {
      const [s, m] = scaleMinK4(j, out, sc);
      const dj = fr(d * s);
      if (!dj) continue;
      const dm = fr(dmin * m);
      for (let ii = 0; ii < 32; ii++) L[32 * j + ii] = clamp(nearestInt(fr(fr(xb[32 * j + ii]! + dm) / dj)), 0, nmax);
    }
    if (bits === 4) {
      for (let j = 0, q = p + 16; j < QK_K; j += 64, q += 32) {
        for (let l = 0; l < 32; l++) out[q + l] = L[j + l]! | (L[j + l + 32]! << 4);
      }
    } else {
      const qh = p + 16, ql = p + 48;
      let m1 = 1, m2 = 2;
      for (let n = 0, q = ql; n < QK_K; n += 64, q += 32, m1 <<= 2, m2 <<= 2) {
        for (let j = 0; j < 32; j++) {
          let l1 = L[n + j]!, l2 = L[n + j + 32]!;
          if (l1 > 15) { l1 -= 16; out[qh + j] = out[qh + j]! | m1; }
          if (l2 > 15) { l2 -= 16; out[qh + j] = out[qh + j]! | m2; }
          out[q + j] = l1 | (l2 << 4);
        }
      }
    }
  }
  return out;
}

export const quantizeQ4_K = (x: Float32Array) => quantizeQ45K(x, 4);
export const quantizeQ5_K = (x: Float32Array) => quantizeQ45K(x, 5);

/** quantize_row_q6_K_ref: x.length a multiple of 256. */
export function quantizeQ6_K(x: Float32Array): Uint8Array {
  const nb = x.length / QK_K;
  const out = new Uint8Array(nb * 210);
  const dv = new DataView(out.buffer);
  const L = new Uint8Array(QK_K);
  const scales = new Float32Array(16);
  for (let i = 0; i < nb; i++) {
    const xb = x.subarray(i * QK_K, (i + 1) * QK_K);
    const p = i * 210;
    let maxScale = 0, maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      scales[ib] = makeQxQuants(16, 32, xb.subarray(16 * ib, 16 * ib + 16), L.subarray(16 * ib));
      const a = Math.abs(scales[ib]!);
      if (a > maxAbsScale) {
        maxAbsScale = a;
        maxScale = scales[ib]!;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) continue; // all zero (d = +0)
    const iscale = fr(-128 / maxScale);
    dv.setUint16(p + 208, f32ToF16(fr(1 / iscale)), true);
    for (let ib = 0; ib < 16; ib++) dv.setInt8(p + 192 + ib, Math.min(127, nearestInt(fr(iscale * scales[ib]!))));
    const d = f16ToF32(dv.getUint16(p + 208, true));
    for (let j = 0; j < 16; j++) {
      const dj = fr(d * dv.getInt8(p + 192 + j));
      if (!dj) continue;
      for (let ii = 0; ii < 16; ii++) L[16 * j + ii] = clamp(nearestInt(fr(xb[16 * j + ii]! / dj)), -32, 31) + 32;
    }
    for (let j = 0, ql = p, qh = p + 128; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (let l = 0; l < 32; l++) {
        out[ql + l] = (L[j + l]! & 0xf) | ((L[j + l + 64]! & 0xf) << 4);
        out[ql + l + 32] = (L[j + l + 32]! & 0xf) | ((L[j + l + 96]! & 0xf) << 4);
        out[qh + l] = (L[j + l]! >> 4) | ((L[j + l + 32]! >> 4) << 2) | ((L[j + l + 64]! >> 4) << 4) | ((L[j + l + 96]! >> 4) << 6);
      }
    }
  }
  return out;
}

/**
 * The integer values of one K-quant block (at byte `p` of `src`) and its sub-block scales: q gets the 256 values
 * (Q4_K 0..15, Q5_K 0..31, Q6_K -32..31); Q4_K/Q5_K: sc and mn get the 8 six-bit scales and mins, and the block's
 * d and dmin are returned; Q6_K: sc gets the 16 int8 scales, dmin is 0.
 */
export function unpackKBlock(type: "q4_K" | "q5_K" | "q6_K", src: Uint8Array, p: number, q: Int8Array, sc: Int32Array, mn: Int32Array): [number, number] {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  if (type === "q6_K") {
    for (let n = 0, ql = p, qh = p + 128; n < QK_K; n += 128, ql += 64, qh += 32) {
      for (let l = 0; l < 32; l++) {
        const h = src[qh + l]!;
        q[n + l] = ((src[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
        q[n + l + 32] = ((src[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        q[n + l + 64] = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        q[n + l + 96] = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
      }
    }
    for (let j = 0; j < 16; j++) sc[j] = dv.getInt8(p + 192 + j);
    return [f16ToF32(dv.getUint16(p + 208, true)), 0];
  }
  for (let j = 0; j < 8; j++) [sc[j], mn[j]] = scaleMinK4(j, src, p + 4);
  const five = type === "q5_K";
  const ql = p + (five ? 48 : 16);
  for (let c = 0; c < 4; c++) {
    for (let l = 0; l < 32; l++) {
      const b = src[ql + 32 * c + l]!;
      const h = five ? src[p + 16 + l]! : 0;
      q[64 * c + l] = (b & 0xf) | (((h >> (2 * c)) & 1) << 4);
      q[64 * c + 32 + l] = (b >> 4) | (((h >> (2 * c + 1)) & 1) << 4);
    }
  }
  return [f16ToF32(dv.getUint16(p, true)), f16ToF32(dv.getUint16(p + 2, true))];
}

/** Bytes of one block, from ggml-types' layout table. */
const K_BLOCK_BYTES = {
  q4_K: typeLayout(GGML_TYPE.Q4_K).blockBytes, q5_K: typeLayout(GGML_TYPE.Q5_K).blockBytes, q6_K: typeLayout(GGML_TYPE.Q6_K).blockBytes,
};

/** dequantize_row_q{4,5,6}_K: n values of the row at byte `off` of `src` into out. */
export function dequantizeK(type: "q4_K" | "q5_K" | "q6_K", src: Uint8Array, off: number, n: number, out: Float32Array): void {
  const q = new Int8Array(QK_K), sc = new Int32Array(16), mn = new Int32Array(8);
  for (let b = 0; b < n / QK_K; b++) {
    const [d, dmin] = unpackKBlock(type, src, off + b * K_BLOCK_BYTES[type], q, sc, mn);
    const y = b * QK_K;
    if (type === "q6_K") {
      for (let i = 0; i < QK_K; i++) out[y + i] = fr(fr(d * sc[i >> 4]!) * q[i]!);
    } else {
      for (let s = 0; s < 8; s++) {
        const ds = fr(d * sc[s]!), ms = fr(dmin * mn[s]!);
        for (let l = 0; l < 32; l++) out[y + 32 * s + l] = fr(fr(ds * q[32 * s + l]!) - ms);
      }
    }
  }
}

/**
 * quantize_row_q8_K_ref (the activations of K-quant products): per 256 values, d = max/-127 (the signed value of
 * largest magnitude), q = min(127, nearest_int(x * -127/max)), and the sums of each 16 q (bsums).
 */
export function quantizeActivationsQ8_K(x: Float32Array, qs: Int8Array, ds: Float32Array, bsums: Int32Array): void {
  for (let b = 0; b < x.length / QK_K; b++) {
    let max = 0, amax = 0;
    for (let j = 0; j < QK_K; j++) {
      const ax = Math.abs(x[b * QK_K + j]!);
      if (ax > amax) {
        amax = ax;
        max = x[b * QK_K + j]!;
      }
    }
    if (!amax) {
      ds[b] = 0;
      qs.fill(0, b * QK_K, (b + 1) * QK_K);
      bsums.fill(0, b * 16, b * 16 + 16);
      continue;
    }
    const iscale = fr(-127 / max);
    if (!Number.isFinite(iscale)) {
      // |max| below 127 / 2^128: iscale overflows, and ggml's nearest_int of the infinite (or, for 0 * inf, NaN)
      // products is -2^22 (or 0), which its int8 store wraps to 0: every q is 0
      qs.fill(0, b * QK_K, (b + 1) * QK_K);
      bsums.fill(0, b * 16, b * 16 + 16);
      ds[b] = fr(1 / iscale);
      continue;
    }
    for (let j = 0; j < QK_K; j++) qs[b * QK_K + j] = Math.min(127, nearestInt(fr(iscale * x[b * QK_K + j]!)));
    for (let j = 0; j < 16; j++) {
      let s = 0;
      for (let i = 0; i < 16; i++) s += qs[b * QK_K + 16 * j + i]!;
      bsums[b * 16 + j] = s;
    }
    ds[b] = fr(1 / iscale);
  }
}

/** Scratch for dotKRow (one block's values and scales, 8 integer lanes). */
export interface KDotScratch {
  q: Int8Array;
  sc: Int32Array;
  mn: Int32Array;
  lanes: Float64Array;
  acc: Float32Array;
}
export const kDotScratch = (): KDotScratch => ({
  q: new Int8Array(QK_K), sc: new Int32Array(16), mn: new Int32Array(8), lanes: new Float64Array(8), acc: new Float32Array(8),
});

/** a*b + c rounded once to f32 (a*b exact in double: f32 times f32). */
const fma = (a: number, b: number, c: number) => fr(a * b + c);

/**
 * How llama.cpp's x86 (AVX2) CPU backend multiplies a K-quant row with a token: Q4_K matrices with rows % 8 == 0
 * are repacked (block_q4_Kx8) and go through gemm_q4_K_8x8_q8_K for each whole group of 4 tokens of a batch and
 * gemv_q4_K_8x8_q8_K for the rest; everything else through ggml_vec_dot_q{4,5,6}_K_q8_K.
 */
export type KOrder = "vec_dot" | "gemv" | "gemm";

/** The order of token t of n for a matrix that is (or is not) repacked. */
export function kOrder(repacked: boolean, t: number, n: number): KOrder {
  return !repacked ? "vec_dot" : t < n - (n % 4) ? "gemm" : "gemv";
}

/**
 * One row of K-quant weights (at byte `p` of `w`) times one token's Q8_K activations (qs from `xo`, its blocks' d
 * and 16-value sums in ds and bsums), in llama.cpp's order (integer sums exact throughout):
 * - gemv: per block one integer sum sumi = sum_s scale[s] * (q . q8 over sub-block s) and summ = sum_s min[s] *
 *   (bsums of s); acc = fma(f32(sumi), d*d8, acc), accm = fma(f32(summ), dmin*d8, accm); result acc - accm.
 * - gemm: the same, but fused per pair of sub-blocks (4 times a block) instead of per block.
 * - vec_dot: 8 integer lanes per block, lane m summing bytes 4m..4m+3 of every 32-value group times its group's
 *   scale (Q6_K: minus 32 * its two 16-value sums times their scales), fused into 8 f32 accumulators with d*d8,
 *   reduced by hsum_float_8; Q4_K's mins go to 4 more lanes (with -dmin*d8), Q5_K's to one scalar.
 */
export function dotKRow(type: "q4_K" | "q5_K" | "q6_K", w: Uint8Array, p: number, cols: number,
  qs: Int8Array, xo: number, ds: Float32Array, bsums: Int32Array, order: KOrder, t: KDotScratch): number {
  const { q, sc, mn, lanes, acc } = t;
  let accRow = 0, accMin = 0;
  acc.fill(0);
  const accM = [0, 0, 0, 0];
  let summs = 0;
  for (let b = 0; b < cols / QK_K; b++) {
    const [d16, dmin16] = unpackKBlock(type, w, p + b * K_BLOCK_BYTES[type], q, sc, mn);
    const x0 = xo + b * QK_K;
    const bi = x0 / QK_K;
    const d8 = ds[bi]!;
    const bs = (j: number) => bsums[bi * 16 + j]!;
    if (order !== "vec_dot") {
      // integer sums of `per` consecutive 32-value sub-blocks at a time: the whole block (gemv) or pairs (gemm)
      const per = order === "gemv" ? 8 : 2;
      for (let s0 = 0; s0 < 8; s0 += per) {
        let sumi = 0, summ = 0;
        for (let i = 32 * s0; i < 32 * (s0 + per); i++) sumi += sc[i >> 5]! * q[i]! * qs[x0 + i]!;
        for (let j = 2 * s0; j < 2 * (s0 + per); j++) summ += mn[j >> 1]! * bs(j);
        accRow = fma(fr(sumi), fr(d16 * d8), accRow);
        accMin = fma(fr(summ), fr(dmin16 * d8), accMin);
      }
      continue;
    }
    // the 8 integer lanes
    lanes.fill(0);
    const u = type === "q6_K" ? 32 : 0; // Q6_K multiplies unsigned values (q + 32) and subtracts the offset after
    for (let i = 0; i < QK_K; i++) {
      const s = type === "q6_K" ? sc[i >> 4]! : sc[i >> 5]!;
      const m = (i & 31) >> 2;
      lanes[m] = lanes[m]! + s * (q[i]! + u) * qs[x0 + i]!;
    }
    if (type === "q6_K") for (let m = 0; m < 8; m++) lanes[m] = lanes[m]! - 32 * (bs(2 * m) * sc[2 * m]! + bs(2 * m + 1) * sc[2 * m + 1]!);
    const d = fr(d8 * d16);
    for (let m = 0; m < 8; m++) acc[m] = fma(d, fr(lanes[m]!), acc[m]!);
    if (type === "q6_K") continue;
    const dmin = fr(-d8 * dmin16);
    const q8s = (j: number) => bs(2 * j) + bs(2 * j + 1);
    if (type === "q4_K") {
      for (let k = 0; k < 4; k++) accM[k] = fma(dmin, fr(mn[2 * k]! * q8s(2 * k) + mn[2 * k + 1]! * q8s(2 * k + 1)), accM[k]!);
    } else {
      let M = 0;
      for (let j = 0; j < 8; j++) M += mn[j]! * q8s(j);
      summs = fma(dmin, fr(M), summs);
    }
  }
  if (order !== "vec_dot") return fr(accRow - accMin);
  const h = hsum8(acc);
  if (type === "q4_K") return fr(h + fr(fr(accM[0]! + accM[2]!) + fr(accM[1]! + accM[3]!)));
  if (type === "q5_K") return fr(h + summs);
  return h;
}
