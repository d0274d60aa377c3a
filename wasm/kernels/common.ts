// ---- llama.cpp's summation orders (see src/engine/backend/ggml-order.ts for the scalar definitions) ----

/**
 * Whether f32x4.relaxed_madd rounds once (a fused multiply-add: V8 on CPUs with FMA) on this engine; set by
 * init_fused_madd. Where it does, the hot kernels use it instead of the exact f64 emulation below (same results).
 * Per instance: each thread's instance sets its own.
 */
export let fusedMadd = false;

/**
 * Probe relaxed_madd with a*b + c where rounding once and twice differ (the host passes a = 1 + 2^-23,
 * b = 1 - 2^-23, c = -1: fused gives -2^-46, unfused 0; arguments, not constants, so no compiler folds it) and
 * remember the answer. Returns whether the fused path is now on (never in the plain SIMD build).
 */
export function init_fused_madd(a: f32, b: f32, c: f32): bool {
  if (!ASC_FEATURE_RELAXED_SIMD) return false;
  const r = f32x4.extract_lane(f32x4.relaxed_madd(f32x4.splat(a), f32x4.splat(b), f32x4.splat(c)), 0);
  fusedMadd = r == <f32>(<f64>a * <f64>b + <f64>c) && r != a * b + c;
  return fusedMadd;
}

/** Back to the f64 emulation (tests run both paths). */
export function disable_fused_madd(): void {
  fusedMadd = false;
}

// ---- Vector constants, in memory ----
// V8 13 (Node 24; workerd's and Chrome's V8 are as new) rebuilds a v128 constant at each use inside a loop
// (`movq r, imm64; vmovq; vpunpcklqdq` for a splat, more for other patterns), where Node 22's V8 kept it in a
// register: three instructions for a mask that one `pand` uses. The kernels' loops load theirs from this table in
// the module's static data instead (the first page, which the host leaves to the module): one load from L1, often
// folded into the instruction that uses it. Measured on Node 24 (Zen 5, alternating builds, pinned), with fma4_t's
// change below: 1.12-1.61x by weight type (docs/performance.md, "Node 24"). kc(K_...) reads one.

