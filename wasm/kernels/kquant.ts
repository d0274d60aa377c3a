// ---- K-quant matrices (Q4_K, Q5_K, Q6_K: 256-value super-blocks) x Q8_K activations ----
import { f16_to_f32, f16x4_to_f32x4, fma1, fma4, hsum8, hsum_i32, quads_i8 } from "./common";

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
      acc = i32x4.add(acc, k_quads(s & 1 ? i8x16.shr_u(b, 4) : v128.and(b, i8x16.splat(0x0f)), v128.load(x + (<usize>s << 5) + l0), sc));
    }
  }
  return hsum_i32(acc);
}

/**
 * Q4_K rows in groups of 4 rows ("x4", in place: `rows` a multiple of 4, `tmp` 4 rows' bytes): per group, block b of
 * the four rows one after another (576 bytes), so a group's four streams are one. The blocks keep their bytes.
 */
export function repack_q4_k_x4(w: usize, rows: i32, cols: i32, tmp: usize): void {
  const nb = <usize>(cols >> 8);
  const rowBytes = nb * 144;
  for (let g = 0; g < rows; g += 4) {
    const base = w + <usize>g * rowBytes;
    memory.copy(tmp, base, rowBytes << 2);
    for (let b: usize = 0; b < nb; b++) {
      for (let r: usize = 0; r < 4; r++) memory.copy(base + b * 576 + r * 144, tmp + r * rowBytes + b * 144, 144);
    }
  }
}

/**
 * K-quant weights (kind 0 Q4_K, 1 Q5_K, 2 Q6_K; rows of cols/256 blocks) x Q8_K activations (per token: qs cols
 * i8, ds cols/256 f32, bsums cols/16 i32), in llama.cpp's orders as quant-k.ts dotKRow (kOrder): `repacked` (Q4_K,
 * rows % 8 == 0; 1: a batch, 2: single-token rows) gemm's or gemv's, otherwise vec_dot_q{4,5,6}_K_q8_K's.
 */
export function matmul_k(kind: i32, repacked: i32, w: usize, rows: i32, cols: i32, qs: usize, ds: usize, bsums: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 8;
  const bb: usize = kind == 0 ? 144 : kind == 1 ? 176 : 210;
  // repacked & 3 == 1: whole groups of 4 tokens take gemm's order, the rest gemv's; 2: every token gemv's (single-token
  // rows). repacked & 4: the weights are in the x4 layout (repack_q4_k_x4), rows a multiple of 4.
  const x4 = (repacked & 4) != 0;
  repacked &= 3;
  if (x4 && (rows & 3) != 0) unreachable();
  const gemmTokens = repacked == 1 ? ntok - (ntok & 3) : 0;
  const rowBytes = <usize>nb * bb;
  // within a group of 4 rows: the next row's block, the next block
  const rowStep: usize = x4 ? 144 : rowBytes, blockStep: usize = x4 ? 576 : 144;
  let r0 = 0;
  if (repacked) {
    // four rows at a time, one lane each (rows % 8 == 0 when repacked)
    for (; r0 + 3 < rows; r0 += 4) {
      const row = w + <usize>r0 * rowBytes;
      for (let t = gemmTokens; t < ntok; t++) v128.store(out + (<usize>(t * ostride + r0) << 2), q4k_gemv_x4(row, rowStep, blockStep, nb, qs, ds, bsums, t));
      for (let t = 0; t < gemmTokens; t++) v128.store(out + (<usize>(t * ostride + r0) << 2), q4k_gemm_x4(row, rowStep, blockStep, nb, qs, ds, bsums, t));
    }
  }
  for (let r = r0; r < rows; r++) {
    const row = w + <usize>r * rowBytes;
    for (let t = 0; t < ntok; t++) {
      const v = repacked ? q4k_row_repacked(row, nb, qs, ds, bsums, t, t < gemmTokens ? 2 : 8) : k_row_vec_dot(kind, row, nb, bb, qs, ds, bsums, t);
      store<f32>(out + (<usize>(t * ostride + r) << 2), v);
    }
  }
}

