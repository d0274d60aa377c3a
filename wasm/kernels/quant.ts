// ---- quantized matrices x Q8_0 activations (from quantize_q8_0) ----
import { f16_to_f32, f16x4_load_to_f32x4, f16x4_to_f32x4, fma1, fma4_t, fusedMadd, hsum8, K_0F, K_ONES16, kc, lane_at, quads_i8 } from "./common";

/**
 * Q4_0 weights in the file's layout (18-byte blocks) x Q8_0 activations: vec_dot_q4_0_q8_0's order (8 lanes of 4
 * products each, then hsum8). llama.cpp uses it for Q4_0 matrices it does not repack (rows % 8 != 0); the others
 * go through the x4 layout below.
 */
export function matmul_q4_0(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) matmul_q4_0_t<f32>(w, rows, cols, qs, ds, ntok, out, ostride);
  else matmul_q4_0_t<f64>(w, rows, cols, qs, ds, ntok, out, ostride);
}

function matmul_q4_0_t<Acc>(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  const mask = kc(K_0F);
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
        lo = fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_i8(l, v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_i8(h, v128.load(xq + (<usize>b << 5) + 16))), hi);
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
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) matmul_q5_0_t<f32>(w, rows, cols, qs, ds, ntok, out, ostride);
  else matmul_q5_0_t<f64>(w, rows, cols, qs, ds, ntok, out, ostride);
}

function matmul_q5_0_t<Acc>(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  const mask = kc(K_0F);
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
        lo = fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_i8(l, v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_i8(h, v128.load(xq + (<usize>b << 5) + 16))), hi);
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
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) matmul_q_min_t<f32>(five, w, rows, cols, qs, ds, ss, ntok, out, ostride);
  else matmul_q_min_t<f64>(five, w, rows, cols, qs, ds, ss, ntok, out, ostride);
}

function matmul_q_min_t<Acc>(five: i32, w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ss: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  const bb: i32 = five ? 24 : 20;
  const mask = kc(K_0F);
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
        lo = fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_i8(l, v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_i8(h, v128.load(xq + (<usize>b << 5) + 16))), hi);
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
    return i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(xs, i8x16.abs(w)), kc(K_ONES16));
  }
  return quads_i8(w, x);
}

/**
 * Q8_0 weights (34-byte blocks): vec_dot_q8_0_q8_0 / tinyBLAS_Q0_AVX order (8 lanes of 4 products) for every row and
 * token alike. Rows outer: a row's blocks stay in L1 while the tokens pass over it. (Two tokens at a time, the
 * weights' signs and magnitudes made once for both, measured slower: 12.2 against 13.6 GMAC/s at 16 tokens.)
 */
export function matmul_q8_0(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) matmul_q8_0_t<f32>(w, rows, cols, qs, ds, ntok, out, ostride);
  else matmul_q8_0_t<f64>(w, rows, cols, qs, ds, ntok, out, ostride);
}

function matmul_q8_0_t<Acc>(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
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
        lo = fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_q8(v128.load(p + 2), v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_q8(v128.load(p + 18), v128.load(xq + (<usize>b << 5) + 16))), hi);
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), hsum8(lo, hi));
    }
  }
}

// ---- Q8_0 with each row's scales gathered ("rows" layout), repacked at load time ----
//   Per row (the same bytes as the file's nb 34-byte blocks, so the repacking is in place): the nb f16 scales,
//   then the nb x 32 quants. Four scales load and convert in one vector operation, and each block's 32 quants are
//   two aligned vectors. The sign trick's per-token half (|x| and x's sign, q8_sign_split) is made once per call
//   for all rows: per 16 values a row then needs w with x's sign (two operations), one pmaddubsw and one pmaddwd.

/**
 * Repack `rows` rows of Q8_0 at `w` in place (`tmp`: one row, cols/32*34 bytes), unless a quant is -128 (which
 * ggml's quantizer never writes; the rows kernel would give -128 * |x| for it where x < 0, and 255 - 127 in the
 * offset form): then nothing is changed and 0 returned, so the weight stays on matmul_q8_0. Returns 1 once
 * repacked, 2 if some scale is a subnormal f16 (matmul_q8_0_rows then converts scales the way that costs no
 * microcode assist for them). `offset`: store each quant as the unsigned byte q + 127 (0..254), for the
 * unsigned-dot form (dot_u8_probe).
 */