/** i32 lanes of each 16-byte constant, at the K_ offsets below. */
const K = memory.data<u32>([
  0x0f0f0f0f, 0x0f0f0f0f, 0x0f0f0f0f, 0x0f0f0f0f, // K_0F
  0x30303030, 0x30303030, 0x30303030, 0x30303030, // K_30
  0x3f3f3f3f, 0x3f3f3f3f, 0x3f3f3f3f, 0x3f3f3f3f, // K_3F
  0x03030303, 0x03030303, 0x03030303, 0x03030303, // K_03
  0x01010101, 0x01010101, 0x01010101, 0x01010101, // K_01
  0x00010001, 0x00010001, 0x00010001, 0x00010001, // K_ONES16: i16 ones (pmaddwd's pairwise add)
  0x8fffe000, 0x8fffe000, 0x8fffe000, 0x8fffe000, // K_F16_MASK: f16x4_load_to_f32x4's sign and 13-bit shifted bits
  0x77800000, 0x77800000, 0x77800000, 0x77800000, // K_F16_SCALE: 2^112
  0x00007fff, 0x00007fff, 0x00007fff, 0x00007fff, // K_7FFF
  0x38000000, 0x38000000, 0x38000000, 0x38000000, // K_F16_BIAS: 112 << 23
  0x000003ff, 0x000003ff, 0x000003ff, 0x000003ff, // K_3FF
  0x33800000, 0x33800000, 0x33800000, 0x33800000, // K_2M24: 2^-24
  0x00007c00, 0x00007c00, 0x00007c00, 0x00007c00, // K_7C00
  0x00008000, 0x00008000, 0x00008000, 0x00008000, // K_8000
  0x0c0c0c0c, 0x0c0c0c0c, 0x0c0c0c0c, 0x0c0c0c0c, // K_0C
  0xc0c0c0c0, 0xc0c0c0c0, 0xc0c0c0c0, 0xc0c0c0c0, // K_C0
  // K_SCALE16 + 16s (s = 0..3): byte 4r + s in i16 lanes 2r, 2r+1 (0x80: zero), kquant.ts x4_scale16
  0x80008000, 0x80048004, 0x80088008, 0x800c800c,
  0x80018001, 0x80058005, 0x80098009, 0x800d800d,
  0x80028002, 0x80068006, 0x800a800a, 0x800e800e,
  0x80038003, 0x80078007, 0x800b800b, 0x800f800f,
  // K_LANE32 + 16j (j = 0..3): i32 lane j in every lane, for a swizzle
  0x03020100, 0x03020100, 0x03020100, 0x03020100,
  0x07060504, 0x07060504, 0x07060504, 0x07060504,
  0x0b0a0908, 0x0b0a0908, 0x0b0a0908, 0x0b0a0908,
  0x0f0e0d0c, 0x0f0e0d0c, 0x0f0e0d0c, 0x0f0e0d0c,
  // K_MINS16 + 16k (k = 0..1): bytes 4r + 2k and 4r + 2k + 1 in i16 lanes 2r and 2r+1, kquant.ts x4_mins16
  0x80018000, 0x80058004, 0x80098008, 0x800d800c,
  0x80038002, 0x80078006, 0x800b800a, 0x800f800e,
  // K_SCALE32 + 16s (s = 0..3): byte 4r + s in i32 lane r (0x80: zero), kquant.ts x4_scale_t
  0x80808000, 0x80808004, 0x80808008, 0x8080800c,
  0x80808001, 0x80808005, 0x80808009, 0x8080800d,
  0x80808002, 0x80808006, 0x8080800a, 0x8080800e,
  0x80808003, 0x80808007, 0x8080800b, 0x8080800f,
], 16);
export const K_0F = 0, K_30 = 16, K_3F = 32, K_03 = 48, K_01 = 64, K_ONES16 = 80, K_F16_MASK = 96, K_F16_SCALE = 112;
export const K_7FFF = 128, K_F16_BIAS = 144, K_3FF = 160, K_2M24 = 176, K_7C00 = 192, K_8000 = 208;
export const K_0C = 224, K_C0 = 240;
export const K_SCALE16 = 256, K_LANE32 = 320, K_MINS16 = 384, K_SCALE32 = 416;

/** The constant at offset `at` of the table (a K_ name, plus 16 times an index for K_SCALE16 and K_MINS16). */
@inline export function kc(at: i32): v128 {
  return v128.load(K + <usize>at);
}

/**
 * One f32 fused multiply-add per lane (a*b + c, rounded once), the path chosen at compile time: Acc = f32,
 * relaxed_madd (for kernels entered only where it is fused, `fusedMadd`); f64, exactly in f64 then rounded. Each
 * kernel picks Acc once at its entry (`if (fusedMadd) k<f32>(...) else k<f64>(...)`): a multiply-add that read
 * fusedMadd itself would cost a load and a branch per call, and V8 13 (Node 24) computed both paths and selected
 * between them, which made the K-quant products 1.1-1.4x and the f16 ones 1.9x slower there.
 */
@inline export function fma4_t<Acc>(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && sizeof<Acc>() == 4) return f32x4.relaxed_madd(a, b, c);
  const lo = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(a), f64x2.promote_low_f32x4(b)), f64x2.promote_low_f32x4(c));
  const a2 = v128.shuffle<f32>(a, a, 2, 3, 0, 1);
  const b2 = v128.shuffle<f32>(b, b, 2, 3, 0, 1);
  const c2 = v128.shuffle<f32>(c, c, 2, 3, 0, 1);
  const hi = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(a2), f64x2.promote_low_f32x4(b2)), f64x2.promote_low_f32x4(c2));
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/** Scalar f32 fused multiply-add. */
@inline export function fma1(a: f32, b: f32, c: f32): f32 {
  return <f32>(<f64>a * <f64>b + <f64>c);
}

/** hsum_float_8 of lanes lo = l0..l3, hi = l4..l7: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). */
@inline export function hsum8(lo: v128, hi: v128): f32 {
  const r = f32x4.add(lo, hi);
  return (f32x4.extract_lane(r, 0) + f32x4.extract_lane(r, 2)) + (f32x4.extract_lane(r, 1) + f32x4.extract_lane(r, 3));
}