/** [v0 lanes 0+2, v1 lanes 0+2, v0 lanes 1+3, v1 lanes 1+3]: half of hsum4x4_i32. */
@inline function hsum2x4_i32(v0: v128, v1: v128): v128 {
  return i32x4.add(v128.shuffle<i32>(v0, v1, 0, 4, 1, 5), v128.shuffle<i32>(v0, v1, 2, 6, 3, 7));
}

/** hsum2x4_i32 of rows 0, 1 (h01) and rows 2, 3 (h23) -> lane k: row k's sum. */
@inline function join_pairs(h01: v128, h23: v128): v128 {
  return i32x4.add(v128.shuffle<i32>(h01, h23, 0, 1, 4, 5), v128.shuffle<i32>(h01, h23, 2, 3, 6, 7));
}

/** Lane k: the sum of v_k's four lanes (four rows' i32x4 partial sums into one vector). */
@inline function hsum4x4_i32(v0: v128, v1: v128, v2: v128, v3: v128): v128 {
  return join_pairs(hsum2x4_i32(v0, v1), hsum2x4_i32(v2, v3));
}

/** Scale s (0..7) of a block, from the eight six-bit scales widened to i16 lanes, in every i16 lane. */
@inline function scale_lanes(sc16: v128, s: i32): v128 {
  switch (s) {
    case 0: return i8x16.shuffle(sc16, sc16, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
    case 1: return i8x16.shuffle(sc16, sc16, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    case 2: return i8x16.shuffle(sc16, sc16, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5);
    case 3: return i8x16.shuffle(sc16, sc16, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7);
    case 4: return i8x16.shuffle(sc16, sc16, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9);
    case 5: return i8x16.shuffle(sc16, sc16, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11);
    case 6: return i8x16.shuffle(sc16, sc16, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13);
    default: return i8x16.shuffle(sc16, sc16, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15);
  }
}

/**
 * scale[2k] * (q . x over sub-block 2k) + scale[2k+1] * (... 2k+1) of one row's Q4_K block at p (sc16: its scales
 * widened to i16 lanes) with one token's Q8_K values at x, as four i32 partial sums (exact). The pair shares its 32
 * bytes (low nibbles 2k, high 2k+1); each sub-block's two i16 pair sums are added in i16 (<= 2 * 2 * 15 * 128)
 * before one pmaddwd by its scale.
 */
@inline function q4k_pair(p: usize, x: usize, sc16: v128, k: i32): v128 {
  const m4 = i8x16.splat(0x0f);
  const q = p + 16 + (<usize>k << 5), xk = x + (<usize>k << 6);
  const b0 = v128.load(q), b1 = v128.load(q + 16);
  const lo0 = v128.and(b0, m4), lo1 = v128.and(b1, m4), hi0 = v128.and(i16x8.shr_u(b0, 4), m4), hi1 = v128.and(i16x8.shr_u(b1, 4), m4);
  const slo = scale_lanes(sc16, 2 * k), shi = scale_lanes(sc16, 2 * k + 1);
  if (ASC_FEATURE_RELAXED_SIMD) {
    const lo = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xk), lo0), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xk + 16), lo1));
    const hi = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xk + 32), hi0), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xk + 48), hi1));
    return i32x4.add(i32x4.dot_i16x8_s(lo, slo), i32x4.dot_i16x8_s(hi, shi));
  }
  const lo = i32x4.add(quads_i8(lo0, v128.load(xk)), quads_i8(lo1, v128.load(xk + 16)));
  const hi = i32x4.add(quads_i8(hi0, v128.load(xk + 32)), quads_i8(hi1, v128.load(xk + 48)));
  return i32x4.add(i32x4.mul(lo, i32x4.extend_low_i16x8_s(slo)), i32x4.mul(hi, i32x4.extend_low_i16x8_s(shi)));
}