export function repack_q8_0_rows(w: usize, rows: i32, cols: i32, tmp: usize, offset: i32): i32 {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 34;
  const m128 = i8x16.splat(-128);
  for (let r = 0; r < rows; r++) {
    const row = w + <usize>r * rowBytes;
    for (let b = 0; b < nb; b++) {
      const p = row + <usize>b * 34 + 2;
      if (v128.any_true(v128.or(i8x16.eq(v128.load(p), m128), i8x16.eq(v128.load(p + 16), m128)))) return 0;
    }
  }
  let sub = 1;
  for (let r = 0; r < rows; r++) {
    const row = w + <usize>r * rowBytes;
    memory.copy(tmp, row, rowBytes);
    const q0 = row + (<usize>nb << 1);
    for (let b = 0; b < nb; b++) {
      const src = tmp + <usize>b * 34;
      const h = load<u16>(src);
      if ((h & 0x7c00) == 0 && (h & 0x3ff) != 0) sub = 2;
      store<u16>(row + (<usize>b << 1), h);
      const q = q0 + (<usize>b << 5);
      if (offset) {
        v128.store(q, i8x16.add(v128.load(src + 2), i8x16.splat(127)));
        v128.store(q + 16, i8x16.add(v128.load(src + 18), i8x16.splat(127)));
      } else memory.copy(q, src + 2, 32);
    }
  }
  return sub;
}

/**
 * Whether i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c) computes c + the four products of a (signed) by b read as
 * unsigned bytes, exactly, for b up to 255: what V8 13 emits where the CPU has AVX-VNNI (one `vpdpbusd`). Other
 * lowerings differ there (x64 without it: `pmaddubsw`, whose 16-bit pairs saturate; arm64: b signed), which the
 * relaxed-SIMD spec allows for b >= 128. The host passes the values (arguments, so no compiler folds them):
 * returns c + 4 * a * b as this engine computes it.
 */
export function dot_u8_probe(a: i32, b: i32, c: i32): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) return 0;
  return i32x4.extract_lane(i32x4.relaxed_dot_i8x16_i7x16_add_s(i8x16.splat(<i8>a), i8x16.splat(<i8>b), i32x4.splat(c)), 0);
}

/**
 * The offset form's activations (n tokens of Q8_0 quants at qs, cols each) with their corrections, interleaved at
 * out (2 x n x cols bytes): per group of 4 tokens (the last group may be smaller, s tokens), per block, per token
 * of the group: the block's 32 quants, then its correction: per 16 quants the four sums of four consecutive ones
 * times -127 (i32x4); and at dg the tokens' block scales (ds) grouped the same way (a full group's four of a
 * block in one vector). A row stored as q + 127 then gives dot(q + 127, x) + correction = dot(q, x) exactly. Token
 * t's block b is at q8_act(out, ntok, cols, t) + b * q8_act_stride(ntok, t): the products read one pointer per
 * token group, every other load at an immediate offset from it (V8 spent a fifth of the prompt kernel's
 * instructions on addresses when the quants and corrections were two arrays per token).
 */
export function q8_offset_interleave(qs: usize, ds: usize, ntok: i32, cols: i32, out: usize, dg: usize): void {
  const nb = cols >> 5;
  const ones = i8x16.splat(1), m = i32x4.splat(-127);
  for (let t = 0; t < ntok; t++) {
    const x = qs + <usize>(t * cols), dst = q8_act(out, ntok, cols, t), as = q8_act_stride(ntok, t);
    // the scales likewise: per group and block, its tokens' scales side by side (as >> 4 bytes)
    const dgt = dg + (<usize>((t & ~3) * nb) << 2) + (<usize>(t & 3) << 2);
    for (let b = 0; b < nb; b++) store<f32>(dgt + <usize>b * (as >> 4), load<f32>(ds + (<usize>(t * nb + b) << 2)));
    for (let b = 0; b < nb; b++) {
      const lo = v128.load(x + (<usize>b << 5)), hi = v128.load(x + (<usize>b << 5) + 16), p = dst + <usize>b * as;
      v128.store(p, lo);
      v128.store(p + 16, hi);
      v128.store(p + 32, i32x4.mul(quads_i8(lo, ones), m));
      v128.store(p + 48, i32x4.mul(quads_i8(hi, ones), m));
    }
  }
}

