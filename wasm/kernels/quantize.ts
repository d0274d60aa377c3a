// ---- Weight quantizers: ggml's reference quantizers (quantize_row_*_ref), bit for bit ----
// The twins of src/engine/quant.ts and quant-k.ts (the TypeScript versions, checked against golden values from
// libggml-base), in the same f32 arithmetic and the same order: scalar code, since ggml's reference code is
// scalar and a vector sum would round differently. `gemma-edge quantize` and `make-test-model` run these: the
// K-quant search (make_qkx2_quants' 21 trial scales per 32 values) is where a quantizer spends its time.
import { f16_to_f32, f32_to_f16_bits } from "./common";

const GROUP_MAX_EPS: f32 = 1e-15;

/** nearest_int: round half to even by adding 1.5 * 2^23 in f32 (|v| < 2^22). */
@inline function nearest_int(v: f32): i32 {
  return <i32>((v + <f32>12582912.0) - <f32>12582912.0);
}

@inline function clampi(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}

/** Store v as an f16 at p; returns the stored half's value (infinities and NaN included, as numeric.ts f16ToF32). */
@inline function store_f16(p: usize, v: f32): f32 {
  const h = f32_to_f16_bits(v);
  store<u16>(p, <u16>h);
  if ((h & 0x7c00) == 0x7c00) return (h & 0x3ff) != 0 ? NaN : h & 0x8000 ? -Infinity : Infinity;
  return f16_to_f32(h);
}

@inline function xf(x: usize, i: i32): f32 {
  return load<f32>(x + (<usize>i << 2));
}

/** roundf: halves away from zero. */
@inline function roundf(v: f32): i32 {
  const t = Mathf.trunc(v);
  const r = Mathf.abs(v - t) >= <f32>0.5 ? t + (v < 0 ? <f32>-1 : <f32>1) : t;
  return <i32>r;
}

/** quantize_row_q4_0_ref / q5_0 (bits 4/5): d = max / -(2^(bits-1)) of the value with the largest magnitude. */
function q_centred(bits: i32, x: usize, nb: i32, out: usize): void {
  const bb: usize = bits == 4 ? 18 : 22;
  const qs: usize = bits == 4 ? 2 : 6;
  const top = (1 << bits) - 1;
  const off: f32 = bits == 4 ? 8.5 : 16.5;
  for (let i = 0; i < nb; i++) {
    const xb = x + (<usize>i << 7), p = out + <usize>i * bb;
    let amax: f32 = 0, max: f32 = 0;
    for (let j = 0; j < 32; j++) {
      const v = xf(xb, j);
      if (amax < Mathf.abs(v)) {
        amax = Mathf.abs(v);
        max = v;
      }
    }
    const d: f32 = max / (bits == 4 ? <f32>-8 : <f32>-16);
    const id: f32 = d != 0 ? <f32>1 / d : 0;
    store_f16(p, d);
    let qh: u32 = 0;
    for (let j = 0; j < 16; j++) {
      // MIN(top, (int8_t)(x*id + off)): truncation toward zero of an f32 sum
      const q0 = <u32>min(top, <i32><i8><i32>(xf(xb, j) * id + off)) & 0xff;
      const q1 = <u32>min(top, <i32><i8><i32>(xf(xb, 16 + j) * id + off)) & 0xff;
      store<u8>(p + qs + <usize>j, <u8>((q0 & 0x0f) | ((q1 & 0x0f) << 4)));
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + 16);
    }
    if (bits == 5) store<u32>(p + 2, qh);
  }
}

/** quantize_row_q4_1_ref / q5_1 (bits 4/5): min and (max - min) / (2^bits - 1) per block. */
function q_min_max(bits: i32, x: usize, nb: i32, out: usize): void {
  const bb: usize = bits == 4 ? 20 : 24;
  const qs: usize = bits == 4 ? 4 : 8;
  for (let i = 0; i < nb; i++) {
    const xb = x + (<usize>i << 7), p = out + <usize>i * bb;
    let mn = Infinity as f32, mx = -Infinity as f32;
    for (let j = 0; j < 32; j++) {
      const v = xf(xb, j);
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    const d: f32 = (mx - mn) / <f32>((1 << bits) - 1);
    const id: f32 = d != 0 ? <f32>1 / d : 0;
    store_f16(p, d);
    store_f16(p + 2, mn);
    let qh: u32 = 0;
    for (let j = 0; j < 16; j++) {
      const x0 = (xf(xb, j) - mn) * id, x1 = (xf(xb, 16 + j) - mn) * id;
      // Q4_1: MIN(15, (int8_t)(x + 0.5f)); Q5_1: (uint8_t)(x + 0.5f)
      const q0 = bits == 4 ? <u32>min(15, <i32><i8><i32>(x0 + <f32>0.5)) & 0xff : <u32><u8><i32>(x0 + <f32>0.5);
      const q1 = bits == 4 ? <u32>min(15, <i32><i8><i32>(x1 + <f32>0.5)) & 0xff : <u32><u8><i32>(x1 + <f32>0.5);
      store<u8>(p + qs + <usize>j, <u8>((q0 & 0x0f) | ((q1 & 0x0f) << 4)));
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + 16);
    }
    if (bits == 5) store<u32>(p + 4, qh);
  }
}

