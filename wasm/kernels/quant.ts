// ---- quantized matrices x Q8_0 activations (from quantize_q8_0) ----
import { f16_to_f32, fma1, fma4, hsum8, quads_i8 } from "./common";

/**
 * Q4_0 weights in the file's layout (18-byte blocks) x Q8_0 activations: vec_dot_q4_0_q8_0's order (8 lanes of 4
 * products each, then hsum8). llama.cpp uses it for Q4_0 matrices it does not repack (rows % 8 != 0); the others
 * go through the x4 layout below.
 */
export function matmul_q4_0(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  const mask = i8x16.splat(0x0f);
  const eight = i8x16.splat(8);
  for (let t = 0; t < ntok; t++) {
    const xq = qs + <usize>(t * cols);
    const xd = ds + (<usize>(t * nb) << 2);
    for (let r = 0; r < rows; r++) {
      let p = w + <usize>r * <usize>(nb * 18);
      let lo = f32x4.splat(0);
      let hi = f32x4.splat(0);
      for (let b = 0; b < nb; b++, p += 18) {
        const d = f32x4.splat(f16_to_f32(load<u16>(p)) * load<f32>(xd + (<usize>b << 2)));
        const v = v128.load(p + 2);
        const l = i8x16.sub(v128.and(v, mask), eight);
        const h = i8x16.sub(v128.and(i8x16.shr_u(v, 4), mask), eight);
        lo = fma4(d, f32x4.convert_i32x4_s(quads_i8(l, v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4(d, f32x4.convert_i32x4_s(quads_i8(h, v128.load(xq + (<usize>b << 5) + 16))), hi);
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), hsum8(lo, hi));
    }
  }
}

/** The 5th bits of a Q5 block (qh) as 0x10 in each byte: values 0..15 (low) and 16..31 (high). */
// @ts-ignore: decorator
@inline function q5_high(qh: u32, second: bool): v128 {
  const sel = second ? i8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3) : i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const bits = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const set = i8x16.eq(v128.and(i8x16.swizzle(i32x4.splat(<i32>qh), sel), bits), bits);
  return v128.and(set, i8x16.splat(0x10));
}

/**
 * Q5_0 weights (22-byte blocks: d, qh, nibbles) x Q8_0 activations: vec_dot_q5_0_q8_0 / tinyBLAS_Q0_AVX, the order
 * of Q4_0 with values (nibble | 5th bit << 4) - 16.
 */
export function matmul_q5_0(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  const mask = i8x16.splat(0x0f);
  const sixteen = i8x16.splat(16);
  for (let t = 0; t < ntok; t++) {
    const xq = qs + <usize>(t * cols);
    const xd = ds + (<usize>(t * nb) << 2);
    for (let r = 0; r < rows; r++) {
      let p = w + <usize>r * <usize>(nb * 22);
      let lo = f32x4.splat(0);
      let hi = f32x4.splat(0);
      for (let b = 0; b < nb; b++, p += 22) {
        const d = f32x4.splat(f16_to_f32(load<u16>(p)) * load<f32>(xd + (<usize>b << 2)));
        const qh = load<u32>(p + 2);
        const v = v128.load(p + 6);
        const l = i8x16.sub(v128.or(v128.and(v, mask), q5_high(qh, false)), sixteen);
        const h = i8x16.sub(v128.or(v128.and(i8x16.shr_u(v, 4), mask), q5_high(qh, true)), sixteen);
        lo = fma4(d, f32x4.convert_i32x4_s(quads_i8(l, v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4(d, f32x4.convert_i32x4_s(quads_i8(h, v128.load(xq + (<usize>b << 5) + 16))), hi);
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), hsum8(lo, hi));
    }
  }
}

/**
 * Q4_1 (five = 0: 20-byte blocks d, m, nibbles) or Q5_1 (five = 1: 24-byte blocks d, m, qh, nibbles) weights x
 * Q8_1 activations (qs, ds, and ss = d * sum(q)): vec_dot_q4_1_q8_1 / q5_1_q8_1, 8 lanes of 4 products of the
 * unsigned values, and m * s summed beside them (a fused multiply-add, as GCC contracts `summs += m * s`).
 */
export function matmul_q_min(five: i32, w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ss: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  const bb: i32 = five ? 24 : 20;
  const mask = i8x16.splat(0x0f);
  for (let t = 0; t < ntok; t++) {
    const xq = qs + <usize>(t * cols);
    const xd = ds + (<usize>(t * nb) << 2);
    const xs = ss + (<usize>(t * nb) << 2);
    for (let r = 0; r < rows; r++) {
      let p = w + <usize>r * <usize>(nb * bb);
      let lo = f32x4.splat(0);
      let hi = f32x4.splat(0);
      let summs: f32 = 0;
      for (let b = 0; b < nb; b++, p += bb) {
        const d = f32x4.splat(f16_to_f32(load<u16>(p)) * load<f32>(xd + (<usize>b << 2)));
        summs = fma1(f16_to_f32(load<u16>(p + 2)), load<f32>(xs + (<usize>b << 2)), summs);
        const v = v128.load(p + (five ? 8 : 4));
        let l = v128.and(v, mask);
        let h = v128.and(i8x16.shr_u(v, 4), mask);
        if (five) {
          const qh = load<u32>(p + 4);
          l = v128.or(l, q5_high(qh, false));
          h = v128.or(h, q5_high(qh, true));
        }
        lo = fma4(d, f32x4.convert_i32x4_s(quads_i8(l, v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4(d, f32x4.convert_i32x4_s(quads_i8(h, v128.load(xq + (<usize>b << 5) + 16))), hi);
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), hsum8(lo, hi) + summs);
    }
  }
}

/**
 * quads_i8 of two Q8_0 vectors (both in -127..127, as quantize_q8_0 and ggml's Q8_0 write them). Relaxed build:
 * the AVX2 kernels' sign trick, |w| . (x with w's sign) paired in i16 (<= 2 * 127 * 127, no saturation) by one
 * pmaddubsw and paired again by pmaddwd with ones: the same integers in fewer instructions. A weight of -128 (which
 * ggml's quantizer never writes) leaves |w| outside relaxed_dot's 7-bit range: x64 (pmaddubsw, unsigned) still
 * gives 128 * x, as llama.cpp's AVX2 kernel does; engines that lower relaxed_dot to a signed dot may not.
 */
@inline function quads_q8(w: v128, x: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const neg = i8x16.lt_s(w, i8x16.splat(0));
    const xs = i8x16.sub(v128.xor(x, neg), neg);
    return i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(xs, i8x16.abs(w)), i16x8.splat(1));
  }
  return quads_i8(w, x);
}

/**
 * Q8_0 weights (34-byte blocks): vec_dot_q8_0_q8_0 / tinyBLAS_Q0_AVX order (8 lanes of 4 products) for every row and
 * token alike. Rows outer: a row's blocks stay in L1 while the tokens pass over it. (Two tokens at a time, the
 * weights' signs and magnitudes made once for both, measured slower: 12.2 against 13.6 GMAC/s at 16 tokens.)
 */
export function matmul_q8_0(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  for (let r = 0; r < rows; r++) {
    const row = w + <usize>r * <usize>(nb * 34);
    for (let t = 0; t < ntok; t++) {
      const xq = qs + <usize>(t * cols);
      const xd = ds + (<usize>(t * nb) << 2);
      let lo = f32x4.splat(0);
      let hi = f32x4.splat(0);
      let p = row;
      for (let b = 0; b < nb; b++, p += 34) {
        const d = f32x4.splat(f16_to_f32(load<u16>(p)) * load<f32>(xd + (<usize>b << 2)));
        lo = fma4(d, f32x4.convert_i32x4_s(quads_q8(v128.load(p + 2), v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4(d, f32x4.convert_i32x4_s(quads_q8(v128.load(p + 18), v128.load(xq + (<usize>b << 5) + 16))), hi);
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), hsum8(lo, hi));
    }
  }
}
