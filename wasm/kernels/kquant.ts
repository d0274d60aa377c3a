// ---- K-quant matrices (Q4_K, Q5_K, Q6_K: 256-value super-blocks) x Q8_K activations ----
import { f16_to_f32, f16x4_to_f32x4, fma1, fma4_t, fusedMadd, hsum8, hsum_i32, K_01, K_03, K_0C, K_0F, K_30, K_3F, K_MINS16, K_SCALE16, K_SCALE32, kc, quads_i8, x4_add, x4_dot, x4_dotv } from "./common";

/**
 * The 8 six-bit scales (byte k = sub-block k) of a Q4_K/Q5_K block whose 12 packed scale bytes are at q: the
 * kmask shuffle of the AVX2 kernels (get_scale_min_k4 for all eight at once).
 */
@inline function k4_scales(q: usize): i64 {
  const u0 = load<u32>(q), u2 = load<u32>(q + 8);
  return <i64>(u0 & 0x3f3f3f3f) | (<i64>((u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4)) << 32);
}

/**
 * One token's Q8_K sums in pairs, as the mins products take them: i16 lane j = bsums[2j] + bsums[2j+1] (16 i32
 * sums at bs; each pair fits i16). The same for every row, so the four-row kernels make it once per block.
 */
@inline function q8k_pair_sums(bs: usize): v128 {
  const b0 = v128.load(bs), b1 = v128.load(bs + 16), b2 = v128.load(bs + 32), b3 = v128.load(bs + 48);
  return i16x8.narrow_i32x4_s(
    i32x4.add(v128.shuffle<i32>(b0, b1, 0, 2, 4, 6), v128.shuffle<i32>(b0, b1, 1, 3, 5, 7)),
    i32x4.add(v128.shuffle<i32>(b2, b3, 0, 2, 4, 6), v128.shuffle<i32>(b2, b3, 1, 3, 5, 7)));
}

/**
 * The block's mins times its activations' sums, as the AVX2 kernels pair them: lane k (i32) = min[2k] * q8s[2k] +
 * min[2k+1] * q8s[2k+1] (q8s from q8k_pair_sums; the 12 packed scale bytes at q).
 */
@inline function k4_mins_dot(q: usize, q8s: v128): v128 {
  const u1 = load<u32>(q + 4), u2 = load<u32>(q + 8);
  const mins = <i64>(u1 & 0x3f3f3f3f) | (<i64>(((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4)) << 32);
  return i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(i64x2.splat(mins)), q8s);
}

/** k4_mins_dot with the token's sums at bs (16 i32). */
@inline function k4_min_products(q: usize, bs: usize): v128 {
  return k4_mins_dot(q, q8k_pair_sums(bs));
}

/**
 * sum_s scale[s] * (q . x over sub-block s) for sub-blocks s0..s0+count-1 of one row's Q4_K block at p (scales from
 * k4_scales) with one token's Q8_K values at x: exact, in i32.
 */
@inline function q4k_sumi(p: usize, x: usize, scales: i64, s0: i32, count: i32): i32 {
  let acc = i32x4.splat(0);
  for (let s = s0; s < s0 + count; s++) {
    const sc = <i32>(scales >> (<i64>s << 3)) & 0xff;
    for (let l0 = 0; l0 < 32; l0 += 16) {
      const b = v128.load(p + 16 + (<usize>(s >> 1) << 5) + l0);
      acc = i32x4.add(acc, k_quads(s & 1 ? i8x16.shr_u(b, 4) : v128.and(b, kc(K_0F)), v128.load(x + (<usize>s << 5) + l0), sc));
    }
  }
  return hsum_i32(acc);
}

/** Tokens per tile in x4 products: 16 tokens' Q8_K activations (2048 columns: 41 KiB) stay in L2. */
const X4_TOKEN_TILE = 16;

/**
 * K-quant weights (kind 0 Q4_K, 1 Q5_K, 2 Q6_K; rows of cols/256 blocks) x Q8_K activations (per token: qs cols
 * i8, ds cols/256 f32, bsums cols/16 i32), in llama.cpp's orders as quant-k.ts dotKRow (kOrder): `repacked` (Q4_K,
 * rows % 8 == 0; 1: a batch, 2: single-token rows) gemm's or gemv's, otherwise vec_dot_q{4,5,6}_K_q8_K's.
 */
export function matmul_k(kind: i32, repacked: i32, w: usize, rows: i32, cols: i32, qs: usize, ds: usize, bsums: usize, ntok: i32, out: usize, ostride: i32, xi: usize): void {
  const u = ASC_FEATURE_RELAXED_SIMD && (repacked & 8) != 0;
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) {
    if (u) matmul_k_t<f32, i32>(kind, repacked, w, rows, cols, qs, ds, bsums, ntok, out, ostride, xi);
    else matmul_k_t<f32, i16>(kind, repacked, w, rows, cols, qs, ds, bsums, ntok, out, ostride, xi);
  } else if (u) matmul_k_t<f64, i32>(kind, repacked, w, rows, cols, qs, ds, bsums, ntok, out, ostride, xi);
  else matmul_k_t<f64, i16>(kind, repacked, w, rows, cols, qs, ds, bsums, ntok, out, ostride, xi);
}

/**
 * matmul_k with its multiply-add path (Acc: see fma4_t) and its integer dot product (Dot: see x4_acc) chosen once.
 * xi: the x4 prompt kernel's activations (activations.ts q8k_interleave4 of qs), where it runs.
 */
