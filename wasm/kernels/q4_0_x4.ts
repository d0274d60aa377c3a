// ---- Q4_0 in groups of 4 rows ("x4"), repacked at load time: the layout of the fast kernel ----
//   Per group of 4 rows, per block b, 72 bytes (the four original 18-byte blocks, so the repacking is in place):
//     0: the four rows' f16 scales
//     8 + 16j (j = 0..3): row r's quant bytes 4j..4j+3 at 4r: low nibbles are positions 4j..4j+3 of the block, high
//        nibbles positions 16+4j..16+4j+3, of the four rows.
//   A product multiplies such a vector by one token's four activations broadcast to the four i32 lanes, so lane r
//   is row r's sum from the start (no horizontal sums), and each unpacked weight vector serves several tokens: the
//   layout of kquant.ts's Q4_K x4.
import { f16_to_f32, f16x4_load_to_f32x4, fusedMadd, K_0F, kc, lane4, x4_add, x4_dotv } from "./common";

/** Repack `rows` (a multiple of 4) rows of Q4_0 at `w` in place; `tmp` holds cols/32*72 bytes. */
export function repack_q4_0_x4(w: usize, rows: i32, cols: i32, tmp: usize): void {
  const nb = cols >> 5;
  const groupBytes = <usize>nb * 72;
  for (let g = 0; g < rows; g += 4) {
    const base = w + <usize>(g >> 2) * groupBytes;
    memory.copy(tmp, base, groupBytes);
    for (let b = 0; b < nb; b++) {
      const dst = base + <usize>b * 72;
      for (let r = 0; r < 4; r++) {
        const src = tmp + <usize>r * <usize>nb * 18 + <usize>b * 18;
        store<u16>(dst + (<usize>r << 1), load<u16>(src));
        for (let j = 0; j < 4; j++) store<u32>(dst + 8 + (<usize>j << 4) + (<usize>r << 2), load<u32>(src + 2 + (<usize>j << 2)));
      }
    }
  }
}

/** Row `row` of an x4-repacked Q4_0 matrix back to f32 (the embedding lookup). */
export function dequant_q4_0_x4_row(w: usize, cols: i32, row: i32, out: usize): void {
  const nb = cols >> 5;
  const p0 = w + <usize>(row >> 2) * <usize>nb * 72;
  const r = row & 3;
  for (let b = 0; b < nb; b++) {
    const p = p0 + <usize>b * 72;
    const d = f16_to_f32(load<u16>(p + (<usize>r << 1)));
    for (let l = 0; l < 16; l++) {
      const v = <i32>load<u8>(p + 8 + (<usize>(l >> 2) << 4) + (<usize>r << 2) + <usize>(l & 3));
      store<f32>(out + (<usize>(b * 32 + l) << 2), <f32>((v & 15) - 8) * d);
      store<f32>(out + (<usize>(b * 32 + l + 16) << 2), <f32>((v >> 4) - 8) * d);
    }
  }
}

/** Unpacked nibbles of weight vector v: low (positions 4j..) and high halves; the -8 is applied later (relaxed). */
@inline function nib_lo(v: v128): v128 {
  const q = v128.and(v, kc(K_0F));
  return ASC_FEATURE_RELAXED_SIMD ? q : i8x16.sub(q, i8x16.splat(8));
}
@inline function nib_hi(v: v128): v128 {
  const q = v128.and(i16x8.shr_u(v, 4), kc(K_0F));
  return ASC_FEATURE_RELAXED_SIMD ? q : i8x16.sub(q, i8x16.splat(8));
}

/**
 * The block's integer sums (i32 lane r: row r's) from the partial sums a; xs: the token's block sum (relaxed: the
 * nibbles were left 0..15, so 8 times it comes off). extadd_pairwise is x64's pmaddwd with a constant from memory:
 * a `dot_i16x8_s` by splat(1) made V8 rebuild the constant in a register every block.
 */
@inline function block_isum(a: v128, xs: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.sub(i32x4.extadd_pairwise_i16x8_s(a), i32x4.shl(v128.load32_splat(xs), 3));
  return a;
}

/** a + the products of one weight vector's low nibbles by xlo and its high nibbles by xhi. */
@inline function xdot2(a: v128, lo: v128, hi: v128, xlo: v128, xhi: v128): v128 {
  return x4_add(x4_add(a, x4_dotv(lo, xlo)), x4_dotv(hi, xhi));
}