/** Token t's first block in q8_offset_interleave's layout at ax. */
@inline function q8_act(ax: usize, ntok: i32, cols: i32, t: i32): usize {
  return ax + (<usize>(t & ~3) * <usize>cols << 1) + (<usize>(t & 3) << 6);
}
/** The distance from one block of token t to its next in q8_offset_interleave's layout: 64 bytes per token of its group. */
@inline function q8_act_stride(ntok: i32, t: i32): usize {
  return <usize>min(4, ntok - (t & ~3)) << 6;
}

/** |x| at ax and x's sign (0 or -1 per byte) at ax + n, for n Q8_0 activation bytes at qs (n a multiple of 16). */
export function q8_sign_split(qs: usize, n: i32, ax: usize): void {
  const nx = ax + <usize>n;
  for (let i: usize = 0; i < <usize>n; i += 16) {
    const x = v128.load(qs + i);
    v128.store(ax + i, i8x16.abs(x));
    v128.store(nx + i, i8x16.lt_s(x, i8x16.splat(0)));
  }
}

/** Lane j of v (f32x4) in every lane. */
@inline function lane_f32(v: v128, j: i32): v128 {
  switch (j) {
    case 0: return v128.shuffle<f32>(v, v, 0, 0, 0, 0);
    case 1: return v128.shuffle<f32>(v, v, 1, 1, 1, 1);
    case 2: return v128.shuffle<f32>(v, v, 2, 2, 2, 2);
    default: return v128.shuffle<f32>(v, v, 3, 3, 3, 3);
  }
}

/**
 * quads_i8 of a weight vector w and activations x (|x| at a, x's sign at s): relaxed build, (w with x's sign) .
 * |x| paired in i16 by one pmaddubsw (<= 2 * 127 * 127: no saturation) and paired again by pmaddwd; the same
 * integers as quads_q8. Plain build: quads_i8 of w and x itself.
 */
@inline function quads_q8_split(w: v128, x: usize, a: usize, s: usize, ones: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const sgn = v128.load(s);
    const ws = i8x16.sub(v128.xor(w, sgn), sgn);
    return i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(ws, v128.load(a)), ones);
  }
  return quads_i8(w, v128.load(x));
}

/**
 * quads_i8 of weights w and activations x, by the form the row was stored in: Dot = i8, the sign trick (|x| at a,
 * x's sign at s); Dot = u8, w stored as q + 127 and one unsigned dot with cs (the correction at a): c + the
 * products, in one `vpdpbusd` (dot_u8_probe).
 */
@inline function quads_q8_form<Dot>(w: v128, x: usize, a: usize, s: usize, ones: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && !isSigned<Dot>()) return quads_u8(w, x, a);
  return quads_q8_split(w, x, a, s, ones);
}

/** The offset form's quads: weights w stored as q + 127, activations at x, their correction (q8_offset_interleave) at c. */
@inline function quads_u8(w: v128, x: usize, c: usize): v128 {
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(x), w, v128.load(c));
}

/** One block (quants at q, activations at offset o of x / ax / nx) into lo and hi: matmul_q8_0's step. */
@inline function q8_rows_block<Acc, Dot>(q: usize, x: usize, ax: usize, nx: usize, d: v128, lo: v128, hi: v128, high: bool, ones: v128): v128 {
  if (!high) return fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_q8_form<Dot>(v128.load(q), x, ax, nx, ones)), lo);
  return fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_q8_form<Dot>(v128.load(q + 16), x + 16, ax + 16, nx + 16, ones)), hi);
}

/**
 * Q8_0 weights in the rows layout (repack_q8_0_rows) x Q8_0 activations (qs, ds): matmul_q8_0's order and bits (8
 * lanes of 4 products, one fused multiply-add per block and lane, then hsum8). Rows outer, tokens inner.
 * `offset` 0: the quants as stored in the file, ax: q8_sign_split of qs (2 x ntok x cols bytes); 1: the quants
 * stored as q + 127, ax and dg: q8_offset_interleave of qs and ds (2 x ntok x cols bytes, ntok x cols / 8).
 */