function matmul_k_t<Acc, Dot>(kind: i32, repacked: i32, w: usize, rows: i32, cols: i32, qs: usize, ds: usize, bsums: usize, ntok: i32, out: usize, ostride: i32, xi: usize): void {
  const nb = cols >> 8;
  const bb: usize = kind == 0 ? 144 : kind == 1 ? 176 : 210;
  // repacked & 3 == 1: whole groups of 4 tokens take gemm's order, the rest gemv's; 2: every token gemv's (single-token
  // rows). repacked & 4: the weights are in the x4 layout (repack_q4_k_x4), rows a multiple of 4. repacked & 8: the
  // x4 one-token products by the dot-add (Dot = i32, chosen in matmul_k; see x4_acc).
  const x4 = (repacked & 4) != 0;
  repacked &= 3;
  if (x4 && (rows & 3) != 0) unreachable();
  const gemmTokens = repacked == 1 ? ntok - (ntok & 3) : 0;
  const rowBytes = <usize>nb * bb;
  let r0 = 0;
  if (x4 && ntok == 1) {
    // one token: groups g and g + half together (q4k_x4_gemv_2g), an odd last group alone
    const groups = rows >> 2, half = groups >> 1;
    for (let g = 0; g < half; g++) {
      const ga = g << 2, gb = (g + half) << 2;
      q4k_x4_gemv_2g<Acc, Dot>(w + <usize>ga * rowBytes, w + <usize>gb * rowBytes, nb, qs, ds, bsums, 0, out + (<usize>ga << 2), out + (<usize>gb << 2));
    }
    if (groups & 1) v128.store(out + (<usize>(rows - 4) << 2), q4k_x4_gemv<Acc, Dot>(w + <usize>(rows - 4) * rowBytes, nb, qs, ds, bsums, 0));
    return;
  }
  if (x4) {
    // tiles of X4_TOKEN_TILE tokens (their activations stay in cache), in each the row groups, and in a group the
    // tokens four at a time (gemm's order) or two and one at a time (gemv's)
    for (let t0 = 0; t0 < ntok; t0 += X4_TOKEN_TILE) {
      const t1 = min(ntok, t0 + X4_TOKEN_TILE);
      for (let g = 0; g < rows; g += 4) {
        const p0 = w + <usize>g * rowBytes;
        let t = t0;
        for (; t + 4 <= min(t1, gemmTokens); t += 4) q4k_x4_gemm4<Acc>(p0, nb, xi + (<usize>(t * nb) << 8), ds, bsums, t, out + (<usize>(t * ostride + g) << 2), ostride);
        for (; t + 1 < t1; t += 2) q4k_x4_gemv2<Acc, Dot>(p0, nb, qs, ds, bsums, t, out + (<usize>(t * ostride + g) << 2), ostride);
        if (t < t1) v128.store(out + (<usize>(t * ostride + g) << 2), q4k_x4_gemv<Acc, Dot>(p0, nb, qs, ds, bsums, t));
      }
    }
    r0 = rows;
  }
  if (kind == 2 && ntok == 1 && !repacked) {
    // one token: rows r and r + half together (q6k_rows2), an odd last row below
    const half = (rows - r0) >> 1;
    for (let r = r0; r < r0 + half; r++) {
      q6k_rows2<Acc>(w + <usize>r * rowBytes, w + <usize>(r + half) * rowBytes, nb, qs, ds, bsums, 0, out + (<usize>r << 2), out + (<usize>(r + half) << 2));
    }
    r0 += half * 2;
  }
  for (let r = r0; r < rows; r++) {
    const row = w + <usize>r * rowBytes;
    let pairs = 0;
    // Q6_K: tokens four, then two at a time, sharing the unpacked weights (each token's bits as alone; tiling the
    // tokens for the cache made no difference at 128 tokens x 16384 columns)
    if (kind == 2) {
      for (; pairs + 3 < ntok; pairs += 4) q6k_row_tokens<Acc, i32>(row, nb, qs, ds, bsums, pairs, out + (<usize>(pairs * ostride + r) << 2), ostride);
      for (; pairs + 1 < ntok; pairs += 2) q6k_row_tokens<Acc, i16>(row, nb, qs, ds, bsums, pairs, out + (<usize>(pairs * ostride + r) << 2), ostride);
    }
    for (let t = pairs; t < ntok; t++) {
      // k_row_vec_dot inlined once per kind, so that its branches on the kind fold away
      const v = repacked ? q4k_row_repacked(row, nb, qs, ds, bsums, t, t < gemmTokens ? 2 : 8)
        : kind == 2 ? k_row_vec_dot<Acc>(2, row, nb, 210, qs, ds, bsums, t)
        : kind == 1 ? k_row_vec_dot<Acc>(1, row, nb, 176, qs, ds, bsums, t)
        : k_row_vec_dot<Acc>(0, row, nb, 144, qs, ds, bsums, t);
      store<f32>(out + (<usize>(t * ostride + r) << 2), v);
    }
  }
}

// ---- Q4_K in groups of 4 rows, interleaved ("x4") ----
//   Per group of 4 rows, per block b, 576 bytes (the four original 144-byte blocks, so the repacking is in place):
//     0: d of rows 0..3 (f16)   8: dmin of rows 0..3 (f16)
//     16, 32, 48: scale bytes 0-3, 4-7 and 8-11 of rows 0..3 (u32 lane r: row r's), so one vector op unpacks a
//        scale word of all four rows (k4_scales for four rows at once)
//     64: quants: for pair k (0..3) and j (0..7), 16 bytes: row r's qs[32k + 4j .. 32k + 4j + 3] at 4r. The low
//        nibbles are positions 4j..4j+3 of sub-block 2k of the four rows, the high nibbles those of sub-block 2k+1.
//   A product multiplies such a vector by one token's four activations broadcast to the four i32 lanes, so lane r
//   is row r's sum from the start: no horizontal sums, and each unpacked weight vector serves several tokens.

/**
 * Q4_K rows in groups of 4 rows into the x4 layout above, in place (`rows` a multiple of 4, `tmp` 4 rows' bytes).
 */
export function repack_q4_k_x4(w: usize, rows: i32, cols: i32, tmp: usize): void {
  const nb = <usize>(cols >> 8);
  const rowBytes = nb * 144;
  for (let g = 0; g < rows; g += 4) {
    const base = w + <usize>g * rowBytes;
    memory.copy(tmp, base, rowBytes << 2);
    for (let b: usize = 0; b < nb; b++) {
      const dst = base + b * 576;
      for (let r: usize = 0; r < 4; r++) {
        const src = tmp + r * rowBytes + b * 144;
        store<u16>(dst + (r << 1), load<u16>(src));
        store<u16>(dst + 8 + (r << 1), load<u16>(src + 2));
        for (let u: usize = 0; u < 3; u++) store<u32>(dst + 16 + (u << 4) + (r << 2), load<u32>(src + 4 + (u << 2)));
        for (let c: usize = 0; c < 32; c++) store<u32>(dst + 64 + (c << 4) + (r << 2), load<u32>(src + 16 + (c << 2)));
      }
    }
  }
}

/** 16 bytes selected from v by the constant indices idx; an index of 0x80 or more gives 0 (both builds). */
@inline function pick(v: v128, idx: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? i8x16.relaxed_swizzle(v, idx) : i8x16.swizzle(v, idx);
}

/**
 * An x4 block's six-bit scales or mins (`mins`) of sub-blocks 0-3 (x4_six_bits) or 4-7 (x4_six_bits_high), four
 * rows at once: byte 4r + s is row r's sub-block s (get_scale_min_k4).
 */
@inline function x4_six_bits(p: usize, mins: bool): v128 {
  return v128.and(v128.load(p + (mins ? 32 : 16)), kc(K_3F));
}
@inline function x4_six_bits_high(p: usize, mins: bool): v128 {
  const m4 = kc(K_0F), m2 = kc(K_03);
  const lo = v128.load(p + (mins ? 32 : 16)), u2 = v128.load(p + 48);
  return v128.or(v128.and(mins ? i32x4.shr_u(u2, 4) : u2, m4), i32x4.shl(v128.and(i32x4.shr_u(lo, 6), m2), 4));
}

/**
 * The scale of sub-block s (0..3 of sc, from x4_six_bits) for pmaddwd: i16 lanes 2r and 2r+1 hold row r's.
 */
@inline function x4_scale16(sc: v128, s: i32): v128 {
  return pick(sc, kc(K_SCALE16 + (s << 4)));
}

/** The mins of sub-blocks 2k', 2k'+1 (k' 0..1 of mn) for pmaddwd: i16 lanes 2r, 2r+1 hold row r's. */
@inline function x4_mins16(mn: v128, k: i32): v128 {
  return pick(mn, kc(K_MINS16 + (k << 4)));
}

/** f16 values at p..p+7 of the four rows as f32x4. */
@inline function x4_f16(p: usize): v128 {
  return f16x4_to_f32x4(i32x4.extend_low_i16x8_u(v128.load64_zero(p)));
}