/** GGML_F32x8_REDUCE of 4 x 8 lanes (a0..a3 low/high halves), then hadd twice. */
@inline export function reduce32(a0l: v128, a0h: v128, a1l: v128, a1h: v128, a2l: v128, a2h: v128, a3l: v128, a3h: v128): f32 {
  const xl = f32x4.add(f32x4.add(a0l, a2l), f32x4.add(a1l, a3l));
  const xh = f32x4.add(f32x4.add(a0h, a2h), f32x4.add(a1h, a3h));
  const t = f32x4.add(xl, xh);
  return (f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1)) + (f32x4.extract_lane(t, 2) + f32x4.extract_lane(t, 3));
}

@inline export function hsum_i32(v: v128): i32 {
  return i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3);
}

/**
 * f16 bits -> f32, exact for finite values (the exponent 31 of infinities and NaNs reads as 2^16, as it always has
 * here: no weight or cache value has one). No arithmetic on subnormal f32 values: normal f16 values are rebuilt as
 * bits, subnormal ones (mantissa * 2^-24) by one normal multiply. The earlier `bits * 2^112` took a subnormal f32
 * operand for every f16 below 2^-14, which x64 handles in microcode (~100 cycles): Q6_K's block scales d are that
 * small for weights of the usual magnitudes (d = max scale / 128), and the conversion was 60% of a Q6_K product.
 */
@inline export function f16_to_f32(h: u32): f32 {
  const normal = reinterpret<f32>(((h & 0x7fff) << 13) + (<u32>112 << 23));
  const sub = <f32>(h & 0x3ff) * reinterpret<f32>(<u32>(127 - 24) << 23);
  const v = select<f32>(normal, sub, (h & 0x7c00) != 0);
  return reinterpret<f32>(reinterpret<u32>(v) | ((h & 0x8000) << 16));
}

/** 4 f16 bit patterns (low 16 bits of each i32 lane) -> 4 f32, as f16_to_f32. */
@inline export function f16x4_to_f32x4(h: v128): v128 {
  const normal = i32x4.add(i32x4.shl(v128.and(h, kc(K_7FFF)), 13), kc(K_F16_BIAS));
  const sub = f32x4.mul(f32x4.convert_i32x4_s(v128.and(h, kc(K_3FF))), kc(K_2M24));
  const isSub = i32x4.eq(v128.and(h, kc(K_7C00)), i32x4.splat(0));
  return v128.or(v128.bitselect(sub, normal, isSub), i32x4.shl(v128.and(h, kc(K_8000)), 16));
}

/**
 * The 4 f16 values at p as f32x4, in three operations after the load: the f16 bits moved into f32 position and
 * multiplied by 2^112. Exact for every finite value (exponent 31 reads as 2^16, as f16x4_to_f32x4), but a
 * subnormal f16 is a subnormal f32 operand of the multiply, which x64 handles in microcode (~100 cycles): for
 * scales that are normal in practice (Q4_0's d = amax / 8 is subnormal only below amax ~4.9e-4), where
 * f16x4_to_f32x4's dozen operations would be a fifth of a one-token product.
 */
@inline export function f16x4_load_to_f32x4(p: usize): v128 {
  return f32x4.mul(v128.and(i32x4.shl(v128.load16x4_s(p), 13), kc(K_F16_MASK)), kc(K_F16_SCALE));
}

/**
 * The x4 layouts' product (q4_0_x4.ts, kquant.ts: 4 bytes of each of 4 rows side by side): weight vector w (values
 * 0..15 in the relaxed build; any i8 in the plain one) times the four activations at x broadcast to the four
 * lanes. Relaxed build, i16 pair sums (lanes 2r, 2r+1 of row r; eight of them added stay within i16 for 4-bit
 * weights: 8 * 2 * 15 * 128 < 2^15); plain build, i32 lane r. x4_add adds such partial sums.
 */