/** acc (two f64x2 holding f32 values) = isum * d + acc, rounded to f32 once per lane. */
@inline function fma_lanes(isum: v128, d: v128, acc: v128, high: bool): v128 {
  const i = high ? v128.shuffle<i32>(isum, isum, 2, 3, 0, 1) : isum;
  const dd = high ? v128.shuffle<f32>(d, d, 2, 3, 0, 1) : d;
  return f64x2.promote_low_f32x4(f32x4.demote_f64x2_zero(f64x2.add(f64x2.mul(f64x2.convert_low_i32x4_s(i), f64x2.promote_low_f32x4(dd)), acc)));
}

/**
 * x4-repacked Q4_0 x Q8_0 activations, llama.cpp's repacked order: per row, one integer sum per block fused into
 * one f32 accumulator (acc = isum * (dw*dx) + acc, rounded once). Four rows run in the four lanes.
 */
export function matmul_q4_0_x4(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, sums: usize, ntok: i32, out: usize, ostride: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) q4_0_x4<f32>(w, rows, cols, qs, ds, sums, ntok, out, ostride);
  else q4_0_x4<f64>(w, rows, cols, qs, ds, sums, ntok, out, ostride);
}

/** acc = isum * d + acc, rounded once per lane: one f32x4 by relaxed_madd (Acc = f32, where it is fused) or f64 pairs. */
@inline function acc_lo<Acc>(isum: v128, d: v128, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && sizeof<Acc>() == 4) return f32x4.relaxed_madd(f32x4.convert_i32x4_s(isum), d, acc);
  return fma_lanes(isum, d, acc, false);
}
@inline function acc_hi<Acc>(isum: v128, d: v128, acc: v128): v128 {
  if (sizeof<Acc>() == 4) return acc; // unused: acc_lo holds all four lanes
  return fma_lanes(isum, d, acc, true);
}
@inline function acc_zero<Acc>(): v128 {
  return sizeof<Acc>() == 4 ? f32x4.splat(0) : f64x2.splat(0);
}
@inline function acc_f32<Acc>(lo: v128, hi: v128): v128 {
  if (sizeof<Acc>() == 4) return lo;
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/**
 * One token (y: its activations, dp, sp: its scales and sums) against x4 groups at pa0 and pb0 at once: the
 * one-token loop of q4_0_x4 for both (each group's bits as alone), two streams from memory.
 */
@inline function q4_0_x4_gemv_2g<Acc>(pa0: usize, pb0: usize, nb: i32, y: usize, dp: usize, sp: usize, outA: usize, outB: usize): void {
  let aLo = acc_zero<Acc>(), aHi = acc_zero<Acc>(), bLo = acc_zero<Acc>(), bHi = acc_zero<Acc>();
  let pa = pa0, pb = pb0;
  for (let b = 0; b < nb; b++, pa += 72, pb += 72, y += 32, dp += 4, sp += 4) {
    const xl = v128.load(y), xh = v128.load(y, 16);
    let x0 = lane4(xl, 0), x1 = lane4(xh, 0);
    let v = v128.load(pa, 8), u = v128.load(pb, 8);
    let loA = x4_dotv(nib_lo(v), x0), hiA = x4_dotv(nib_hi(v), x1), loB = x4_dotv(nib_lo(u), x0), hiB = x4_dotv(nib_hi(u), x1);
    x0 = lane4(xl, 1); x1 = lane4(xh, 1); v = v128.load(pa, 24); u = v128.load(pb, 24);
    loA = x4_add(loA, x4_dotv(nib_lo(v), x0)); hiA = x4_add(hiA, x4_dotv(nib_hi(v), x1));
    loB = x4_add(loB, x4_dotv(nib_lo(u), x0)); hiB = x4_add(hiB, x4_dotv(nib_hi(u), x1));
    x0 = lane4(xl, 2); x1 = lane4(xh, 2); v = v128.load(pa, 40); u = v128.load(pb, 40);
    loA = x4_add(loA, x4_dotv(nib_lo(v), x0)); hiA = x4_add(hiA, x4_dotv(nib_hi(v), x1));
    loB = x4_add(loB, x4_dotv(nib_lo(u), x0)); hiB = x4_add(hiB, x4_dotv(nib_hi(u), x1));
    x0 = lane4(xl, 3); x1 = lane4(xh, 3); v = v128.load(pa, 56); u = v128.load(pb, 56);
    loA = x4_add(loA, x4_dotv(nib_lo(v), x0)); hiA = x4_add(hiA, x4_dotv(nib_hi(v), x1));
    loB = x4_add(loB, x4_dotv(nib_lo(u), x0)); hiB = x4_add(hiB, x4_dotv(nib_hi(u), x1));
    const dx = v128.load32_splat(dp);
    const iA = block_isum(x4_add(loA, hiA), sp), dA = f32x4.mul(f16x4_load_to_f32x4(pa), dx);
    const iB = block_isum(x4_add(loB, hiB), sp), dB = f32x4.mul(f16x4_load_to_f32x4(pb), dx);
    aLo = acc_lo<Acc>(iA, dA, aLo); aHi = acc_hi<Acc>(iA, dA, aHi);
    bLo = acc_lo<Acc>(iB, dB, bLo); bHi = acc_hi<Acc>(iB, dB, bHi);
  }
  v128.store(outA, acc_f32<Acc>(aLo, aHi));
  v128.store(outB, acc_f32<Acc>(bLo, bHi));
}

/** Tokens per tile in batched Q4_0 products: 16 tokens' Q8_0 activations (2048 columns: 34 KiB) stay in L2. */
const TOKEN_TILE = 16;

function q4_0_x4<Acc>(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, sums: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  const groupBytes = <usize>nb * 72;
  const tq = <usize>cols, td = <usize>nb << 2;
  const os = <usize>ostride << 2;
  // tiles of TOKEN_TILE tokens (their activations stay in cache), in each: row groups outside, tokens inside (four
  // at a time, sharing each unpacked weight vector): a group's weights are read from memory once per tile. Every
  // activation load has its offset as an immediate (one pointer per token): V8 computed an address per load
  // when they were written as a loop over the block's four weight vectors.
  let g0 = 0;
  if (ntok == 1) {
    // one token: groups g and g + half together, an odd last group alone below
    const groups = rows >> 2, half = groups >> 1;
    for (let g = 0; g < half; g++) {
      const ga = g << 2, gb = (g + half) << 2;
      q4_0_x4_gemv_2g<Acc>(w + <usize>(g) * groupBytes, w + <usize>(g + half) * groupBytes, nb, qs, ds, sums, out + (<usize>ga << 2), out + (<usize>gb << 2));
    }
    if ((groups & 1) == 0) return;
    g0 = rows - 4;
  }
  for (let t0 = 0; t0 < ntok; t0 += TOKEN_TILE) {
  const t1 = min(ntok, t0 + TOKEN_TILE);
  for (let g = g0; g < rows; g += 4) {
    const p0 = w + <usize>(g >> 2) * groupBytes;
    let t = t0;
    for (; t + 3 < t1; t += 4) {
      let y0 = qs + <usize>(t * cols);
      let y1 = y0 + tq, y2 = y1 + tq, y3 = y2 + tq;
      let dp = ds + (<usize>(t * nb) << 2), sp = sums + (<usize>(t * nb) << 2);
      let c0 = acc_zero<Acc>(), c1 = acc_zero<Acc>(), c2 = acc_zero<Acc>(), c3 = acc_zero<Acc>();
      let e0 = acc_zero<Acc>(), e1 = acc_zero<Acc>(), e2 = acc_zero<Acc>(), e3 = acc_zero<Acc>();
      let p = p0;
      for (let b = 0; b < nb; b++, p += 72, y0 += 32, y1 += 32, y2 += 32, y3 += 32, dp += 4, sp += 4) {
        // the block's four weight vectors in turn, each unpacked once for the four tokens
        let v = v128.load(p, 8);
        let lo = nib_lo(v), hi = nib_hi(v);
        let a0 = x4_dotv(hi, v128.load32_splat(y0, 16)), a1 = x4_dotv(hi, v128.load32_splat(y1, 16));
        let a2 = x4_dotv(hi, v128.load32_splat(y2, 16)), a3 = x4_dotv(hi, v128.load32_splat(y3, 16));
        a0 = x4_add(a0, x4_dotv(lo, v128.load32_splat(y0))); a1 = x4_add(a1, x4_dotv(lo, v128.load32_splat(y1)));
        a2 = x4_add(a2, x4_dotv(lo, v128.load32_splat(y2))); a3 = x4_add(a3, x4_dotv(lo, v128.load32_splat(y3)));
        v = v128.load(p, 24); lo = nib_lo(v); hi = nib_hi(v);
        a0 = xdot2(a0, lo, hi, v128.load32_splat(y0, 4), v128.load32_splat(y0, 20));
        a1 = xdot2(a1, lo, hi, v128.load32_splat(y1, 4), v128.load32_splat(y1, 20));
        a2 = xdot2(a2, lo, hi, v128.load32_splat(y2, 4), v128.load32_splat(y2, 20));
        a3 = xdot2(a3, lo, hi, v128.load32_splat(y3, 4), v128.load32_splat(y3, 20));
        v = v128.load(p, 40); lo = nib_lo(v); hi = nib_hi(v);
        a0 = xdot2(a0, lo, hi, v128.load32_splat(y0, 8), v128.load32_splat(y0, 24));
        a1 = xdot2(a1, lo, hi, v128.load32_splat(y1, 8), v128.load32_splat(y1, 24));
        a2 = xdot2(a2, lo, hi, v128.load32_splat(y2, 8), v128.load32_splat(y2, 24));
        a3 = xdot2(a3, lo, hi, v128.load32_splat(y3, 8), v128.load32_splat(y3, 24));
        v = v128.load(p, 56); lo = nib_lo(v); hi = nib_hi(v);
        a0 = xdot2(a0, lo, hi, v128.load32_splat(y0, 12), v128.load32_splat(y0, 28));
        a1 = xdot2(a1, lo, hi, v128.load32_splat(y1, 12), v128.load32_splat(y1, 28));
        a2 = xdot2(a2, lo, hi, v128.load32_splat(y2, 12), v128.load32_splat(y2, 28));
        a3 = xdot2(a3, lo, hi, v128.load32_splat(y3, 12), v128.load32_splat(y3, 28));
        const dw = f16x4_load_to_f32x4(p);
        const i0 = block_isum(a0, sp), d0 = f32x4.mul(dw, v128.load32_splat(dp));
        c0 = acc_lo<Acc>(i0, d0, c0); e0 = acc_hi<Acc>(i0, d0, e0);
        const i1 = block_isum(a1, sp + td), d1 = f32x4.mul(dw, v128.load32_splat(dp + td));
        c1 = acc_lo<Acc>(i1, d1, c1); e1 = acc_hi<Acc>(i1, d1, e1);
        const i2 = block_isum(a2, sp + 2 * td), d2 = f32x4.mul(dw, v128.load32_splat(dp + 2 * td));
        c2 = acc_lo<Acc>(i2, d2, c2); e2 = acc_hi<Acc>(i2, d2, e2);
        const i3 = block_isum(a3, sp + 3 * td), d3 = f32x4.mul(dw, v128.load32_splat(dp + 3 * td));
        c3 = acc_lo<Acc>(i3, d3, c3); e3 = acc_hi<Acc>(i3, d3, e3);
      }
      const o = out + (<usize>(t * ostride + g) << 2);
      v128.store(o, acc_f32<Acc>(c0, e0));
      v128.store(o + os, acc_f32<Acc>(c1, e1));
      v128.store(o + 2 * os, acc_f32<Acc>(c2, e2));
      v128.store(o + 3 * os, acc_f32<Acc>(c3, e3));
    }
    for (; t < t1; t++) {
      let y = qs + <usize>(t * cols), dp = ds + (<usize>(t * nb) << 2), sp = sums + (<usize>(t * nb) << 2);
      let accLo = acc_zero<Acc>(), accHi = acc_zero<Acc>();
      let p = p0;
      for (let b = 0; b < nb; b++, p += 72, y += 32, dp += 4, sp += 4) {
        // two independent sums (low and high nibbles), each weight vector loaded once; the activations by two
        // loads and a shuffle each (eight broadcasts at eight offsets: V8 keeps eight base registers)
        const xl = v128.load(y), xh = v128.load(y, 16);
        let v = v128.load(p, 8);
        let lo = x4_dotv(nib_lo(v), lane4(xl, 0)), hi = x4_dotv(nib_hi(v), lane4(xh, 0));
        v = v128.load(p, 24);
        lo = x4_add(lo, x4_dotv(nib_lo(v), lane4(xl, 1))); hi = x4_add(hi, x4_dotv(nib_hi(v), lane4(xh, 1)));
        v = v128.load(p, 40);
        lo = x4_add(lo, x4_dotv(nib_lo(v), lane4(xl, 2))); hi = x4_add(hi, x4_dotv(nib_hi(v), lane4(xh, 2)));
        v = v128.load(p, 56);
        lo = x4_add(lo, x4_dotv(nib_lo(v), lane4(xl, 3))); hi = x4_add(hi, x4_dotv(nib_hi(v), lane4(xh, 3)));
        const isum = block_isum(x4_add(lo, hi), sp);
        const d = f32x4.mul(f16x4_load_to_f32x4(p), v128.load32_splat(dp));
        accLo = acc_lo<Acc>(isum, d, accLo);
        accHi = acc_hi<Acc>(isum, d, accHi);
      }
      v128.store(out + (<usize>(t * ostride + g) << 2), acc_f32<Acc>(accLo, accHi));
    }
  }
  }
}