/** A sub-block's x4_dot sums times its scale (x4_scale16), i32 lane r: row r's, exact. */
@inline function x4_scaled(a: v128, sc16: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? i32x4.dot_i16x8_s(a, sc16) : i32x4.mul(a, i32x4.shr_u(sc16, 16));
}

/**
 * The block's mins times token t's activation sums for pair k: i32 lane r = min(r, 2k) * q8s[2k] +
 * min(r, 2k+1) * q8s[2k+1] (q8s from q8k_pair_sums; mn from x4_six_bits with mins).
 */
@inline function x4_mins_pair(mn: v128, q8s: v128, k: i32): v128 {
  return i32x4.dot_i16x8_s(x4_mins16(mn, k & 1), lane32(q8s, k));
}

/** The block's mins times one token's activation sums, all four pairs (gemv's summ; exact, i32 lane r: row r's). */
@inline function x4_mins_block(mlo: v128, mhi: v128, q8s: v128): v128 {
  return i32x4.add(i32x4.add(x4_mins_pair(mlo, q8s, 0), x4_mins_pair(mlo, q8s, 1)), i32x4.add(x4_mins_pair(mhi, q8s, 2), x4_mins_pair(mhi, q8s, 3)));
}

/** accm = fma(f32(mins of pair k), dmin*d8, accm) for k = 0..3 in turn (gemm's order), one token. */
@inline function x4_mins_step<Acc>(mlo: v128, mhi: v128, q8s: v128, dmin: v128, accm: v128): v128 {
  accm = fma4_t<Acc>(f32x4.convert_i32x4_s(x4_mins_pair(mlo, q8s, 0)), dmin, accm);
  accm = fma4_t<Acc>(f32x4.convert_i32x4_s(x4_mins_pair(mlo, q8s, 1)), dmin, accm);
  accm = fma4_t<Acc>(f32x4.convert_i32x4_s(x4_mins_pair(mhi, q8s, 2)), dmin, accm);
  return fma4_t<Acc>(f32x4.convert_i32x4_s(x4_mins_pair(mhi, q8s, 3)), dmin, accm);
}

/**
 * gemm_q4_K_8x8_q8_K for one x4 group (blocks at p0, 576 bytes apart) and four tokens t..t+3, row r in lane r: per
 * block and sub-block pair k, acc = fma(f32(sumi of the pair), d*d8, acc) and accm = fma(f32(mins of the pair),
 * dmin*d8, accm), as q4k_row_repacked (per 2) does for one row; acc - accm into out (token u's four rows at
 * out + u * ostride * 4). Each unpacked weight vector serves the four tokens.
 */
function q4k_x4_gemm4<Acc>(p0: usize, nb: i32, xg: usize, ds: usize, bsums: usize, t: i32, out: usize, ostride: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  let m0 = f32x4.splat(0), m1 = f32x4.splat(0), m2 = f32x4.splat(0), m3 = f32x4.splat(0);
  const tb = <usize>nb << 6, td = <usize>nb << 2;
  for (let b = 0; b < nb; b++) {
    const p = p0 + <usize>b * 576;
    const i = t * nb + b;
    // the group's four tokens' quants of block b, 256 bytes apart (q8k_interleave4)
    const x = xg + (<usize>b << 10), bs = bsums + (<usize>i << 6), dp = ds + (<usize>i << 2);
    const e0 = load<f32>(dp), e1 = load<f32>(dp + td), e2 = load<f32>(dp + 2 * td), e3 = load<f32>(dp + 3 * td);
    // the mins chain first (independent of acc's)
    {
      const dmin = x4_f16(p + 8), mlo = x4_six_bits(p, true), mhi = x4_six_bits_high(p, true);
      const q0 = q8k_pair_sums(bs), q1 = q8k_pair_sums(bs + tb), q2 = q8k_pair_sums(bs + 2 * tb), q3 = q8k_pair_sums(bs + 3 * tb);
      const n0 = f32x4.mul(dmin, f32x4.splat(e0)), n1 = f32x4.mul(dmin, f32x4.splat(e1)), n2 = f32x4.mul(dmin, f32x4.splat(e2)), n3 = f32x4.mul(dmin, f32x4.splat(e3));
      m0 = x4_mins_step<Acc>(mlo, mhi, q0, n0, m0);
      m1 = x4_mins_step<Acc>(mlo, mhi, q1, n1, m1);
      m2 = x4_mins_step<Acc>(mlo, mhi, q2, n2, m2);
      m3 = x4_mins_step<Acc>(mlo, mhi, q3, n3, m3);
    }
    const d = x4_f16(p), slo = x4_six_bits(p, false), shi = x4_six_bits_high(p, false);
    const de0 = f32x4.mul(d, f32x4.splat(e0)), de1 = f32x4.mul(d, f32x4.splat(e1)), de2 = f32x4.mul(d, f32x4.splat(e2)), de3 = f32x4.mul(d, f32x4.splat(e3));
    for (let k = 0; k < 4; k++) {
      const sc = k < 2 ? slo : shi;
      // each weight vector loaded and unpacked once for both sub-blocks of the pair (low nibbles: 2k, a*; high:
      // 2k+1, b*) and the four tokens
      let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
      let b0 = i32x4.splat(0), b1 = i32x4.splat(0), b2 = i32x4.splat(0), b3 = i32x4.splat(0);
      let q = p + 64 + (<usize>k << 7), o = x + (<usize>k << 6);
      for (const qEnd = q + 128; q < qEnd; q += 16, o += 4) {
        const v = v128.load(q);
        const lo = v128.and(v, kc(K_0F)), hi = v128.and(i16x8.shr_u(v, 4), kc(K_0F));
        a0 = x4_add(a0, x4_dotv(lo, v128.load32_splat(o))); b0 = x4_add(b0, x4_dotv(hi, v128.load32_splat(o, 32)));
        a1 = x4_add(a1, x4_dotv(lo, v128.load32_splat(o, 256))); b1 = x4_add(b1, x4_dotv(hi, v128.load32_splat(o, 288)));
        a2 = x4_add(a2, x4_dotv(lo, v128.load32_splat(o, 512))); b2 = x4_add(b2, x4_dotv(hi, v128.load32_splat(o, 544)));
        a3 = x4_add(a3, x4_dotv(lo, v128.load32_splat(o, 768))); b3 = x4_add(b3, x4_dotv(hi, v128.load32_splat(o, 800)));
      }
      const sLo = x4_scale16(sc, (2 * k) & 3), sHi = x4_scale16(sc, ((2 * k) & 3) + 1);
      const s0 = i32x4.add(x4_scaled(a0, sLo), x4_scaled(b0, sHi));
      const s1 = i32x4.add(x4_scaled(a1, sLo), x4_scaled(b1, sHi));
      const s2 = i32x4.add(x4_scaled(a2, sLo), x4_scaled(b2, sHi));
      const s3 = i32x4.add(x4_scaled(a3, sLo), x4_scaled(b3, sHi));
      c0 = fma4_t<Acc>(f32x4.convert_i32x4_s(s0), de0, c0);
      c1 = fma4_t<Acc>(f32x4.convert_i32x4_s(s1), de1, c1);
      c2 = fma4_t<Acc>(f32x4.convert_i32x4_s(s2), de2, c2);
      c3 = fma4_t<Acc>(f32x4.convert_i32x4_s(s3), de3, c3);
    }
  }
  const os = <usize>ostride << 2;
  v128.store(out, f32x4.sub(c0, m0));
  v128.store(out + os, f32x4.sub(c1, m1));
  v128.store(out + 2 * os, f32x4.sub(c2, m2));
  v128.store(out + 3 * os, f32x4.sub(c3, m3));
}