/** quantize_row_q8_0_ref. */
function q8_0(x: usize, nb: i32, out: usize): void {
  for (let i = 0; i < nb; i++) {
    const xb = x + (<usize>i << 7), p = out + <usize>i * 34;
    let amax: f32 = 0;
    for (let j = 0; j < 32; j++) amax = max(amax, Mathf.abs(xf(xb, j)));
    const d: f32 = amax / <f32>127;
    const id: f32 = d != 0 ? <f32>1 / d : 0;
    store_f16(p, d);
    for (let j = 0; j < 32; j++) store<i8>(p + 2 + <usize>j, <i8>roundf(xf(xb, j) * id));
  }
}

/**
 * make_qkx2_quants: a scale (returned) and a min (stored at `minOut`, negated as ggml returns it) for n values
 * at x with weights w; L (n bytes) gets 0..nmax; Laux is n bytes of scratch.
 */
function make_qkx2_quants(n: i32, nmax: i32, x: usize, w: usize, L: usize, Laux: usize, rmin: f32, rdelta: f32, nstep: i32, minOut: usize): f32 {
  let mn = xf(x, 0), mx = xf(x, 0);
  let sumW = xf(w, 0);
  let sumX: f32 = sumW * xf(x, 0);
  for (let i = 1; i < n; i++) {
    const v = xf(x, i);
    if (v < mn) mn = v;
    if (v > mx) mx = v;
    sumW += xf(w, i);
    sumX += xf(w, i) * v;
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    memory.fill(L, 0, <usize>n);
    store<f32>(minOut, -mn);
    return 0;
  }
  let iscale: f32 = <f32>nmax / (mx - mn);
  let scale: f32 = <f32>1 / iscale;
  let bestError: f32 = 0;
  for (let i = 0; i < n; i++) {
    const l = clampi(nearest_int(iscale * (xf(x, i) - mn)), 0, nmax);
    store<u8>(L + <usize>i, <u8>l);
    const diff: f32 = (scale * <f32>l + mn) - xf(x, i);
    bestError += xf(w, i) * (diff * diff);
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = ((rmin + rdelta * <f32>is) + <f32>nmax) / (mx - mn);
    let sumL: f32 = 0, sumL2: f32 = 0, sumXL: f32 = 0;
    for (let i = 0; i < n; i++) {
      const l = clampi(nearest_int(iscale * (xf(x, i) - mn)), 0, nmax);
      store<u8>(Laux + <usize>i, <u8>l);
      const wl: f32 = xf(w, i) * <f32>l;
      sumL += wl;
      sumL2 += wl * <f32>l;
      sumXL += wl * xf(x, i);
    }
    const D: f32 = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale: f32 = (sumW * sumXL - sumX * sumL) / D;
      let thisMin: f32 = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      let curError: f32 = 0;
      for (let i = 0; i < n; i++) {
        const diff: f32 = (thisScale * <f32>load<u8>(Laux + <usize>i) + thisMin) - xf(x, i);
        curError += xf(w, i) * (diff * diff);
      }
      if (curError < bestError) {
        memory.copy(L, Laux, <usize>n);
        bestError = curError;
        scale = thisScale;
        mn = thisMin;
      }
    }
  }
  store<f32>(minOut, -mn);
  return scale;
}

/** The sums of make_qx_quants (rmse_type 1, no weights) at one inverse scale; L gets l + nmax when `keep`. */
@inline function qx_sums(n: i32, nmax: i32, x: usize, iscale: f32, L: usize, keep: bool, sums: usize): void {
  let sumlx: f32 = 0, suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = xf(x, i);
    const l = clampi(nearest_int(iscale * v), -nmax, nmax - 1);
    if (keep) store<u8>(L + <usize>i, <u8>(l + nmax));
    const w: f32 = v * v;
    sumlx += (w * v) * <f32>l;
    suml2 += (w * <f32>l) * <f32>l;
  }
  store<f32>(sums, sumlx);
  store<f32>(sums + 4, suml2);
}