export function matmul_q8_0_rows(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ax: usize, ntok: i32, out: usize, ostride: i32, subnormal: i32, offset: i32, dg: usize): void {
  const fused = ASC_FEATURE_RELAXED_SIMD && fusedMadd;
  if (offset) {
    if (fused && !subnormal) q8_0_rows<f32, u8, u8>(w, rows, cols, qs, ds, ax, ntok, out, ostride, dg);
    else if (fused) q8_0_rows<f32, u16, u8>(w, rows, cols, qs, ds, ax, ntok, out, ostride, dg);
    else if (!subnormal) q8_0_rows<f64, u8, u8>(w, rows, cols, qs, ds, ax, ntok, out, ostride, dg);
    else q8_0_rows<f64, u16, u8>(w, rows, cols, qs, ds, ax, ntok, out, ostride, dg);
  } else if (fused && !subnormal) q8_0_rows<f32, u8, i8>(w, rows, cols, qs, ds, ax, ntok, out, ostride, 0);
  else if (fused) q8_0_rows<f32, u16, i8>(w, rows, cols, qs, ds, ax, ntok, out, ostride, 0);
  else if (!subnormal) q8_0_rows<f64, u8, i8>(w, rows, cols, qs, ds, ax, ntok, out, ostride, 0);
  else q8_0_rows<f64, u16, i8>(w, rows, cols, qs, ds, ax, ntok, out, ostride, 0);
}

/** Four blocks' weight scales (f16 at p) as f32x4, by the conversion Conv names (see q8_0_rows). */
@inline function scales4<Conv>(p: usize): v128 {
  return sizeof<Conv>() == 1 ? f16x4_load_to_f32x4(p) : f16x4_to_f32x4(v128.load16x4_u(p));
}

/** acc + d * quads_q8_form of the weights at q (activations at x; a, s: quads_q8_form's): one half block. */
@inline function q8_half<Acc, Dot>(q: usize, x: usize, a: usize, s: usize, d: v128, acc: v128): v128 {
  return fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_q8_form<Dot>(v128.load(q), x, a, s, kc(K_ONES16))), acc);
}

/**
 * One token, either form (Dot: quads_q8_form), two rows at a time, r and r + rows / 2: two streams from memory, which one
 * core reads faster than one (a 65536 x 2048 product, one token, offset form: 15 -> 19 GMAC/s, 16 -> 20 GB/s,
 * where rows r and r + 1 gave nothing), and each activation vector loaded once for both rows. Each row's bits as
 * alone. Returns the rows done (an odd last row is left to the caller). q8_0_rows takes it for single tokens (prompt
 * batches of the offset form share weight loads across tokens instead: q8_0_u8_row).
 */