/**
 * One token's sum over sub-block pair k of an x4 block (the pair's 8 weight vectors at q, its 64 activations at x,
 * scales sLo, sHi from x4_scale16): each weight vector loaded once for both sub-blocks, two independent sums, two
 * vectors a step (a loop's address arithmetic costs as much as the products here; unrolling further was slower).
 */
@inline function x4_pair1(q: usize, x: usize, sLo: v128, sHi: v128): v128 {
  let lo = i32x4.splat(0), hi = i32x4.splat(0);
  const qEnd = q + 128;
  for (; q < qEnd; q += 32, x += 8) {
    let v = v128.load(q);
    lo = x4_add(lo, x4_dot(v128.and(v, kc(K_0F)), x));
    hi = x4_add(hi, x4_dot(v128.and(i16x8.shr_u(v, 4), kc(K_0F)), x + 32));
    v = v128.load(q + 16);
    lo = x4_add(lo, x4_dot(v128.and(v, kc(K_0F)), x + 4));
    hi = x4_add(hi, x4_dot(v128.and(i16x8.shr_u(v, 4), kc(K_0F)), x + 36));
  }
  return i32x4.add(x4_scaled(lo, sLo), x4_scaled(hi, sHi));
}

// ---- The x4 products' integer dot, two ways (the kernels' type parameter Dot) ----
// i16: x4_dot's `i16x8.relaxed_dot_i8x16_i7x16_s` (x64's pmaddubsw: 16-bit pair sums, added by x4_add, widened and
// scaled per sub-block by one pmaddwd), for every engine. i32: `i32x4.relaxed_dot_i8x16_i7x16_add_s`, which V8 13
// lowers to one `vpdpbusd` where the CPU has AVX-VNNI (the host's probe, quant.ts dot_u8_probe, tells it by
// `repacked & 8`; elsewhere it is pmaddubsw + pmaddwd + paddd, slower than i16): a lane's four products added into
// its i32 sum in one instruction, each sub-block scaled by one i32 multiply. Both are exact (the nibbles 0..15 are
// within the relaxed dot's deterministic range, b < 128), so they give the same integers. The one-token kernels
// take i32 (1.10-1.13x here); the prompt kernel keeps i16 (i32 ran 0.78-0.82x: its eight dot-add chains wait on
// the instruction's latency, where i16's paddw chains do not).

/** acc plus weight vector w (x4 layout, values 0..15) times the four activations at x broadcast to the lanes. */
@inline function x4_acc<Dot>(acc: v128, w: v128, x: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && sizeof<Dot>() == 4) return i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(x), w, acc);
  return x4_add(acc, x4_dot(w, x));
}

/** The scale of sub-block s (0..3 of sc, from x4_six_bits) in the form x4_scaled_t multiplies by. */
@inline function x4_scale_t<Dot>(sc: v128, s: i32): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && sizeof<Dot>() == 4) return pick(sc, kc(K_SCALE32 + (s << 4))); // i32 lane r: row r's
  return x4_scale16(sc, s);
}

/** A sub-block's x4_acc sums times its scale (x4_scale_t), i32 lane r: row r's, exact. */
@inline function x4_scaled_t<Dot>(a: v128, sc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && sizeof<Dot>() == 4) return i32x4.mul(a, sc);
  return x4_scaled(a, sc);
}

/** x4_pair1 with sub-block pair k's scales from sc; the i32 form in four chains (a dot-add's latency is 4+ cycles). */
@inline function x4_pair1_t<Dot>(q: usize, x: usize, sc: v128, k: i32): v128 {
  const sLo = x4_scale_t<Dot>(sc, (2 * k) & 3), sHi = x4_scale_t<Dot>(sc, ((2 * k) & 3) + 1);
  if (!(ASC_FEATURE_RELAXED_SIMD && sizeof<Dot>() == 4)) return x4_pair1(q, x, sLo, sHi);
  let lo = i32x4.splat(0), hi = i32x4.splat(0), lo2 = i32x4.splat(0), hi2 = i32x4.splat(0);
  const qEnd = q + 128;
  for (; q < qEnd; q += 32, x += 8) {
    let v = v128.load(q);
    lo = x4_acc<Dot>(lo, v128.and(v, kc(K_0F)), x);
    hi = x4_acc<Dot>(hi, v128.and(i16x8.shr_u(v, 4), kc(K_0F)), x + 32);
    v = v128.load(q + 16);
    lo2 = x4_acc<Dot>(lo2, v128.and(v, kc(K_0F)), x + 4);
    hi2 = x4_acc<Dot>(hi2, v128.and(i16x8.shr_u(v, 4), kc(K_0F)), x + 36);
  }
  return i32x4.add(x4_scaled_t<Dot>(i32x4.add(lo, lo2), sLo), x4_scaled_t<Dot>(i32x4.add(hi, hi2), sHi));
}

/**
 * q4k_x4_gemv for tokens t and t+1 at once (each token's bits as alone: a prompt's leftovers, or decode tokens of
 * several sequences), each weight vector loaded and unpacked once for both; results at out and out + ostride * 4.
 */
