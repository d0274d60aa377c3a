// ---- activation rounding (what llama.cpp's CPU backend does to activations before each matmul) ----

/**
 * x (n f32) -> Q8_0 blocks: qs (n i8), ds (n/32 f32: the f16-rounded scale), sums (n/32 i32: sum of qs); and
 * when ss != 0, Q8_1's s (n/32 f32: d * sum, f16-rounded from the f32 d) for the Q4_1 and Q5_1 products.
 */
export function quantize_q8_0(x: usize, qs: usize, ds: usize, sums: usize, n: i32, ss: usize): void {
  const nb = n >> 5;
  for (let b = 0; b < nb; b++) {
    const p = x + (<usize>b << 7);
    let m = f32x4.abs(v128.load(p));
    for (let j = 1; j < 8; j++) m = f32x4.max(m, f32x4.abs(v128.load(p + (<usize>j << 4))));
    const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    const d: f32 = amax / 127.0;
    const id: f32 = amax != 0 ? <f32>127.0 / amax : 0;
    store<f32>(ds + (<usize>b << 2), f16_round(d));
    const vid = f32x4.splat(id);
    let s = i32x4.splat(0);
    for (let j = 0; j < 8; j += 2) {
      const a = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p + (<usize>j << 4)), vid)));
      const c = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p + (<usize>(j + 1) << 4)), vid)));
      s = i32x4.add(s, i32x4.add(a, c));
      const h = i16x8.narrow_i32x4_s(a, c);
      v128.store_lane<u64>(qs + (<usize>b << 5) + (<usize>j << 2), i8x16.narrow_i16x8_s(h, h), 0);
    }
    const sum = i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3);
    store<i32>(sums + (<usize>b << 2), sum);
    if (ss) store<f32>(ss + (<usize>b << 2), f16_round(d * <f32>sum));
  }
}

/** Round an f32 to the nearest f16 value (round to nearest even), returned as f32. */
@inline function f16_round(v: f32): f32 {
  const x = reinterpret<u32>(v);
  const e = <i32>((x >> 23) & 0xff);
  if (e == 0xff || e < 127 - 24) return e == 0xff ? v : reinterpret<f32>(x & 0x80000000);
  // exponent of the f16 result's last bit; subnormal f16s share exponent -24
  const ulpExp = max(e - 127 - 10, -24);
  const ulp = reinterpret<f32>(<u32>(ulpExp + 127) << 23);
  // x / ulp is exact (power of two), nearest() rounds half to even
  const r = nearest(v / ulp) * ulp;
  return abs(r) >= 65520.0 ? copysign<f32>(Infinity, v) : r;
}

/** In place: each value rounded to f16 (for F16 weights). */
export function round_f16(x: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(x + (<usize>i << 2), f16_round(load<f32>(x + (<usize>i << 2))));
}

/** In place: each value rounded to bf16, nearest even (for BF16 weights). */
export function round_bf16(x: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const p = x + (<usize>i << 2);
    const u = load<u32>(p);
    if ((u & 0x7fffffff) > 0x7f800000) continue;
    store<u32>(p, (u + (0x7fff + ((u >> 16) & 1))) & 0xffff0000);
  }
}

/**
 * ggml's quantize_row_q8_K (as quant-k.ts quantizeActivationsQ8_K, bit for bit): per 256 values at x, d = 1 /
 * iscale into ds (f32) with iscale = -127 / max (max: the first value of the largest magnitude), q = min(127,
 * nearest-even(iscale * x)) into qs, and the sums of each 16 q into bsums (i32); a block of zeros gives d = 0 and
 * zeros, one whose iscale overflows (every value below 127 / 2^128) d = -0 or 0 and zeros. n a multiple of 256.
 */
export function quantize_q8_k(x: usize, qs: usize, ds: usize, bsums: usize, n: i32): void {
  const nb = n >> 8;
  for (let b = 0; b < nb; b++) {
    const p = x + (<usize>b << 10), q = qs + (<usize>b << 8), bs = bsums + (<usize>b << 6);
    // pmax keeps its first operand where the second is NaN: NaNs are passed over, as quantizeActivationsQ8_K's `>`
    let m = f32x4.splat(0);
    for (let j = 0; j < 64; j++) m = f32x4.pmax(m, f32x4.abs(v128.load(p + (<usize>j << 4))));
    const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    if (amax == 0) {
      store<f32>(ds + (<usize>b << 2), 0);
      memory.fill(q, 0, 256);
      memory.fill(bs, 0, 64);
      continue;
    }
    // the first value whose magnitude is amax (its sign decides iscale's)
    let k = 0;
    while (abs(load<f32>(p + (<usize>k << 2))) != amax) k++;
    const iscale: f32 = <f32>-127.0 / load<f32>(p + (<usize>k << 2));
    if (!isFinite(iscale)) {
      // a block of values below 127 / 2^128: every q 0, as ggml's nearest_int and int8 store make them
      memory.fill(q, 0, 256);
      memory.fill(bs, 0, 64);
      store<f32>(ds + (<usize>b << 2), <f32>1.0 / iscale);
      continue;
    }
    const vs = f32x4.splat(iscale), cap = i32x4.splat(127);
    for (let j = 0; j < 16; j++) {
      // 16 values: four f32x4 to i32 (nearest, ties to even, as ggml's nearest_int), capped at 127, summed, narrowed
      const o = p + (<usize>j << 6);
      const a0 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(o), vs))), cap);
      const a1 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(o, 16), vs))), cap);
      const a2 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(o, 32), vs))), cap);
      const a3 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(o, 48), vs))), cap);
      const s = i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3));
      store<i32>(bs + (<usize>j << 2), (i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1)) + (i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3)));
      v128.store(q + (<usize>j << 4), i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(a0, a1), i16x8.narrow_i32x4_s(a2, a3)));
    }
    store<f32>(ds + (<usize>b << 2), <f32>1.0 / iscale);
  }
}

/**
 * The Q8_K quants of tokens 0..ntok - ntok % 4 (qs: cols per token) regrouped for the x4 prompt kernel
 * (kquant.ts q4k_x4_gemm4): per group of 4 tokens, per block, the four tokens' 256 quants one after another, so
 * that the kernel reads a group's activations through one pointer with every load at an immediate offset.
 */
export function q8k_interleave4(qs: usize, ntok: i32, cols: i32, out: usize): void {
  const nb = cols >> 8;
  for (let t = 0; t + 4 <= ntok; t += 4) {
    for (let b = 0; b < nb; b++) {
      const dst = out + ((<usize>(t * nb) + (<usize>b << 2)) << 8);
      for (let u = 0; u < 4; u++) memory.copy(dst + (<usize>u << 8), qs + <usize>((t + u) * cols) + (<usize>b << 8), 256);
    }
  }
}