function q8_0_rows_pairs<Acc, Conv, Dot>(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ax: usize, out: usize): i32 {
  const nb = cols >> 5;
  const nb4 = nb & ~3;
  const rowBytes = <usize>(nb * 34);
  const half = rows >> 1;
  // the one token's activations: sign trick, x (qs), |x| (ax) and x's sign (after it), 32 bytes a block each;
  // offset form, x and its correction interleaved at ax (q8_offset_interleave), 64 bytes a block
  const sign = isSigned<Dot>();
  const as: usize = sign ? 32 : 64;
  const xq = sign ? qs : ax, xc = sign ? ax : ax + 32, xn = ax + <usize>cols, xd = ds;
  for (let r = 0; r < half; r++) {
    const s0 = w + <usize>r * rowBytes, s1 = s0 + <usize>half * rowBytes;
    const q0 = s0 + (<usize>nb << 1), q1 = s1 + (<usize>nb << 1);
    let l0 = f32x4.splat(0), h0 = f32x4.splat(0), l1 = f32x4.splat(0), h1 = f32x4.splat(0);
    let b = 0;
    for (; b < nb4; b += 4) {
      const dx = v128.load(xd + (<usize>b << 2));
      const e0 = f32x4.mul(scales4<Conv>(s0 + (<usize>b << 1)), dx), e1 = f32x4.mul(scales4<Conv>(s1 + (<usize>b << 1)), dx);
      for (let j = 0; j < 4; j++) {
        const d0 = lane_at(e0, j), d1 = lane_at(e1, j);
        const o = <usize>(b + j) << 5, oa = <usize>(b + j) * as;
        l0 = q8_half<Acc, Dot>(q0 + o, xq + oa, xc + oa, xn + oa, d0, l0);
        l1 = q8_half<Acc, Dot>(q1 + o, xq + oa, xc + oa, xn + oa, d1, l1);
        h0 = q8_half<Acc, Dot>(q0 + o + 16, xq + oa + 16, xc + oa + 16, xn + oa + 16, d0, h0);
        h1 = q8_half<Acc, Dot>(q1 + o + 16, xq + oa + 16, xc + oa + 16, xn + oa + 16, d1, h1);
      }
    }
    for (; b < nb; b++) {
      const dx = load<f32>(xd + (<usize>b << 2));
      const d0 = f32x4.splat(f16_to_f32(load<u16>(s0 + (<usize>b << 1))) * dx), d1 = f32x4.splat(f16_to_f32(load<u16>(s1 + (<usize>b << 1))) * dx);
      const o = <usize>b << 5, oa = <usize>b * as;
      l0 = q8_half<Acc, Dot>(q0 + o, xq + oa, xc + oa, xn + oa, d0, l0);
      l1 = q8_half<Acc, Dot>(q1 + o, xq + oa, xc + oa, xn + oa, d1, l1);
      h0 = q8_half<Acc, Dot>(q0 + o + 16, xq + oa + 16, xc + oa + 16, xn + oa + 16, d0, h0);
      h1 = q8_half<Acc, Dot>(q1 + o + 16, xq + oa + 16, xc + oa + 16, xn + oa + 16, d1, h1);
    }
    const po = out + (<usize>r << 2);
    store<f32>(po, hsum8(l0, h0));
    store<f32>(po + (<usize>half << 2), hsum8(l1, h1));
  }
  return half * 2;
}

/** q8_half of the offset form, the weight vector already loaded (shared by two tokens). */
@inline function u8_halfv<Acc>(w: v128, x: usize, c: usize, d: v128, acc: v128): v128 {
  return fma4_t<Acc>(d, f32x4.convert_i32x4_s(quads_u8(w, x, c)), acc);
}

/**
 * The offset form, one row (scales at sc, then the quants) and `n` (1, 2 or 4) tokens of a group of
 * q8_offset_interleave's layout: token t's block b at xg + b * as + 64 * (t - t0); the scales at dx: n = 4, the
 * group's grouped scales (16 bytes a block), else t0's in ds (t0 + 1's a row of blocks further). Each weight
 * vector and scale loaded once for the n tokens, each token's bits as alone; results at out + k * ostride * 4.
 * The four blocks of a step one at a time (a loop: the unrolled body made V8 spill the accumulators).
 */