function q4k_x4_gemv2<Acc, Dot>(p0: usize, nb: i32, qs: usize, ds: usize, bsums: usize, t: i32, out: usize, ostride: i32): void {
  let accA = f32x4.splat(0), accmA = f32x4.splat(0), accB = f32x4.splat(0), accmB = f32x4.splat(0);
  const tq = <usize>nb << 8, tb = <usize>nb << 6;
  for (let b = 0; b < nb; b++) {
    const p = p0 + <usize>b * 576;
    const i = t * nb + b;
    const xa = qs + (<usize>i << 8), bs = bsums + (<usize>i << 6);
    const slo = x4_six_bits(p, false), shi = x4_six_bits_high(p, false);
    let sumA = i32x4.splat(0), sumB = i32x4.splat(0);
    for (let k = 0; k < 4; k++) {
      let loA = i32x4.splat(0), hiA = i32x4.splat(0), loB = i32x4.splat(0), hiB = i32x4.splat(0);
      let q = p + 64 + (<usize>k << 7), x = xa + (<usize>k << 6);
      for (const qEnd = q + 128; q < qEnd; q += 16, x += 4) {
        const v = v128.load(q);
        const lo = v128.and(v, kc(K_0F)), hi = v128.and(i16x8.shr_u(v, 4), kc(K_0F));
        loA = x4_acc<Dot>(loA, lo, x);
        hiA = x4_acc<Dot>(hiA, hi, x + 32);
        loB = x4_acc<Dot>(loB, lo, x + tq);
        hiB = x4_acc<Dot>(hiB, hi, x + tq + 32);
      }
      const sc = k < 2 ? slo : shi;
      const sLo = x4_scale_t<Dot>(sc, (2 * k) & 3), sHi = x4_scale_t<Dot>(sc, ((2 * k) & 3) + 1);
      sumA = i32x4.add(sumA, i32x4.add(x4_scaled_t<Dot>(loA, sLo), x4_scaled_t<Dot>(hiA, sHi)));
      sumB = i32x4.add(sumB, i32x4.add(x4_scaled_t<Dot>(loB, sLo), x4_scaled_t<Dot>(hiB, sHi)));
    }
    const mlo = x4_six_bits(p, true), mhi = x4_six_bits_high(p, true);
    const qa = q8k_pair_sums(bs), qb = q8k_pair_sums(bs + tb);
    const summA = x4_mins_block(mlo, mhi, qa), summB = x4_mins_block(mlo, mhi, qb);
    const d = x4_f16(p), dmin = x4_f16(p + 8);
    const d8a = f32x4.splat(load<f32>(ds + (<usize>i << 2))), d8b = f32x4.splat(load<f32>(ds + (<usize>(i + nb) << 2)));
    accA = fma4_t<Acc>(f32x4.convert_i32x4_s(sumA), f32x4.mul(d, d8a), accA);
    accmA = fma4_t<Acc>(f32x4.convert_i32x4_s(summA), f32x4.mul(dmin, d8a), accmA);
    accB = fma4_t<Acc>(f32x4.convert_i32x4_s(sumB), f32x4.mul(d, d8b), accB);
    accmB = fma4_t<Acc>(f32x4.convert_i32x4_s(summB), f32x4.mul(dmin, d8b), accmB);
  }
  v128.store(out, f32x4.sub(accA, accmA));
  v128.store(out + (<usize>ostride << 2), f32x4.sub(accB, accmB));
}

/**
 * gemv_q4_K_8x8_q8_K for one x4 group and token t, row r in lane r: per block, acc = fma(f32(sumi), d*d8, acc) and
 * accm = fma(f32(summ), dmin*d8, accm), as q4k_row_repacked (per 8) does for one row; acc - accm.
 */
function q4k_x4_gemv<Acc, Dot>(p0: usize, nb: i32, qs: usize, ds: usize, bsums: usize, t: i32): v128 {
  let acc = f32x4.splat(0), accm = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const p = p0 + <usize>b * 576;
    const i = t * nb + b;
    const x = qs + (<usize>i << 8), bs = bsums + (<usize>i << 6);
    const d8 = f32x4.splat(load<f32>(ds + (<usize>i << 2)));
    const slo = x4_six_bits(p, false), shi = x4_six_bits_high(p, false);
    let sumi = i32x4.splat(0);
    for (let k = 0; k < 4; k++) {
      const sc = k < 2 ? slo : shi;
      sumi = i32x4.add(sumi, x4_pair1_t<Dot>(p + 64 + (<usize>k << 7), x + (<usize>k << 6), sc, k));
    }
    const summ = x4_mins_block(x4_six_bits(p, true), x4_six_bits_high(p, true), q8k_pair_sums(bs));
    acc = fma4_t<Acc>(f32x4.convert_i32x4_s(sumi), f32x4.mul(x4_f16(p), d8), acc);
    accm = fma4_t<Acc>(f32x4.convert_i32x4_s(summ), f32x4.mul(x4_f16(p + 8), d8), accm);
  }
  return f32x4.sub(acc, accm);
}

/**
 * q4k_x4_gemv (the same bits) for two x4 groups at pa0 and pb0 with token t: two streams from memory, the
 * activations' pair sums made once for both. Results (four rows each) at outA and outB.
 */
function q4k_x4_gemv_2g<Acc, Dot>(pa0: usize, pb0: usize, nb: i32, qs: usize, ds: usize, bsums: usize, t: i32, outA: usize, outB: usize): void {
  let accA = f32x4.splat(0), accmA = f32x4.splat(0), accB = f32x4.splat(0), accmB = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const pa = pa0 + <usize>b * 576, pb = pb0 + <usize>b * 576;
    const i = t * nb + b;
    const x = qs + (<usize>i << 8), bs = bsums + (<usize>i << 6);
    const d8 = f32x4.splat(load<f32>(ds + (<usize>i << 2)));
    const sloA = x4_six_bits(pa, false), shiA = x4_six_bits_high(pa, false);
    const sloB = x4_six_bits(pb, false), shiB = x4_six_bits_high(pb, false);
    let sumiA = i32x4.splat(0), sumiB = i32x4.splat(0);
    for (let k = 0; k < 4; k++) {
      const scA = k < 2 ? sloA : shiA, scB = k < 2 ? sloB : shiB;
      const o = <usize>(64 + (k << 7)), xk = x + (<usize>k << 6);
      sumiA = i32x4.add(sumiA, x4_pair1_t<Dot>(pa + o, xk, scA, k));
      sumiB = i32x4.add(sumiB, x4_pair1_t<Dot>(pb + o, xk, scB, k));
    }
    const q8s = q8k_pair_sums(bs);
    const summA = x4_mins_block(x4_six_bits(pa, true), x4_six_bits_high(pa, true), q8s);
    const summB = x4_mins_block(x4_six_bits(pb, true), x4_six_bits_high(pb, true), q8s);
    accA = fma4_t<Acc>(f32x4.convert_i32x4_s(sumiA), f32x4.mul(x4_f16(pa), d8), accA);
    accmA = fma4_t<Acc>(f32x4.convert_i32x4_s(summA), f32x4.mul(x4_f16(pa + 8), d8), accmA);
    accB = fma4_t<Acc>(f32x4.convert_i32x4_s(sumiB), f32x4.mul(x4_f16(pb), d8), accB);
    accmB = fma4_t<Acc>(f32x4.convert_i32x4_s(summB), f32x4.mul(x4_f16(pb + 8), d8), accmB);
  }
  v128.store(outA, f32x4.sub(accA, accmA));
  v128.store(outB, f32x4.sub(accB, accmB));
}

/**
 * gemv/gemm_q4_K_8x8_q8_K: acc = fma(f32(sumi), d*d8, acc) and accm likewise with summ and dmin, the integer sums
 * taken over `per` sub-blocks at a time (gemv 8, the whole block; gemm 2); acc - accm.
 */
@inline function q4k_row_repacked(row: usize, nb: i32, qs: usize, ds: usize, bsums: usize, t: i32, per: i32): f32 {
  let acc: f32 = 0, accm: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const p = row + <usize>b * 144;
    const i = t * nb + b;
    const d8 = load<f32>(ds + (<usize>i << 2));
    const d = f16_to_f32(load<u16>(p)) * d8, dmin = f16_to_f32(load<u16>(p + 2)) * d8;
    const x = qs + (<usize>i << 8);
    const scales = k4_scales(p + 4);
    const mp = k4_min_products(p + 4, bsums + (<usize>i << 6)); // lane k: sub-blocks 2k and 2k+1
    if (per == 8) {
      acc = fma1(<f32>q4k_sumi(p, x, scales, 0, 8), d, acc);
      accm = fma1(<f32>hsum_i32(mp), dmin, accm);
    } else {
      // gemm: per pair of sub-blocks
      acc = fma1(<f32>q4k_sumi(p, x, scales, 0, 2), d, acc);
      accm = fma1(<f32>i32x4.extract_lane(mp, 0), dmin, accm);
      acc = fma1(<f32>q4k_sumi(p, x, scales, 2, 2), d, acc);
      accm = fma1(<f32>i32x4.extract_lane(mp, 1), dmin, accm);
      acc = fma1(<f32>q4k_sumi(p, x, scales, 4, 2), d, acc);
      accm = fma1(<f32>i32x4.extract_lane(mp, 2), dmin, accm);
      acc = fma1(<f32>q4k_sumi(p, x, scales, 6, 2), d, acc);
      accm = fma1(<f32>i32x4.extract_lane(mp, 3), dmin, accm);
    }
  }
  return acc - accm;
}