@inline export function x4_dot(w: v128, x: usize): v128 {
  return x4_dotv(w, v128.load32_splat(x));
}
/** x4_dot with the four activations already in every lane (xv: a load32_splat at an immediate offset, or a shuffle). */
@inline export function x4_dotv(w: v128, xv: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(xv, w);
  return quads_i8(w, xv);
}
/**
 * Lane j of v (any 32-bit lanes) in all four lanes, j not a constant: a swizzle by a table vector (one `pshufb`).
 * Kernels that step through a vector's lanes in a loop use it (a loop of one block kept V8 from spilling the
 * accumulators that an unrolled four-block body spilled).
 */
@inline export function lane_at(v: v128, j: i32): v128 {
  const sel = kc(K_LANE32 + (j << 4));
  return ASC_FEATURE_RELAXED_SIMD ? i8x16.relaxed_swizzle(v, sel) : i8x16.swizzle(v, sel);
}
/** Lane j (0..3) of v in all four lanes: one `pshufd`. */
@inline export function lane4(v: v128, j: i32): v128 {
  return j == 0 ? i32x4.shuffle(v, v, 0, 0, 0, 0) : j == 1 ? i32x4.shuffle(v, v, 1, 1, 1, 1) : j == 2 ? i32x4.shuffle(v, v, 2, 2, 2, 2) : i32x4.shuffle(v, v, 3, 3, 3, 3);
}
@inline export function x4_add(a: v128, b: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? i16x8.add(a, b) : i32x4.add(a, b);
}

/** Sums of 4 consecutive products of two 16-byte i8 vectors: [q0..q3] (elements 0-3, 4-7, 8-11, 12-15). */
@inline export function quads_i8(a: v128, b: v128): v128 {
  const d0 = i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), i16x8.extend_low_i8x16_s(b)); //  pairs of 0..7
  const d1 = i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), i16x8.extend_high_i8x16_s(b)); // pairs of 8..15
  return i32x4.add(v128.shuffle<i32>(d0, d1, 0, 2, 4, 6), v128.shuffle<i32>(d0, d1, 1, 3, 5, 7));
}

/** f32 -> f16 bits, round to nearest even (NaN stays NaN, overflow to infinity), as numeric.ts f32ToF16. */
@inline export function f32_to_f16_bits(v: f32): u32 {
  const x = reinterpret<u32>(v);
  const sign = (x >> 16) & 0x8000;
  const exp = <i32>((x >> 23) & 0xff);
  let mant = x & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = <u32>(14 - e);
    const half: u32 = 1 << (shift - 1);
    const rem = mant & ((<u32>1 << shift) - 1);
    let h = mant >> shift;
    if (rem > half || (rem == half && (h & 1))) h++;
    return sign | h;
  }
  let h = (<u32>e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return sign | h;
}

/**
 * f32_to_f16_bits of four non-NaN values (round to nearest even; infinity past f16's range): f16-normal results by
 * rounding the f32 bits at bit 13 (ties to even by the kept bit); f16-subnormal ones (and zeros) by one f32 addition
 * of 0.5, whose ulp (2^-24) is the f16 subnormal step, so that the sum's low bits are the f16 mantissa, rounded to
 * even by the addition itself.
 */
@inline export function f16x4_bits(x: v128): v128 {
  const sign = v128.and(x, i32x4.splat(0x80000000));
  const f = v128.xor(x, sign);
  // normal: f + (15 - 127 << 23) + 0xfff + (bit 13 of f), then >> 13; at or past 65520 (f >= 0x477ff000) that
  // reaches 0x7c00 or more: infinity
  const odd = v128.and(i32x4.shr_u(f, 13), i32x4.splat(1));
  let nrm = i32x4.shr_u(i32x4.add(i32x4.add(f, i32x4.splat(((15 - 127) << 23) + 0xfff)), odd), 13);
  nrm = v128.bitselect(i32x4.splat(0x7c00), nrm, i32x4.ge_u(f, i32x4.splat(0x47800000)));
  // subnormal or zero (|x| < 2^-14): the bits of |x| + 0.5, minus 0.5's
  const magic = i32x4.splat(((127 - 15) + (23 - 10) + 1) << 23);
  const sub = i32x4.sub(f32x4.add(f, magic), magic);
  const h = v128.bitselect(sub, nrm, i32x4.lt_u(f, i32x4.splat(0x38800000)));
  return v128.or(h, i32x4.shr_u(sign, 16));
}