@inline function q8_0_u8_row<Acc, Conv>(sc: usize, nb: i32, xg: usize, as: usize, dx: usize, n: i32, out: usize, ostride: i32): void {
  const nb4 = nb & ~3;
  const q = sc + (<usize>nb << 1);
  const td = <usize>nb << 2;
  let la = f32x4.splat(0), ha = f32x4.splat(0), lb = f32x4.splat(0), hb = f32x4.splat(0);
  let lc = f32x4.splat(0), hc = f32x4.splat(0), ld = f32x4.splat(0), hd = f32x4.splat(0);
  let b = 0;
  for (; b < nb4; b += 4) {
    const ws = scales4<Conv>(sc + (<usize>b << 1));
    for (let j = 0; j < 4; j++) {
      const dw = lane_at(ws, j);
      const o = <usize>(b + j) << 5, od = <usize>(b + j) << 2, p = xg + <usize>(b + j) * as;
      const wl = v128.load(q + o), wh = v128.load(q + o + 16);
      // four tokens: their four scales of the block in one vector (dx: q8_offset_interleave's grouped scales)
      const e = n == 4 ? f32x4.mul(dw, v128.load(dx + (od << 2))) : dw;
      let d = n == 4 ? lane_f32(e, 0) : f32x4.mul(dw, v128.load32_splat(dx + od));
      la = u8_halfv<Acc>(wl, p, p + 32, d, la); ha = u8_halfv<Acc>(wh, p + 16, p + 48, d, ha);
      if (n == 1) continue;
      d = n == 4 ? lane_f32(e, 1) : f32x4.mul(dw, v128.load32_splat(dx + td + od));
      lb = u8_halfv<Acc>(wl, p + 64, p + 96, d, lb); hb = u8_halfv<Acc>(wh, p + 80, p + 112, d, hb);
      if (n == 2) continue;
      d = lane_f32(e, 2);
      lc = u8_halfv<Acc>(wl, p + 128, p + 160, d, lc); hc = u8_halfv<Acc>(wh, p + 144, p + 176, d, hc);
      d = lane_f32(e, 3);
      ld = u8_halfv<Acc>(wl, p + 192, p + 224, d, ld); hd = u8_halfv<Acc>(wh, p + 208, p + 240, d, hd);
    }
  }
  for (; b < nb; b++) {
    const w = f16_to_f32(load<u16>(sc + (<usize>b << 1)));
    const o = <usize>b << 5, od = <usize>b << 2, p = xg + <usize>b * as;
    const wl = v128.load(q + o), wh = v128.load(q + o + 16);
    const dk = n == 4 ? od << 2 : od, dstep = n == 4 ? 4 : td; // the scales: grouped (four tokens) or ds's
    let d = f32x4.splat(w * load<f32>(dx + dk));
    la = u8_halfv<Acc>(wl, p, p + 32, d, la); ha = u8_halfv<Acc>(wh, p + 16, p + 48, d, ha);
    if (n == 1) continue;
    d = f32x4.splat(w * load<f32>(dx + dstep + dk));
    lb = u8_halfv<Acc>(wl, p + 64, p + 96, d, lb); hb = u8_halfv<Acc>(wh, p + 80, p + 112, d, hb);
    if (n == 2) continue;
    d = f32x4.splat(w * load<f32>(dx + 2 * dstep + dk));
    lc = u8_halfv<Acc>(wl, p + 128, p + 160, d, lc); hc = u8_halfv<Acc>(wh, p + 144, p + 176, d, hc);
    d = f32x4.splat(w * load<f32>(dx + 3 * dstep + dk));
    ld = u8_halfv<Acc>(wl, p + 192, p + 224, d, ld); hd = u8_halfv<Acc>(wh, p + 208, p + 240, d, hd);
  }
  const os = <usize>ostride << 2;
  store<f32>(out, hsum8(la, ha));
  if (n == 1) return;
  store<f32>(out + os, hsum8(lb, hb));
  if (n == 2) return;
  store<f32>(out + 2 * os, hsum8(lc, hc));
  store<f32>(out + 3 * os, hsum8(ld, hd));
}

/** q8_0_u8_row for 4, 2 and 1 tokens, each compiled with its count (and a full group's stride) as constants. */
function q8_0_u8_row4<Acc, Conv>(sc: usize, nb: i32, xg: usize, dx: usize, out: usize, ostride: i32): void {
  q8_0_u8_row<Acc, Conv>(sc, nb, xg, 256, dx, 4, out, ostride);
}
function q8_0_u8_row2<Acc, Conv>(sc: usize, nb: i32, xg: usize, as: usize, dx: usize, out: usize, ostride: i32): void {
  q8_0_u8_row<Acc, Conv>(sc, nb, xg, as, dx, 2, out, ostride);
}
function q8_0_u8_row1<Acc, Conv>(sc: usize, nb: i32, xg: usize, as: usize, dx: usize, out: usize, ostride: i32): void {
  q8_0_u8_row<Acc, Conv>(sc, nb, xg, as, dx, 1, out, ostride);
}