/**
 * sc * (the sums of 4 consecutive products) of 16 weight values v (0..63) and 16 activations x: lane k sums bytes
 * 4k..4k+3. Relaxed build: products paired in i16 (<= 2*63*127, no saturation), then paired again and scaled by one
 * pmaddwd, as the AVX2 kernels do; plain build: quads_i8 times sc.
 */
@inline function k_quads(v: v128, x: v128, sc: i32): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, v), i16x8.splat(<i16>sc));
  return i32x4.mul(quads_i8(v, x), i32x4.splat(sc));
}

/**
 * 32 * (bsums[2m] * sc[2m] + bsums[2m+1] * sc[2m+1]) for 4 lanes m from 8 sums (i32, at bs; each fits i16: 16 *
 * 128) and 8 int8 scales (at sc): one pmaddwd.
 */
@inline function q6_offsets(bs: usize, sc: usize): v128 {
  const s = i16x8.extend_low_i8x16_s(v128.load64_zero(sc));
  return i32x4.shl(i32x4.dot_i16x8_s(i16x8.narrow_i32x4_s(v128.load(bs), v128.load(bs + 16)), s), 5);
}


/** Lane j of v (i32x4) in every lane: one pshufd. */
@inline function lane32(v: v128, j: i32): v128 {
  switch (j) {
    case 0: return v128.shuffle<i32>(v, v, 0, 0, 0, 0);
    case 1: return v128.shuffle<i32>(v, v, 1, 1, 1, 1);
    case 2: return v128.shuffle<i32>(v, v, 2, 2, 2, 2);
    default: return v128.shuffle<i32>(v, v, 3, 3, 3, 3);
  }
}

/**
 * k_quads with the scale in every i32 lane of sc (as an i16 twice, lane32 of q6_quarter's scale vectors): relaxed
 * build, the i16 pair sums by one pmaddwd; plain build, quads_i8 times the scale.
 */
@inline function k_quads_lanes(v: v128, x: v128, sc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, v), sc);
  return i32x4.mul(quads_i8(v, x), i32x4.shr_s(sc, 16));
}

/**
 * One half (bytes `half`*16.. of each 32) of a Q6_K half-block (128 values: the pqr bytes at ql 64, qh 32, activations xs;
 * scales 0..3 in sA's i32 lanes and 4..7 in sB's, each i16 twice): sum over its 4 groups of scale * (u . x),
 * u = q + 32 (0..63, q6_u), as four i32 lanes (exact). Group g (32 values) has scales 2g (half 0) and 2g+1 (half
 * 1). `half` is a constant at each call (constant shuffles).
 */
@inline function q6_quarter(ql: usize, qh: usize, xs: usize, sA: v128, sB: v128, half: i32): v128 {
  const o = <usize>(half << 4);
  const p = v128.load(ql + o), q = v128.load(ql + 32 + o), r = v128.load(qh + o);
  return q6_dots(q6_u(p, q, r, 0), q6_u(p, q, r, 1), q6_u(p, q, r, 2), q6_u(p, q, r, 3), xs + o, sA, sB, half);
}

/**
 * Q6_K as stored here ("pqr", repack_q6_k at load, in place): each 48 bytes that hold four groups of 16 values, the
 * ql bytes a (groups 0, 2 in its nibbles) and c (1, 3) and the qh bytes hb (two bits of each group), become
 * P = u0 | u3[0:2] << 6, Q = u1 | u3[2:4] << 6, R = u2 | u3[4:6] << 6 at the same places, u = q + 32 (0..63), so
 * three groups take one mask each and the fourth eight operations: 11 for the four where the file's layout takes 17
 * (Q6_K products are bound by these vector operations, not by memory or multiplies).
 */
@inline function q6_u(p: v128, q: v128, r: v128, g: i32): v128 {
  const m6 = kc(K_3F);
  switch (g) {
    case 0: return v128.and(p, m6);
    case 1: return v128.and(q, m6);
    case 2: return v128.and(r, m6);
    // 16-bit shifts: what crosses into a byte from its neighbour is masked off
    default: return v128.or(v128.or(v128.and(i16x8.shr_u(p, 6), kc(K_03)), v128.and(i16x8.shr_u(q, 4), kc(K_0C))), v128.and(i16x8.shr_u(r, 2), kc(K_30)));
  }
}

/** Group g's u (0..63) from the file's bytes: ql a (groups 0, 2) and c (1, 3), qh hb (bits 2j of value 32j + l at qh[l]). */
@inline function q6_u_file(a: v128, c: v128, hb: v128, g: i32): v128 {
  const m4 = kc(K_0F), m30 = kc(K_30);
  switch (g) {
    case 0: return v128.or(v128.and(a, m4), v128.and(i16x8.shl(hb, 4), m30));
    case 1: return v128.or(v128.and(c, m4), v128.and(i16x8.shl(hb, 2), m30));
    case 2: return v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(hb, m30));
    default: return v128.or(v128.and(i16x8.shr_u(c, 4), m4), v128.and(i16x8.shr_u(hb, 2), m30));
  }
}

/**
 * Q6_K blocks (210 bytes each: ql 128, qh 64, scales 16, d 2) from the file's layout to "pqr" (q6_u), in place;
 * scales and d stay. WasmBackend.dequantizeRow turns a row back (q6kFileBytes).
 */
export function repack_q6_k(w: usize, nblocks: i32): void {
  for (let b = 0; b < nblocks; b++) {
    const blk = w + <usize>b * 210;
    for (let h = 0; h < 4; h++) {
      // the four 48-byte triples: half-block h >> 1, its 16-byte half h & 1
      const pa = blk + (<usize>(h >> 1) << 6) + (<usize>(h & 1) << 4), pc = pa + 32;
      const ph = blk + 128 + (<usize>(h >> 1) << 5) + (<usize>(h & 1) << 4);
      const x = v128.load(pa), y = v128.load(pc), z = v128.load(ph);
      const u3 = q6_u_file(x, y, z, 3);
      v128.store(pa, v128.or(q6_u_file(x, y, z, 0), i16x8.shl(v128.and(u3, kc(K_03)), 6)));
      v128.store(pc, v128.or(q6_u_file(x, y, z, 1), i16x8.shl(v128.and(u3, kc(K_0C)), 4)));
      v128.store(ph, v128.or(q6_u_file(x, y, z, 2), i16x8.shl(v128.and(u3, kc(K_30)), 2)));
    }
  }
}