/** make_qx_quants with rmse_type 1 and no importance weights: L gets l + nmax (0..2*nmax-1); returns the scale. */
function make_qx_quants(n: i32, nmax: i32, x: usize, L: usize, sums: usize): f32 {
  let mx: f32 = 0, amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const ax = Mathf.abs(xf(x, i));
    if (ax > amax) {
      amax = ax;
      mx = xf(x, i);
    }
  }
  if (amax < GROUP_MAX_EPS) {
    memory.fill(L, 0, <usize>n);
    return 0;
  }
  qx_sums(n, nmax, x, -<f32>nmax / mx, L, true, sums);
  let sumlx = load<f32>(sums), suml2 = load<f32>(sums + 4);
  let scale: f32 = suml2 != 0 ? sumlx / suml2 : 0;
  let best: f32 = scale * sumlx;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    const iscale: f32 = -(<f32>nmax + <f32>0.1 * <f32>is) / mx;
    qx_sums(n, nmax, x, iscale, L, false, sums);
    sumlx = load<f32>(sums);
    suml2 = load<f32>(sums + 4);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      qx_sums(n, nmax, x, iscale, L, true, sums);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/** get_scale_min_k4 of sub-block j from the 12 packed bytes at q: the scale, and the min at (result >> 8). */
@inline function scale_min_k4(j: i32, q: usize): i32 {
  const u = <usize>j;
  const a = <i32>load<u8>(q + u), b = <i32>load<u8>(q + u + 4);
  if (j < 4) return (a & 63) | ((b & 63) << 8);
  const s = (b & 0xf) | ((<i32>load<u8>(q + u - 4) >> 6) << 4);
  const m = (b >> 4) | ((a >> 6) << 4);
  return s | (m << 8);
}

// scratch layout (bytes): L 256 | Laux 32 | weights 32 f32 | scales 16 f32 | mins 8 f32 | 2 f32 (min out, sums)
const S_LAUX: usize = 256, S_W: usize = 288, S_SC: usize = 416, S_MN: usize = 480, S_OUT: usize = 512;
/** Bytes of scratch quantize_row needs. */
export const QUANTIZE_SCRATCH: i32 = 528;

/** quantize_row_q4_K_ref (bits 4) and quantize_row_q5_K_ref (bits 5). */
function q45_k(bits: i32, x: usize, nb: i32, out: usize, s: usize): void {
  const bb: usize = bits == 4 ? 144 : 176;
  const nmax = bits == 4 ? 15 : 31;
  const L = s, Laux = s + S_LAUX, weights = s + S_W, scales = s + S_SC, mins = s + S_MN;
  for (let i = 0; i < nb; i++) {
    const xb = x + (<usize>i << 10), p = out + <usize>i * bb;
    memory.fill(p, 0, bb);
    let maxScale: f32 = 0, maxMin: f32 = 0;
    for (let j = 0; j < 8; j++) {
      const xs = xb + (<usize>j << 7);
      let sumX2: f32 = 0;
      for (let l = 0; l < 32; l++) sumX2 += xf(xs, l) * xf(xs, l);
      const avX = Mathf.sqrt(sumX2 / <f32>32);
      for (let l = 0; l < 32; l++) store<f32>(weights + (<usize>l << 2), avX + Mathf.abs(xf(xs, l)));
      const sc = bits == 4
        ? make_qkx2_quants(32, nmax, xs, weights, L + (<usize>j << 5), Laux, -1, 0.1, 20, s + S_OUT)
        : make_qkx2_quants(32, nmax, xs, weights, L + (<usize>j << 5), Laux, -0.5, 0.1, 15, s + S_OUT);
      const m = load<f32>(s + S_OUT);
      store<f32>(scales + (<usize>j << 2), sc);
      store<f32>(mins + (<usize>j << 2), m);
      if (sc > maxScale) maxScale = sc;
      if (m > maxMin) maxMin = m;
    }
    const invScale: f32 = maxScale > 0 ? <f32>63 / maxScale : 0;
    const invMin: f32 = maxMin > 0 ? <f32>63 / maxMin : 0;
    const q = p + 4; // the 12 scale bytes
    for (let j = 0; j < 8; j++) {
      const ls = min(63, nearest_int(invScale * load<f32>(scales + (<usize>j << 2))) & 0xff);
      const lm = min(63, nearest_int(invMin * load<f32>(mins + (<usize>j << 2))) & 0xff);
      const u = <usize>j;
      if (j < 4) {
        store<u8>(q + u, <u8>ls);
        store<u8>(q + u + 4, <u8>lm);
      } else {
        store<u8>(q + u + 4, <u8>((ls & 0xf) | ((lm & 0xf) << 4)));
        store<u8>(q + u - 4, load<u8>(q + u - 4) | <u8>((ls >> 4) << 6));
        store<u8>(q + u, load<u8>(q + u) | <u8>((lm >> 4) << 6));
      }
    }
    const d = store_f16(p, maxScale / <f32>63);
    const dmin = store_f16(p + 2, maxMin / <f32>63);
    for (let j = 0; j < 8; j++) {
      const sm = scale_min_k4(j, q);
      const dj: f32 = d * <f32>(sm & 0xff);
      if (dj == 0) continue;
      const dm: f32 = dmin * <f32>(sm >> 8);
      for (let ii = 0; ii < 32; ii++) {
        const k = 32 * j + ii;
        store<u8>(L + <usize>k, <u8>clampi(nearest_int((xf(xb, k) + dm) / dj), 0, nmax));
      }
    }
    if (bits == 4) {
      for (let j = 0, o: usize = p + 16; j < 256; j += 64, o += 32) {
        for (let l = 0; l < 32; l++) store<u8>(o + <usize>l, load<u8>(L + <usize>(j + l)) | (load<u8>(L + <usize>(j + l + 32)) << 4));
      }
    } else {
      const qh = p + 16;
      let m1: u8 = 1, m2: u8 = 2;
      for (let n = 0, o: usize = p + 48; n < 256; n += 64, o += 32, m1 <<= 2, m2 <<= 2) {
        for (let j = 0; j < 32; j++) {
          let l1 = load<u8>(L + <usize>(n + j)), l2 = load<u8>(L + <usize>(n + j + 32));
          if (l1 > 15) { l1 -= 16; store<u8>(qh + <usize>j, load<u8>(qh + <usize>j) | m1); }
          if (l2 > 15) { l2 -= 16; store<u8>(qh + <usize>j, load<u8>(qh + <usize>j) | m2); }
          store<u8>(o + <usize>j, l1 | (l2 << 4));
        }
      }
    }
  }
}