function q8_0_rows<Acc, Conv, Dot>(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ax: usize, ntok: i32, out: usize, ostride: i32, dg: usize): void {
  const nb = cols >> 5;
  const nx = ax + <usize>(ntok * cols);
  const nb4 = nb & ~3;
  const ones = kc(K_ONES16);
  let r = 0;
  if (ntok == 1) r = q8_0_rows_pairs<Acc, Conv, Dot>(w, rows, cols, qs, ds, ax, out);
  if (ASC_FEATURE_RELAXED_SIMD && !isSigned<Dot>()) {
    // the offset form: each row (the rest of them after the pairs, for one token) against the tokens in groups of
    // 4 of q8_offset_interleave's layout, a smaller last group as 2 + 1 or 1 tokens
    for (; r < rows; r++) {
      const sc = w + <usize>r * <usize>(nb * 34);
      for (let t = 0; t < ntok;) {
        const n = ntok - t >= 4 ? 4 : ntok - t >= 2 ? 2 : 1;
        const xg = q8_act(ax, ntok, cols, t), as = q8_act_stride(ntok, t), dx = ds + (<usize>(t * nb) << 2), o = out + (<usize>(t * ostride + r) << 2);
        if (n == 4) q8_0_u8_row4<Acc, Conv>(sc, nb, xg, dg + (<usize>(t * nb) << 2), o, ostride);
        else if (n == 2) q8_0_u8_row2<Acc, Conv>(sc, nb, xg, as, dx, o, ostride);
        else q8_0_u8_row1<Acc, Conv>(sc, nb, xg, as, dx, o, ostride);
        t += n;
      }
    }
    return;
  }
  for (; r < rows; r++) {
    const sc = w + <usize>r * <usize>(nb * 34);
    const q0 = sc + (<usize>nb << 1);
    for (let t = 0; t < ntok; t++) {
      const tx = <usize>(t * cols);
      const xq = qs + tx, xa = ax + tx, xn = nx + tx;
      const xd = ds + (<usize>(t * nb) << 2);
      let lo = f32x4.splat(0);
      let hi = f32x4.splat(0);
      let b = 0;
      for (; b < nb4; b += 4) {
        // four blocks' scales: Conv = u8, the three-operation conversion (the matrix has no subnormal scale); u16,
        // the one exact at every speed
        const dw = sizeof<Conv>() == 1 ? f16x4_load_to_f32x4(sc + (<usize>b << 1)) : f16x4_to_f32x4(v128.load16x4_u(sc + (<usize>b << 1)));
        const d4 = f32x4.mul(dw, v128.load(xd + (<usize>b << 2)));
        const o = <usize>b << 5;
        let d = lane_f32(d4, 0);
        lo = q8_rows_block<Acc, Dot>(q0 + o, xq + o, xa + o, xn + o, d, lo, hi, false, ones);
        hi = q8_rows_block<Acc, Dot>(q0 + o, xq + o, xa + o, xn + o, d, lo, hi, true, ones);
        d = lane_f32(d4, 1);
        lo = q8_rows_block<Acc, Dot>(q0 + o + 32, xq + o + 32, xa + o + 32, xn + o + 32, d, lo, hi, false, ones);
        hi = q8_rows_block<Acc, Dot>(q0 + o + 32, xq + o + 32, xa + o + 32, xn + o + 32, d, lo, hi, true, ones);
        d = lane_f32(d4, 2);
        lo = q8_rows_block<Acc, Dot>(q0 + o + 64, xq + o + 64, xa + o + 64, xn + o + 64, d, lo, hi, false, ones);
        hi = q8_rows_block<Acc, Dot>(q0 + o + 64, xq + o + 64, xa + o + 64, xn + o + 64, d, lo, hi, true, ones);
        d = lane_f32(d4, 3);
        lo = q8_rows_block<Acc, Dot>(q0 + o + 96, xq + o + 96, xa + o + 96, xn + o + 96, d, lo, hi, false, ones);
        hi = q8_rows_block<Acc, Dot>(q0 + o + 96, xq + o + 96, xa + o + 96, xn + o + 96, d, lo, hi, true, ones);
      }
      for (; b < nb; b++) {
        const d = f32x4.splat(f16_to_f32(load<u16>(sc + (<usize>b << 1))) * load<f32>(xd + (<usize>b << 2)));
        const o = <usize>b << 5;
        lo = q8_rows_block<Acc, Dot>(q0 + o, xq + o, xa + o, xn + o, d, lo, hi, false, ones);
        hi = q8_rows_block<Acc, Dot>(q0 + o, xq + o, xa + o, xn + o, d, lo, hi, true, ones);
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), hsum8(lo, hi));
    }
  }
}