/** A quarter's four groups u0..u3 (q6_u) times one token's activations (group g at xs + 32g): q6_quarter's sum. */
@inline function q6_dots(u0: v128, u1: v128, u2: v128, u3: v128, xs: usize, sA: v128, sB: v128, half: i32): v128 {
  let acc = k_quads_lanes(u0, v128.load(xs), lane32(sA, half));
  acc = i32x4.add(acc, k_quads_lanes(u1, v128.load(xs + 32), lane32(sA, 2 + half)));
  acc = i32x4.add(acc, k_quads_lanes(u2, v128.load(xs + 64), lane32(sB, half)));
  return i32x4.add(acc, k_quads_lanes(u3, v128.load(xs + 96), lane32(sB, 2 + half)));
}

/** A Q6_K half-block's scales (i16, s8: eight of them) as the i32 lanes of q6_quarter's sA (0..3) and sB (4..7). */
@inline function q6_scales_a(s8: v128): v128 {
  return i8x16.shuffle(s8, s8, 0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7);
}
@inline function q6_scales_b(s8: v128): v128 {
  return i8x16.shuffle(s8, s8, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15);
}

/**
 * k_row_vec_dot's Q6_K (the same bits) for tokens t..t+3 at once (Four = i32) or t and t+1 (Four = i16): each
 * unpacked group serves every token (unpacking, 11 operations per 64 values, is a third of the two-token form's
 * work). Results at out + u * ostride * 4 for token t + u.
 */
function q6k_row_tokens<Acc, Four>(row: usize, nb: i32, qs: usize, ds: usize, bsums: usize, t: i32, out: usize, ostride: i32): void {
  const four = sizeof<Four>() == 4;
  let aLo = f32x4.splat(0), aHi = f32x4.splat(0), bLo = f32x4.splat(0), bHi = f32x4.splat(0);
  let cLo = f32x4.splat(0), cHi = f32x4.splat(0), dLo = f32x4.splat(0), dHi = f32x4.splat(0);
  const tq = <usize>nb << 8, tb = <usize>nb << 6;
  for (let b = 0; b < nb; b++) {
    const p = row + <usize>b * 210;
    const i = t * nb + b;
    const x = qs + (<usize>i << 8), bs = bsums + (<usize>i << 6);
    const scv = v128.load(p + 192);
    let sLoA = i32x4.splat(0), sHiA = i32x4.splat(0), sLoB = i32x4.splat(0), sHiB = i32x4.splat(0);
    let sLoC = i32x4.splat(0), sHiC = i32x4.splat(0), sLoD = i32x4.splat(0), sHiD = i32x4.splat(0);
    for (let h2 = 0; h2 < 2; h2++) {
      // the block's two 128-value halves: pqr bytes at ql 64 and qh 32, activations 128, scales 8 each
      const ql = p + (<usize>h2 << 6), qh = p + 128 + (<usize>h2 << 5), xa = x + (<usize>h2 << 7);
      const xb = xa + tq, xc = xb + tq, xd = xc + tq;
      const s8 = h2 ? i16x8.extend_high_i8x16_s(scv) : i16x8.extend_low_i8x16_s(scv);
      const sA = q6_scales_a(s8), sB = q6_scales_b(s8);
      let pv = v128.load(ql), qv = v128.load(ql + 32), rv = v128.load(qh);
      let u0 = q6_u(pv, qv, rv, 0), u1 = q6_u(pv, qv, rv, 1), u2 = q6_u(pv, qv, rv, 2), u3 = q6_u(pv, qv, rv, 3);
      sLoA = i32x4.add(sLoA, q6_dots(u0, u1, u2, u3, xa, sA, sB, 0));
      sLoB = i32x4.add(sLoB, q6_dots(u0, u1, u2, u3, xb, sA, sB, 0));
      if (four) {
        sLoC = i32x4.add(sLoC, q6_dots(u0, u1, u2, u3, xc, sA, sB, 0));
        sLoD = i32x4.add(sLoD, q6_dots(u0, u1, u2, u3, xd, sA, sB, 0));
      }
      pv = v128.load(ql + 16); qv = v128.load(ql + 48); rv = v128.load(qh + 16);
      u0 = q6_u(pv, qv, rv, 0); u1 = q6_u(pv, qv, rv, 1); u2 = q6_u(pv, qv, rv, 2); u3 = q6_u(pv, qv, rv, 3);
      sHiA = i32x4.add(sHiA, q6_dots(u0, u1, u2, u3, xa + 16, sA, sB, 1));
      sHiB = i32x4.add(sHiB, q6_dots(u0, u1, u2, u3, xb + 16, sA, sB, 1));
      if (four) {
        sHiC = i32x4.add(sHiC, q6_dots(u0, u1, u2, u3, xc + 16, sA, sB, 1));
        sHiD = i32x4.add(sHiD, q6_dots(u0, u1, u2, u3, xd + 16, sA, sB, 1));
      }
    }
    const dw = f16_to_f32(load<u16>(p + 208));
    const da = f32x4.splat(load<f32>(ds + (<usize>i << 2)) * dw), db = f32x4.splat(load<f32>(ds + (<usize>(i + nb) << 2)) * dw);
    aLo = fma4_t<Acc>(da, f32x4.convert_i32x4_s(i32x4.sub(sLoA, q6_offsets(bs, p + 192))), aLo);
    aHi = fma4_t<Acc>(da, f32x4.convert_i32x4_s(i32x4.sub(sHiA, q6_offsets(bs + 32, p + 200))), aHi);
    bLo = fma4_t<Acc>(db, f32x4.convert_i32x4_s(i32x4.sub(sLoB, q6_offsets(bs + tb, p + 192))), bLo);
    bHi = fma4_t<Acc>(db, f32x4.convert_i32x4_s(i32x4.sub(sHiB, q6_offsets(bs + tb + 32, p + 200))), bHi);
    if (four) {
      const dc = f32x4.splat(load<f32>(ds + (<usize>(i + 2 * nb) << 2)) * dw), dd = f32x4.splat(load<f32>(ds + (<usize>(i + 3 * nb) << 2)) * dw);
      cLo = fma4_t<Acc>(dc, f32x4.convert_i32x4_s(i32x4.sub(sLoC, q6_offsets(bs + 2 * tb, p + 192))), cLo);
      cHi = fma4_t<Acc>(dc, f32x4.convert_i32x4_s(i32x4.sub(sHiC, q6_offsets(bs + 2 * tb + 32, p + 200))), cHi);
      dLo = fma4_t<Acc>(dd, f32x4.convert_i32x4_s(i32x4.sub(sLoD, q6_offsets(bs + 3 * tb, p + 192))), dLo);
      dHi = fma4_t<Acc>(dd, f32x4.convert_i32x4_s(i32x4.sub(sHiD, q6_offsets(bs + 3 * tb + 32, p + 200))), dHi);
    }
  }
  const os = <usize>ostride << 2;
  store<f32>(out, hsum8(aLo, aHi));
  store<f32>(out + os, hsum8(bLo, bHi));
  if (four) {
    store<f32>(out + 2 * os, hsum8(cLo, cHi));
    store<f32>(out + 3 * os, hsum8(dLo, dHi));
  }
}