@inline function k4_scales16(p: usize): v128 {
  return i16x8.extend_low_i8x16_u(i64x2.splat(k4_scales(p + 4)));
}

/** The whole block of q4k_pair: sum_s scale[s] * (q . x over sub-block s), four i32 partial sums. */
@inline function q4k_block_sums(p: usize, x: usize): v128 {
  const sc16 = k4_scales16(p);
  let acc = i32x4.splat(0);
  for (let k = 0; k < 4; k++) acc = i32x4.add(acc, q4k_pair(p, x, sc16, k));
  return acc;
}

/** 4x4 transpose of i32 lanes: lane r of the result is lane k of v_r. */
@inline function lane_of_each(v0: v128, v1: v128, v2: v128, v3: v128, k: i32): v128 {
  switch (k) {
    case 0: return v128.shuffle<i32>(v128.shuffle<i32>(v0, v1, 0, 4, 0, 4), v128.shuffle<i32>(v2, v3, 0, 4, 0, 4), 0, 1, 4, 5);
    case 1: return v128.shuffle<i32>(v128.shuffle<i32>(v0, v1, 1, 5, 1, 5), v128.shuffle<i32>(v2, v3, 1, 5, 1, 5), 0, 1, 4, 5);
    case 2: return v128.shuffle<i32>(v128.shuffle<i32>(v0, v1, 2, 6, 2, 6), v128.shuffle<i32>(v2, v3, 2, 6, 2, 6), 0, 1, 4, 5);
    default: return v128.shuffle<i32>(v128.shuffle<i32>(v0, v1, 3, 7, 3, 7), v128.shuffle<i32>(v2, v3, 3, 7, 3, 7), 0, 1, 4, 5);
  }
}

/**
 * gemm_q4_K_8x8_q8_K for four rows (row0 and the next three: a block rowBytes from the last row's, blocks blockStep
 * apart; one row a lane) and token t: per block and
 * sub-block pair k, acc = fma(f32(sumi of the pair), d*d8, acc) and accm = fma(f32(mins of the pair), dmin*d8, accm),
 * as q4k_row_repacked (per 2) does for one row; acc - accm.
 */
function q4k_gemm_x4(row0: usize, rowBytes: usize, blockStep: usize, nb: i32, qs: usize, ds: usize, bsums: usize, t: i32): v128 {
  let acc = f32x4.splat(0), accm = f32x4.splat(0);
  const r1 = rowBytes, r2 = rowBytes << 1, r3 = rowBytes * 3;
  for (let b = 0; b < nb; b++) {
    const p = row0 + <usize>b * blockStep;
    const i = t * nb + b;
    const d8 = f32x4.splat(load<f32>(ds + (<usize>i << 2)));
    const x = qs + (<usize>i << 8), bs = bsums + (<usize>i << 6);
    // the two chains are independent: accm's four steps first, then acc's
    const dmin = f32x4.mul(f16x4_at(p + 2, rowBytes), d8);
    const q8s = q8k_pair_sums(bs);
    const n0 = k4_mins_dot(p + 4, q8s), n1 = k4_mins_dot(p + r1 + 4, q8s), n2 = k4_mins_dot(p + r2 + 4, q8s), n3 = k4_mins_dot(p + r3 + 4, q8s);
    for (let k = 0; k < 4; k++) accm = fma4(f32x4.convert_i32x4_s(lane_of_each(n0, n1, n2, n3, k)), dmin, accm);
    const d = f32x4.mul(f16x4_at(p, rowBytes), d8);
    // rows 0 and 1 first, all four pairs (each row's scales unpacked once), then rows 2 and 3 pair by pair into acc
    // (fewer values live at once: x64 has 16 vector registers)
    const s0 = k4_scales16(p), s1 = k4_scales16(p + r1);
    const h0 = hsum2x4_i32(q4k_pair(p, x, s0, 0), q4k_pair(p + r1, x, s1, 0));
    const h1 = hsum2x4_i32(q4k_pair(p, x, s0, 1), q4k_pair(p + r1, x, s1, 1));
    const h2 = hsum2x4_i32(q4k_pair(p, x, s0, 2), q4k_pair(p + r1, x, s1, 2));
    const h3 = hsum2x4_i32(q4k_pair(p, x, s0, 3), q4k_pair(p + r1, x, s1, 3));
    const s2 = k4_scales16(p + r2), s3 = k4_scales16(p + r3);
    acc = fma4(f32x4.convert_i32x4_s(join_pairs(h0, hsum2x4_i32(q4k_pair(p + r2, x, s2, 0), q4k_pair(p + r3, x, s3, 0)))), d, acc);
    acc = fma4(f32x4.convert_i32x4_s(join_pairs(h1, hsum2x4_i32(q4k_pair(p + r2, x, s2, 1), q4k_pair(p + r3, x, s3, 1)))), d, acc);
    acc = fma4(f32x4.convert_i32x4_s(join_pairs(h2, hsum2x4_i32(q4k_pair(p + r2, x, s2, 2), q4k_pair(p + r3, x, s3, 2)))), d, acc);
    acc = fma4(f32x4.convert_i32x4_s(join_pairs(h3, hsum2x4_i32(q4k_pair(p + r2, x, s2, 3), q4k_pair(p + r3, x, s3, 3)))), d, acc);
  }
  return f32x4.sub(acc, accm);
}