/** quantize_row_q6_K_ref. */
function q6_k(x: usize, nb: i32, out: usize, s: usize): void {
  const L = s, scales = s + S_SC;
  for (let i = 0; i < nb; i++) {
    const xb = x + (<usize>i << 10), p = out + <usize>i * 210;
    memory.fill(p, 0, 210);
    let maxScale: f32 = 0, maxAbsScale: f32 = 0;
    for (let ib = 0; ib < 16; ib++) {
      const sc = make_qx_quants(16, 32, xb + (<usize>ib << 6), L + (<usize>ib << 4), s + S_OUT);
      store<f32>(scales + (<usize>ib << 2), sc);
      const a = Mathf.abs(sc);
      if (a > maxAbsScale) {
        maxAbsScale = a;
        maxScale = sc;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) continue; // all zero (d = +0)
    const iscale: f32 = <f32>-128 / maxScale;
    const d = store_f16(p + 208, <f32>1 / iscale);
    for (let ib = 0; ib < 16; ib++) store<i8>(p + 192 + <usize>ib, <i8>min(127, nearest_int(iscale * load<f32>(scales + (<usize>ib << 2)))));
    for (let j = 0; j < 16; j++) {
      const dj: f32 = d * <f32>load<i8>(p + 192 + <usize>j);
      if (dj == 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const k = 16 * j + ii;
        store<u8>(L + <usize>k, <u8>(clampi(nearest_int(xf(xb, k) / dj), -32, 31) + 32));
      }
    }
    for (let j = 0, ql: usize = p, qh: usize = p + 128; j < 256; j += 128, ql += 64, qh += 32) {
      for (let l = 0; l < 32; l++) {
        const a = load<u8>(L + <usize>(j + l)), b = load<u8>(L + <usize>(j + l + 32));
        const c = load<u8>(L + <usize>(j + l + 64)), e = load<u8>(L + <usize>(j + l + 96));
        store<u8>(ql + <usize>l, (a & 0xf) | ((c & 0xf) << 4));
        store<u8>(ql + <usize>(l + 32), (b & 0xf) | ((e & 0xf) << 4));
        store<u8>(qh + <usize>l, (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
      }
    }
  }
}

/**
 * Quantize n f32 values at x (n a multiple of the type's block) into ggml blocks at out, for the ggml type ids
 * Q4_0 (2), Q4_1 (3), Q5_0 (6), Q5_1 (7), Q8_0 (8), Q4_K (12), Q5_K (13), Q6_K (14); scratch: QUANTIZE_SCRATCH
 * bytes. Returns 0, or -1 for a type it does not know.
 */
export function quantize_row(type: i32, x: usize, n: i32, out: usize, scratch: usize): i32 {
  switch (type) {
    case 2: q_centred(4, x, n >> 5, out); break;
    case 3: q_min_max(4, x, n >> 5, out); break;
    case 6: q_centred(5, x, n >> 5, out); break;
    case 7: q_min_max(5, x, n >> 5, out); break;
    case 8: q8_0(x, n >> 5, out); break;
    case 12: q45_k(4, x, n >> 8, out, scratch); break;
    case 13: q45_k(5, x, n >> 8, out, scratch); break;
    case 14: q6_k(x, n >> 8, out, scratch); break;
    default: return -1;
  }
  return 0;
}