/**
 * k_row_vec_dot's Q6_K (the same bits) for rows a and b with token t at once: two streams from memory, and each
 * activation vector loaded once for both rows. Results at outA and outB.
 */
function q6k_rows2<Acc>(rowA: usize, rowB: usize, nb: i32, qs: usize, ds: usize, bsums: usize, t: i32, outA: usize, outB: usize): void {
  let aLo = f32x4.splat(0), aHi = f32x4.splat(0), bLo = f32x4.splat(0), bHi = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const pa = rowA + <usize>b * 210, pb = rowB + <usize>b * 210;
    const i = t * nb + b;
    const x = qs + (<usize>i << 8), bs = bsums + (<usize>i << 6);
    const va = v128.load(pa + 192), vb = v128.load(pb + 192);
    let sa = i16x8.extend_low_i8x16_s(va), ta = i16x8.extend_high_i8x16_s(va);
    let sLoA = i32x4.add(q6_quarter(pa, pa + 128, x, q6_scales_a(sa), q6_scales_b(sa), 0), q6_quarter(pa + 64, pa + 160, x + 128, q6_scales_a(ta), q6_scales_b(ta), 0));
    let sHiA = i32x4.add(q6_quarter(pa, pa + 128, x, q6_scales_a(sa), q6_scales_b(sa), 1), q6_quarter(pa + 64, pa + 160, x + 128, q6_scales_a(ta), q6_scales_b(ta), 1));
    sa = i16x8.extend_low_i8x16_s(vb); ta = i16x8.extend_high_i8x16_s(vb);
    let sLoB = i32x4.add(q6_quarter(pb, pb + 128, x, q6_scales_a(sa), q6_scales_b(sa), 0), q6_quarter(pb + 64, pb + 160, x + 128, q6_scales_a(ta), q6_scales_b(ta), 0));
    let sHiB = i32x4.add(q6_quarter(pb, pb + 128, x, q6_scales_a(sa), q6_scales_b(sa), 1), q6_quarter(pb + 64, pb + 160, x + 128, q6_scales_a(ta), q6_scales_b(ta), 1));
    sLoA = i32x4.sub(sLoA, q6_offsets(bs, pa + 192)); sHiA = i32x4.sub(sHiA, q6_offsets(bs + 32, pa + 200));
    sLoB = i32x4.sub(sLoB, q6_offsets(bs, pb + 192)); sHiB = i32x4.sub(sHiB, q6_offsets(bs + 32, pb + 200));
    const d8 = load<f32>(ds + (<usize>i << 2));
    const da = f32x4.splat(d8 * f16_to_f32(load<u16>(pa + 208))), db = f32x4.splat(d8 * f16_to_f32(load<u16>(pb + 208)));
    aLo = fma4_t<Acc>(da, f32x4.convert_i32x4_s(sLoA), aLo);
    aHi = fma4_t<Acc>(da, f32x4.convert_i32x4_s(sHiA), aHi);
    bLo = fma4_t<Acc>(db, f32x4.convert_i32x4_s(sLoB), bLo);
    bHi = fma4_t<Acc>(db, f32x4.convert_i32x4_s(sHiB), bHi);
  }
  store<f32>(outA, hsum8(aLo, aHi));
  store<f32>(outB, hsum8(bLo, bHi));
}

/** ggml_vec_dot_q{4,5,6}_K_q8_K (AVX2) of one row with token t. */
@inline function k_row_vec_dot<Acc>(kind: i32, row: usize, nb: i32, bb: usize, qs: usize, ds: usize, bsums: usize, t: i32): f32 {
  let aLo = f32x4.splat(0), aHi = f32x4.splat(0), accM = f32x4.splat(0);
  let summs: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const p = row + <usize>b * bb;
    const i = t * nb + b;
    const x = qs + (<usize>i << 8), bs = bsums + (<usize>i << 6);
    const d8 = load<f32>(ds + (<usize>i << 2));
    let sLo = i32x4.splat(0), sHi = i32x4.splat(0);
    if (kind == 2) {
      // Q6_K: the unsigned values q + 32; each half-block's scales 0..3 and 4..7 as i32 lanes (each i16 scale
      // twice), so that one pshufd broadcasts a scale (8% faster than a load and a splat per group)
      const scv = v128.load(p + 192);
      const s8 = i16x8.extend_low_i8x16_s(scv), t8 = i16x8.extend_high_i8x16_s(scv);
      const sA = q6_scales_a(s8), sB = q6_scales_b(s8), tA = q6_scales_a(t8), tB = q6_scales_b(t8);
      sLo = i32x4.add(q6_quarter(p, p + 128, x, sA, sB, 0), q6_quarter(p + 64, p + 160, x + 128, tA, tB, 0));
      sHi = i32x4.add(q6_quarter(p, p + 128, x, sA, sB, 1), q6_quarter(p + 64, p + 160, x + 128, tA, tB, 1));
      sLo = i32x4.sub(sLo, q6_offsets(bs, p + 192));
      sHi = i32x4.sub(sHi, q6_offsets(bs + 32, p + 200));
    } else {
      const five = kind == 1;
      const qsw = p + (five ? 48 : 16);
      const scales = k4_scales(p + 4);
      for (let s = 0; s < 8; s++) {
        const sc = <i32>(scales >> (<i64>s << 3)) & 0xff;
        for (let half = 0; half < 2; half++) {
          const o = <usize>(half << 4);
          const bt = v128.load(qsw + (<usize>(s >> 1) << 5) + o);
          let v = s & 1 ? i8x16.shr_u(bt, 4) : v128.and(bt, kc(K_0F));
          if (five) v = v128.or(v, i8x16.shl(v128.and(i8x16.shr_u(v128.load(p + 16 + o), <i32>s), kc(K_01)), 4));
          const q = k_quads(v, v128.load(x + (<usize>s << 5) + o), sc);
          if (half) sHi = i32x4.add(sHi, q);
          else sLo = i32x4.add(sLo, q);
        }
      }
    }
    const d = f32x4.splat(d8 * f16_to_f32(load<u16>(p + (kind == 2 ? 208 : 0))));
    aLo = fma4_t<Acc>(d, f32x4.convert_i32x4_s(sLo), aLo);
    aHi = fma4_t<Acc>(d, f32x4.convert_i32x4_s(sHi), aHi);
    if (kind == 2) continue;
    // mins: sums of bsums pairs (q8s[j] = bsums[2j] + bsums[2j+1]) times the six-bit mins
    const dmin: f32 = -d8 * f16_to_f32(load<u16>(p + 2));
    const prod = k4_min_products(p + 4, bs);
    if (kind == 0) accM = fma4_t<Acc>(f32x4.splat(dmin), f32x4.convert_i32x4_s(prod), accM);
    else summs = fma1(dmin, <f32>hsum_i32(prod), summs);
  }
  const h = hsum8(aLo, aHi);
  if (kind == 0) return h + ((f32x4.extract_lane(accM, 0) + f32x4.extract_lane(accM, 2)) + (f32x4.extract_lane(accM, 1) + f32x4.extract_lane(accM, 3)));
  if (kind == 1) return h + summs;
  return h;
}