/** The f16 at byte `off` of four blocks `stride` bytes apart, as f32x4. */
@inline function f16x4_at(p: usize, stride: usize): v128 {
  let h = i32x4.splat(<i32>load<u16>(p));
  h = i32x4.replace_lane(h, 1, <i32>load<u16>(p + stride));
  h = i32x4.replace_lane(h, 2, <i32>load<u16>(p + 2 * stride));
  h = i32x4.replace_lane(h, 3, <i32>load<u16>(p + 3 * stride));
  return f16x4_to_f32x4(h);
}

/**
 * gemv_q4_K_8x8_q8_K for four rows (blocks as q4k_gemm_x4) and token t, one row a lane: per block,
 * acc = fma(f32(sumi), d*d8, acc) and accm = fma(f32(summ), dmin*d8, accm) as q4k_row_repacked (per 8) does for
 * one row; acc - accm.
 */
function q4k_gemv_x4(row0: usize, rowBytes: usize, blockStep: usize, nb: i32, qs: usize, ds: usize, bsums: usize, t: i32): v128 {
  let acc = f32x4.splat(0), accm = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const p = row0 + <usize>b * blockStep;
    const i = t * nb + b;
    const d8 = f32x4.splat(load<f32>(ds + (<usize>i << 2)));
    const x = qs + (<usize>i << 8), bs = bsums + (<usize>i << 6);
    const sumi = hsum4x4_i32(q4k_block_sums(p, x), q4k_block_sums(p + rowBytes, x), q4k_block_sums(p + 2 * rowBytes, x), q4k_block_sums(p + 3 * rowBytes, x));
    const q8s = q8k_pair_sums(bs);
    const summ = hsum4x4_i32(k4_mins_dot(p + 4, q8s), k4_mins_dot(p + rowBytes + 4, q8s), k4_mins_dot(p + 2 * rowBytes + 4, q8s), k4_mins_dot(p + 3 * rowBytes + 4, q8s));
    acc = fma4(f32x4.convert_i32x4_s(sumi), f32x4.mul(f16x4_at(p, rowBytes), d8), acc);
    accm = fma4(f32x4.convert_i32x4_s(summ), f32x4.mul(f16x4_at(p + 2, rowBytes), d8), accm);
  }
  return f32x4.sub(acc, accm);
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
 * One half (bytes `half`*16.. of each 32) of a Q6_K half-block (128 values: ql 64 bytes, qh 32, activations xs;
 * scales 0..3 in sA's i32 lanes and 4..7 in sB's, each i16 twice): sum over its 4 groups of scale * (u . x),
 * u = q + 32 (0..63), as four i32 lanes (exact). Group g (32 values) has scales 2g (half 0) and 2g+1 (half 1).
 * Bytes are unpacked with 16-bit shifts and a mask (WebAssembly has no 8-bit shift: i8x16.shr_u is two or three
 * instructions on x64); the high two bits of value 32j + l sit at bits 2j of qh[l]. `half` is a constant at each
 * call (constant shuffles).
 */
