// ---- Q4_0 in groups of 4 rows ("x4"), repacked at load time: the layout of the fast kernel ----
//   per group of 4 rows, per block b: 4 x f16 scales (8 bytes) | 4 x 16 nibble bytes (64 bytes) = 72 bytes,
//   the same size as the 4 original 18-byte blocks, so the repacking happens in place.
import { f16_to_f32, f16x4_to_f32x4, fusedMadd } from "./common";

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
        v128.store(dst + 8 + (<usize>r << 4), v128.load(src + 2));
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
    const q = p + 8 + (<usize>r << 4);
    for (let j = 0; j < 16; j++) {
      const v = <i32>load<u8>(q + j);
      store<f32>(out + (<usize>(b * 32 + j) << 2), <f32>((v & 15) - 8) * d);
      store<f32>(out + (<usize>(b * 32 + j + 16) << 2), <f32>((v >> 4) - 8) * d);
    }
  }
}

/** [sum(a), sum(b), sum(c), sum(d)] of four i32x4. */
@inline function hsum4x4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(v128.shuffle<i32>(a, b, 0, 4, 1, 5), v128.shuffle<i32>(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(v128.shuffle<i32>(c, d, 0, 4, 1, 5), v128.shuffle<i32>(c, d, 2, 6, 3, 7));
  return i32x4.add(v128.shuffle<i32>(ab, cd, 0, 1, 4, 5), v128.shuffle<i32>(ab, cd, 2, 3, 6, 7));
}

/** Unpacked nibbles of one row's block: low (values 0..15) and high halves; the -8 is applied later (relaxed). */
@inline function nib_lo(v: v128): v128 {
  const q = v128.and(v, i8x16.splat(0x0f));
  return ASC_FEATURE_RELAXED_SIMD ? q : i8x16.sub(q, i8x16.splat(8));
}
@inline function nib_hi(v: v128): v128 {
  const q = v128.and(i8x16.shr_u(v, 4), i8x16.splat(0x0f));
  return ASC_FEATURE_RELAXED_SIMD ? q : i8x16.sub(q, i8x16.splat(8));
}
/** Integer partial sums (i32x4) of one row's unpacked block with one token's Q8_0 block. */
@inline function dot_nibs(lo: v128, hi: v128, x0: v128, x1: v128): v128 {
  // relaxed: pair sums in i16 lanes (|x| <= 127 and nibbles 0..15: each lane of the two added <= 2*2*127*15 = 7620,
  // no saturation), widened once (i32x4.dot_i16x8_s with ones: one pmaddwd, cheaper here than extadd_pairwise)
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.dot_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, lo), i16x8.relaxed_dot_i8x16_i7x16_s(x1, hi)), i16x8.splat(1));
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), i16x8.extend_low_i8x16_s(x0)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), i16x8.extend_high_i8x16_s(x0))),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), i16x8.extend_low_i8x16_s(x1)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), i16x8.extend_high_i8x16_s(x1))),
  );
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

/** One token's block (Q8_0 values at x, scale at xd, sum at xs) against 4 rows' unpacked block: acc fused (relaxed). */
@inline function q4_tok(l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128, dw: v128, x: usize, xd: usize, xs: usize, acc: v128): v128 {
  const x0 = v128.load(x), x1 = v128.load(x + 16);
  const isum = i32x4.sub(hsum4x4(dot_nibs(l0, h0, x0, x1), dot_nibs(l1, h1, x0, x1), dot_nibs(l2, h2, x0, x1), dot_nibs(l3, h3, x0, x1)),
    i32x4.splat(load<i32>(xs) << 3));
  return f32x4.relaxed_madd(f32x4.convert_i32x4_s(isum), f32x4.mul(dw, f32x4.splat(load<f32>(xd))), acc);
}

/** Tokens per tile in batched Q4_0 products: 16 tokens' Q8_0 activations (2048 columns: 34 KiB) stay in L2. */
const TOKEN_TILE = 16;

function q4_0_x4<Acc>(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, sums: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  const groupBytes = <usize>nb * 72;
  // tiles of TOKEN_TILE tokens (their activations stay in cache), in each: row groups outside, tokens inside (two at
  // a time, sharing the unpacked weights): a group's weights are read from memory once per tile
  for (let t0 = 0; t0 < ntok; t0 += TOKEN_TILE) {
  const t1 = min(ntok, t0 + TOKEN_TILE);
  for (let g = 0; g < rows; g += 4) {
    const p0 = w + <usize>(g >> 2) * groupBytes;
    let t = t0;
    // fused accumulators (one register a token): four tokens share each block's unpacked weights
    if (ASC_FEATURE_RELAXED_SIMD && sizeof<Acc>() == 4) {
      for (; t + 3 < t1; t += 4) {
        const xq = qs + <usize>(t * cols), xd = ds + (<usize>(t * nb) << 2), xs = sums + (<usize>(t * nb) << 2);
        const tq = <usize>cols, td = <usize>nb << 2;
        let p = p0;
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        for (let b = 0; b < nb; b++, p += 72) {
          const v0 = v128.load(p + 8), v1 = v128.load(p + 24), v2 = v128.load(p + 40), v3 = v128.load(p + 56);
          const l0 = nib_lo(v0), h0 = nib_hi(v0), l1 = nib_lo(v1), h1 = nib_hi(v1);
          const l2 = nib_lo(v2), h2 = nib_hi(v2), l3 = nib_lo(v3), h3 = nib_hi(v3);
          const dw = f16x4_to_f32x4(i32x4.extend_low_i16x8_u(v128.load64_zero(p)));
          const ob = <usize>b << 5, od = <usize>b << 2;
          a0 = q4_tok(l0, h0, l1, h1, l2, h2, l3, h3, dw, xq + ob, xd + od, xs + od, a0);
          a1 = q4_tok(l0, h0, l1, h1, l2, h2, l3, h3, dw, xq + tq + ob, xd + td + od, xs + td + od, a1);
          a2 = q4_tok(l0, h0, l1, h1, l2, h2, l3, h3, dw, xq + 2 * tq + ob, xd + 2 * td + od, xs + 2 * td + od, a2);
          a3 = q4_tok(l0, h0, l1, h1, l2, h2, l3, h3, dw, xq + 3 * tq + ob, xd + 3 * td + od, xs + 3 * td + od, a3);
        }
        v128.store(out + (<usize>(t * ostride + g) << 2), a0);
        v128.store(out + (<usize>((t + 1) * ostride + g) << 2), a1);
        v128.store(out + (<usize>((t + 2) * ostride + g) << 2), a2);
        v128.store(out + (<usize>((t + 3) * ostride + g) << 2), a3);
      }
    }
    for (; t + 1 < t1; t += 2) {
      const xqA = qs + <usize>(t * cols);
      const xqB = xqA + <usize>cols;
      const xdA = ds + (<usize>(t * nb) << 2);
      const xdB = xdA + (<usize>nb << 2);
      const xsA = sums + (<usize>(t * nb) << 2);
      const xsB = xsA + (<usize>nb << 2);
      let p = p0;
      let aLo = acc_zero<Acc>(), aHi = acc_zero<Acc>(), bLo = acc_zero<Acc>(), bHi = acc_zero<Acc>();
      for (let b = 0; b < nb; b++, p += 72) {
        const xa0 = v128.load(xqA + (<usize>b << 5)), xa1 = v128.load(xqA + (<usize>b << 5) + 16);
        const xb0 = v128.load(xqB + (<usize>b << 5)), xb1 = v128.load(xqB + (<usize>b << 5) + 16);
        const v0 = v128.load(p + 8), v1 = v128.load(p + 24), v2 = v128.load(p + 40), v3 = v128.load(p + 56);
        const l0 = nib_lo(v0), h0 = nib_hi(v0), l1 = nib_lo(v1), h1 = nib_hi(v1);
        const l2 = nib_lo(v2), h2 = nib_hi(v2), l3 = nib_lo(v3), h3 = nib_hi(v3);
        let sa = hsum4x4(dot_nibs(l0, h0, xa0, xa1), dot_nibs(l1, h1, xa0, xa1), dot_nibs(l2, h2, xa0, xa1), dot_nibs(l3, h3, xa0, xa1));
        let sb = hsum4x4(dot_nibs(l0, h0, xb0, xb1), dot_nibs(l1, h1, xb0, xb1), dot_nibs(l2, h2, xb0, xb1), dot_nibs(l3, h3, xb0, xb1));
        if (ASC_FEATURE_RELAXED_SIMD) {
          sa = i32x4.sub(sa, i32x4.splat(load<i32>(xsA + (<usize>b << 2)) << 3));
          sb = i32x4.sub(sb, i32x4.splat(load<i32>(xsB + (<usize>b << 2)) << 3));
        }
        const dw = f16x4_to_f32x4(i32x4.extend_low_i16x8_u(v128.load64_zero(p)));
        const da = f32x4.mul(dw, f32x4.splat(load<f32>(xdA + (<usize>b << 2))));
        const db = f32x4.mul(dw, f32x4.splat(load<f32>(xdB + (<usize>b << 2))));
        aLo = acc_lo<Acc>(sa, da, aLo);
        aHi = acc_hi<Acc>(sa, da, aHi);
        bLo = acc_lo<Acc>(sb, db, bLo);
        bHi = acc_hi<Acc>(sb, db, bHi);
      }
      v128.store(out + (<usize>(t * ostride + g) << 2), acc_f32<Acc>(aLo, aHi));
      v128.store(out + (<usize>((t + 1) * ostride + g) << 2), acc_f32<Acc>(bLo, bHi));
    }
    for (; t < t1; t++) {
      const xq = qs + <usize>(t * cols);
      const xd = ds + (<usize>(t * nb) << 2);
      const xs = sums + (<usize>(t * nb) << 2);
      let p = p0;
      let accLo = acc_zero<Acc>();
      let accHi = acc_zero<Acc>();
      for (let b = 0; b < nb; b++, p += 72) {
        const x0 = v128.load(xq + (<usize>b << 5));
        const x1 = v128.load(xq + (<usize>b << 5) + 16);
        const v0 = v128.load(p + 8), v1 = v128.load(p + 24), v2 = v128.load(p + 40), v3 = v128.load(p + 56);
        let isum = hsum4x4(dot_nibs(nib_lo(v0), nib_hi(v0), x0, x1), dot_nibs(nib_lo(v1), nib_hi(v1), x0, x1),
          dot_nibs(nib_lo(v2), nib_hi(v2), x0, x1), dot_nibs(nib_lo(v3), nib_hi(v3), x0, x1));
        if (ASC_FEATURE_RELAXED_SIMD) isum = i32x4.sub(isum, i32x4.splat(load<i32>(xs + (<usize>b << 2)) << 3));
        const d = f32x4.mul(f16x4_to_f32x4(i32x4.extend_low_i16x8_u(v128.load64_zero(p))), f32x4.splat(load<f32>(xd + (<usize>b << 2))));
        accLo = acc_lo<Acc>(isum, d, accLo);
        accHi = acc_hi<Acc>(isum, d, accHi);
      }
      v128.store(out + (<usize>(t * ostride + g) << 2), acc_f32<Acc>(accLo, accHi));
    }
  }
  }
}