@inline function q6_quarter(ql: usize, qh: usize, xs: usize, sA: v128, sB: v128, half: i32): v128 {
  const m4 = i8x16.splat(0x0f), m30 = i8x16.splat(0x30);
  const o = <usize>(half << 4);
  const a = v128.load(ql + o), c = v128.load(ql + 32 + o), hb = v128.load(qh + o);
  const u0 = v128.or(v128.and(a, m4), v128.and(i16x8.shl(hb, 4), m30));
  let acc = k_quads_lanes(u0, v128.load(xs + o), lane32(sA, half));
  const u1 = v128.or(v128.and(c, m4), v128.and(i16x8.shl(hb, 2), m30));
  acc = i32x4.add(acc, k_quads_lanes(u1, v128.load(xs + 32 + o), lane32(sA, 2 + half)));
  const u2 = v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(hb, m30));
  acc = i32x4.add(acc, k_quads_lanes(u2, v128.load(xs + 64 + o), lane32(sB, half)));
  const u3 = v128.or(v128.and(i16x8.shr_u(c, 4), m4), v128.and(i16x8.shr_u(hb, 2), m30));
  return i32x4.add(acc, k_quads_lanes(u3, v128.load(xs + 96 + o), lane32(sB, 2 + half)));
}

/** ggml_vec_dot_q{4,5,6}_K_q8_K (AVX2) of one row with token t. */
@inline function k_row_vec_dot(kind: i32, row: usize, nb: i32, bb: usize, qs: usize, ds: usize, bsums: usize, t: i32): f32 {
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
      const sA = i8x16.shuffle(s8, s8, 0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7), sB = i8x16.shuffle(s8, s8, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15);
      const tA = i8x16.shuffle(t8, t8, 0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7), tB = i8x16.shuffle(t8, t8, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15);
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
          let v = s & 1 ? i8x16.shr_u(bt, 4) : v128.and(bt, i8x16.splat(0x0f));
          if (five) v = v128.or(v, i8x16.shl(v128.and(i8x16.shr_u(v128.load(p + 16 + o), <i32>s), i8x16.splat(1)), 4));
          const q = k_quads(v, v128.load(x + (<usize>s << 5) + o), sc);
          if (half) sHi = i32x4.add(sHi, q);
          else sLo = i32x4.add(sLo, q);
        }
      }
    }
    const d = f32x4.splat(d8 * f16_to_f32(load<u16>(p + (kind == 2 ? 208 : 0))));
    aLo = fma4(d, f32x4.convert_i32x4_s(sLo), aLo);
    aHi = fma4(d, f32x4.convert_i32x4_s(sHi), aHi);
    if (kind == 2) continue;
    // mins: sums of bsums pairs (q8s[j] = bsums[2j] + bsums[2j+1]) times the six-bit mins
    const dmin: f32 = -d8 * f16_to_f32(load<u16>(p + 2));
    const prod = k4_min_products(p + 4, bs);
    if (kind == 0) accM = fma4(f32x4.splat(dmin), f32x4.convert_i32x4_s(prod), accM);
    else summs = fma1(dmin, <f32>hsum_i32(prod), summs);
  }
  const h = hsum8(aLo, aHi);
  if (kind == 0) return h + ((f32x4.extract_lane(accM, 0) + f32x4.extract_lane(accM, 2)) + (f32x4.extract_lane(accM, 1) + f32x4.extract_lane(accM, 3)));
  if (kind == 1) return h + summs;
  return h;
}
