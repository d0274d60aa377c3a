// WebAssembly SIMD matrix kernels (AssemblyScript). Built twice by wasm/build.js: with relaxed SIMD
// (i16x8.relaxed_dot_i8x16_i7x16_s for the quantized products, f32x4.relaxed_madd where it is a fused multiply-add)
// and with plain SIMD128 only; ASC_FEATURE_RELAXED_SIMD picks the code path at compile time. No allocator and one
// global (fusedMadd, set per instance by init_fused_madd): every kernel works on pointers into the memory the host
// imports, so one instance serves one model and many instances can coexist.
//
// Every kernel has a plain twin in src/engine/backend/reference.ts and is tested against it. Matrix kernels
// write out[t*ostride + r] for token t and row r: a host splitting rows across threads passes the full row count
// as ostride and each range's own rows.

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

// ---- llama.cpp's summation orders (see src/engine/backend/ggml-order.ts for the scalar definitions) ----

/**
 * Whether f32x4.relaxed_madd rounds once (a fused multiply-add: V8 on CPUs with FMA) on this engine; set by
 * init_fused_madd. Where it does, the hot kernels use it instead of the exact f64 emulation below (same results).
 * Per instance: each thread's instance sets its own.
 */
let fusedMadd = false;

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

/** One f32 fused multiply-add per lane (a*b + c, rounded once): relaxed_madd where fused, else exactly in f64 then rounded. */
@inline function fma4(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD && fusedMadd) return f32x4.relaxed_madd(a, b, c);
  const lo = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(a), f64x2.promote_low_f32x4(b)), f64x2.promote_low_f32x4(c));
  const a2 = v128.shuffle<f32>(a, a, 2, 3, 0, 1);
  const b2 = v128.shuffle<f32>(b, b, 2, 3, 0, 1);
  const c2 = v128.shuffle<f32>(c, c, 2, 3, 0, 1);
  const hi = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(a2), f64x2.promote_low_f32x4(b2)), f64x2.promote_low_f32x4(c2));
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/** Scalar f32 fused multiply-add. */
@inline function fma1(a: f32, b: f32, c: f32): f32 {
  return <f32>(<f64>a * <f64>b + <f64>c);
}

/** hsum_float_8 of lanes lo = l0..l3, hi = l4..l7: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). */
@inline function hsum8(lo: v128, hi: v128): f32 {
  const r = f32x4.add(lo, hi);
  return (f32x4.extract_lane(r, 0) + f32x4.extract_lane(r, 2)) + (f32x4.extract_lane(r, 1) + f32x4.extract_lane(r, 3));
}

/** GGML_F32x8_REDUCE of 4 x 8 lanes (a0..a3 low/high halves), then hadd twice. */
@inline function reduce32(a0l: v128, a0h: v128, a1l: v128, a1h: v128, a2l: v128, a2h: v128, a3l: v128, a3h: v128): f32 {
  const xl = f32x4.add(f32x4.add(a0l, a2l), f32x4.add(a1l, a3l));
  const xh = f32x4.add(f32x4.add(a0h, a2h), f32x4.add(a1h, a3h));
  const t = f32x4.add(xl, xh);
  return (f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1)) + (f32x4.extract_lane(t, 2) + f32x4.extract_lane(t, 3));
}

@inline function hsum_i32(v: v128): i32 {
  return i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3);
}

@inline function f16_to_f32(h: u32): f32 {
  return reinterpret<f32>(((h & 0x7fff) << 13)) * reinterpret<f32>(<u32>(112 + 127) << 23) * (h & 0x8000 ? -1 : 1);
}

/** 4 f16 bit patterns (low 16 bits of each i32 lane) -> 4 f32 (exact for finite values). */
@inline function f16x4_to_f32x4(h: v128): v128 {
  const mag = f32x4.mul(i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13), f32x4.splat(reinterpret<f32>(<u32>(112 + 127) << 23)));
  return v128.or(mag, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** Sums of 4 consecutive products of two 16-byte i8 vectors: [q0..q3] (elements 0-3, 4-7, 8-11, 12-15). */
@inline function quads_i8(a: v128, b: v128): v128 {
  const d0 = i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), i16x8.extend_low_i8x16_s(b)); //  pairs of 0..7
  const d1 = i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), i16x8.extend_high_i8x16_s(b)); // pairs of 8..15
  return i32x4.add(v128.shuffle<i32>(d0, d1, 0, 2, 4, 6), v128.shuffle<i32>(d0, d1, 1, 3, 5, 7));
}

// ---- quantized matrices x Q8_0 activations (from quantize_q8_0) ----

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

/** Q8_0 weights (34-byte blocks): vec_dot_q8_0_q8_0 / tinyBLAS_Q0_AVX order (8 lanes of 4 products). */
export function matmul_q8_0(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 5;
  for (let t = 0; t < ntok; t++) {
    const xq = qs + <usize>(t * cols);
    const xd = ds + (<usize>(t * nb) << 2);
    for (let r = 0; r < rows; r++) {
      let lo = f32x4.splat(0);
      let hi = f32x4.splat(0);
      let p = w + <usize>r * <usize>(nb * 34);
      for (let b = 0; b < nb; b++, p += 34) {
        const d = f32x4.splat(f16_to_f32(load<u16>(p)) * load<f32>(xd + (<usize>b << 2)));
        lo = fma4(d, f32x4.convert_i32x4_s(quads_i8(v128.load(p + 2), v128.load(xq + (<usize>b << 5)))), lo);
        hi = fma4(d, f32x4.convert_i32x4_s(quads_i8(v128.load(p + 18), v128.load(xq + (<usize>b << 5) + 16))), hi);
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), hsum8(lo, hi));
    }
  }
}

// ---- f16 / bf16 / f32 matrices x f32 activations (already rounded to the weight type) ----

/** 8 weight values starting at element i of a row, as two f32x4 (kind 0: f32, 1: f16, 2: bf16). */
@inline function load8(p: usize, i: i32, kind: i32, second: bool): v128 {
  if (kind == 0) return v128.load(p + (<usize>i << 2) + (second ? 16 : 0));
  const h = v128.load(p + (<usize>i << 1));
  const wide = second ? i32x4.extend_high_i16x8_u(h) : i32x4.extend_low_i16x8_u(h);
  return kind == 1 ? f16x4_to_f32x4(wide) : i32x4.shl(wide, 16);
}

/**
 * out[t*ostride + r] = dot(row r, x_t). `tiny` != 0: tinyBLAS (8 lanes fused over steps of 8, then hsum8; needs
 * cols % 8 == 0); otherwise ggml_vec_dot_f16/f32 (32 lanes fused over steps of 32, GGML_F32x8_REDUCE, the
 * cols % 32 leftover products added after: in double for f16, fused for f32) or ggml_vec_dot_bf16 (32 lanes of
 * separate multiply and add).
 */
function matmul_float(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, kind: i32, tiny: i32): void {
  const rowBytes = <usize>cols << (kind == 0 ? 2 : 1);
  for (let t = 0; t < ntok; t++) {
    const xt = x + (<usize>(t * cols) << 2);
    for (let r = 0; r < rows; r++) {
      const p = w + <usize>r * rowBytes;
      let res: f32;
      if (tiny) {
        let lo = f32x4.splat(0);
        let hi = f32x4.splat(0);
        for (let i = 0; i < cols; i += 8) {
          lo = fma4(load8(p, i, kind, false), v128.load(xt + (<usize>i << 2)), lo);
          hi = fma4(load8(p, i, kind, true), v128.load(xt + (<usize>i << 2) + 16), hi);
        }
        res = hsum8(lo, hi);
      } else {
        let a0l = f32x4.splat(0), a0h = f32x4.splat(0), a1l = f32x4.splat(0), a1h = f32x4.splat(0);
        let a2l = f32x4.splat(0), a2h = f32x4.splat(0), a3l = f32x4.splat(0), a3h = f32x4.splat(0);
        const np = cols & ~31;
        for (let i = 0; i < np; i += 32) {
          const x0 = xt + (<usize>i << 2);
          if (kind == 2) {
            a0l = f32x4.add(f32x4.mul(load8(p, i, kind, false), v128.load(x0)), a0l);
            a0h = f32x4.add(f32x4.mul(load8(p, i, kind, true), v128.load(x0 + 16)), a0h);
            a1l = f32x4.add(f32x4.mul(load8(p, i + 8, kind, false), v128.load(x0 + 32)), a1l);
            a1h = f32x4.add(f32x4.mul(load8(p, i + 8, kind, true), v128.load(x0 + 48)), a1h);
            a2l = f32x4.add(f32x4.mul(load8(p, i + 16, kind, false), v128.load(x0 + 64)), a2l);
            a2h = f32x4.add(f32x4.mul(load8(p, i + 16, kind, true), v128.load(x0 + 80)), a2h);
            a3l = f32x4.add(f32x4.mul(load8(p, i + 24, kind, false), v128.load(x0 + 96)), a3l);
            a3h = f32x4.add(f32x4.mul(load8(p, i + 24, kind, true), v128.load(x0 + 112)), a3h);
          } else {
            a0l = fma4(load8(p, i, kind, false), v128.load(x0), a0l);
            a0h = fma4(load8(p, i, kind, true), v128.load(x0 + 16), a0h);
            a1l = fma4(load8(p, i + 8, kind, false), v128.load(x0 + 32), a1l);
            a1h = fma4(load8(p, i + 8, kind, true), v128.load(x0 + 48), a1h);
            a2l = fma4(load8(p, i + 16, kind, false), v128.load(x0 + 64), a2l);
            a2h = fma4(load8(p, i + 16, kind, true), v128.load(x0 + 80), a2h);
            a3l = fma4(load8(p, i + 24, kind, false), v128.load(x0 + 96), a3l);
            a3h = fma4(load8(p, i + 24, kind, true), v128.load(x0 + 112), a3h);
          }
        }
        if (kind == 2) {
          // (c1+c3)+(c2+c4), high half + low half, then (g0+g2)+(g1+g3)
          const cl = f32x4.add(f32x4.add(a0l, a2l), f32x4.add(a1l, a3l));
          const ch = f32x4.add(f32x4.add(a0h, a2h), f32x4.add(a1h, a3h));
          const g = f32x4.add(ch, cl);
          res = (f32x4.extract_lane(g, 0) + f32x4.extract_lane(g, 2)) + (f32x4.extract_lane(g, 1) + f32x4.extract_lane(g, 3));
        } else {
          res = reduce32(a0l, a0h, a1l, a1h, a2l, a2h, a3l, a3h);
        }
        if (kind == 0) {
          for (let i = np; i < cols; i++) res = fma1(load<f32>(p + (<usize>i << 2)), load<f32>(xt + (<usize>i << 2)), res);
        } else {
          let sum = <f64>res;
          for (let i = np; i < cols; i++) {
            const h = <u32>load<u16>(p + (<usize>i << 1));
            const wv: f32 = kind == 1 ? f16_to_f32(h) : reinterpret<f32>(h << 16);
            sum += <f64>(wv * load<f32>(xt + (<usize>i << 2)));
          }
          res = <f32>sum;
        }
      }
      store<f32>(out + (<usize>(t * ostride + r) << 2), res);
    }
  }
}

export function matmul_f32(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, tiny: i32): void {
  matmul_float(w, rows, cols, x, ntok, out, ostride, 0, tiny);
}
export function matmul_f16(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, tiny: i32): void {
  matmul_float(w, rows, cols, x, ntok, out, ostride, 1, tiny);
}
export function matmul_bf16(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize, ostride: i32, tiny: i32): void {
  matmul_float(w, rows, cols, x, ntok, out, ostride, 2, tiny);
}

// ---- Q4_0 in groups of 4 rows ("x4"), repacked at load time: the layout of the fast kernel ----
//   per group of 4 rows, per block b: 4 x f16 scales (8 bytes) | 4 x 16 nibble bytes (64 bytes) = 72 bytes,
//   the same size as the 4 original 18-byte blocks, so the repacking happens in place.

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

// ---- K-quant matrices (Q4_K, Q5_K, Q6_K: 256-value super-blocks) x Q8_K activations ----

/**
 * The 8 six-bit scales (byte k = sub-block k) of a Q4_K/Q5_K block whose 12 packed scale bytes are at q: the
 * kmask shuffle of the AVX2 kernels (get_scale_min_k4 for all eight at once).
 */
@inline function k4_scales(q: usize): i64 {
  const u0 = load<u32>(q), u2 = load<u32>(q + 8);
  return <i64>(u0 & 0x3f3f3f3f) | (<i64>((u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4)) << 32);
}

/**
 * The block's mins times its activations' sums, as the AVX2 kernels pair them: lane k (i32) = min[2k] * q8s[2k] +
 * min[2k+1] * q8s[2k+1], q8s[j] = bsums[2j] + bsums[2j+1] (16 i32 sums at bs; each fits i16).
 */
@inline function k4_min_products(q: usize, bs: usize): v128 {
  const u1 = load<u32>(q + 4), u2 = load<u32>(q + 8);
  const mins = <i64>(u1 & 0x3f3f3f3f) | (<i64>(((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4)) << 32);
  const b0 = v128.load(bs), b1 = v128.load(bs + 16), b2 = v128.load(bs + 32), b3 = v128.load(bs + 48);
  const q8s = i16x8.narrow_i32x4_s(
    i32x4.add(v128.shuffle<i32>(b0, b1, 0, 2, 4, 6), v128.shuffle<i32>(b0, b1, 1, 3, 5, 7)),
    i32x4.add(v128.shuffle<i32>(b2, b3, 0, 2, 4, 6), v128.shuffle<i32>(b2, b3, 1, 3, 5, 7)));
  return i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(i64x2.splat(mins)), q8s);
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
 * K-quant weights (kind 0 Q4_K, 1 Q5_K, 2 Q6_K; rows of cols/256 blocks) x Q8_K activations (per token: qs cols
 * i8, ds cols/256 f32, bsums cols/16 i32), in llama.cpp's orders as quant-k.ts dotKRow (kOrder): `repacked` (Q4_K,
 * rows % 8 == 0; 1: a batch, 2: single-token rows) gemm's or gemv's, otherwise vec_dot_q{4,5,6}_K_q8_K's.
 */
export function matmul_k(kind: i32, repacked: i32, w: usize, rows: i32, cols: i32, qs: usize, ds: usize, bsums: usize, ntok: i32, out: usize, ostride: i32): void {
  const nb = cols >> 8;
  const bb: usize = kind == 0 ? 144 : kind == 1 ? 176 : 210;
  // repacked 1: whole groups of 4 tokens take gemm's order, the rest gemv's; 2: every token gemv's (single-token rows)
  const gemmTokens = repacked == 1 ? ntok - (ntok & 3) : 0;
  for (let r = 0; r < rows; r++) {
    const row = w + <usize>r * <usize>nb * bb;
    for (let t = 0; t < ntok; t++) {
      const v = repacked ? q4k_row_repacked(row, nb, qs, ds, bsums, t, t < gemmTokens ? 2 : 8) : k_row_vec_dot(kind, row, nb, bb, qs, ds, bsums, t);
      store<f32>(out + (<usize>(t * ostride + r) << 2), v);
    }
  }
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

/** 32 * (bsums[2m] * sc[2m] + bsums[2m+1] * sc[2m+1]) for 4 lanes m from 8 sums (i32, at bs) and 8 int8 scales (at sc). */
@inline function q6_offsets(bs: usize, sc: usize): v128 {
  const s = i16x8.extend_low_i8x16_s(v128.load64_zero(sc));
  const p0 = i32x4.mul(v128.load(bs), i32x4.extend_low_i16x8_s(s));
  const p1 = i32x4.mul(v128.load(bs + 16), i32x4.extend_high_i16x8_s(s));
  return i32x4.shl(i32x4.add(v128.shuffle<i32>(p0, p1, 0, 2, 4, 6), v128.shuffle<i32>(p0, p1, 1, 3, 5, 7)), 5);
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
      // Q6_K: the unsigned values q + 32, group g (32 values) with scales 2g (lanes 0-3) and 2g+1 (lanes 4-7)
      const m4 = i8x16.splat(0x0f), m3 = i8x16.splat(3);
      for (let h = 0; h < 2; h++) {
        const ql = p + (<usize>h << 6), qh = p + 128 + (<usize>h << 5), xs = x + (<usize>h << 7), sc = p + 192 + (<usize>h << 3);
        for (let half = 0; half < 2; half++) {
          const o = <usize>(half << 4);
          const a = v128.load(ql + o), c = v128.load(ql + 32 + o), hb = v128.load(qh + o);
          const u0 = v128.or(v128.and(a, m4), i8x16.shl(v128.and(hb, m3), 4));
          const u1 = v128.or(v128.and(c, m4), i8x16.shl(v128.and(i8x16.shr_u(hb, 2), m3), 4));
          const u2 = v128.or(i8x16.shr_u(a, 4), i8x16.shl(v128.and(i8x16.shr_u(hb, 4), m3), 4));
          const u3 = v128.or(i8x16.shr_u(c, 4), i8x16.shl(i8x16.shr_u(hb, 6), 4));
          const s0 = k_quads(u0, v128.load(xs + o), <i32>load<i8>(sc + half));
          const s1 = k_quads(u1, v128.load(xs + 32 + o), <i32>load<i8>(sc + 2 + half));
          const s2 = k_quads(u2, v128.load(xs + 64 + o), <i32>load<i8>(sc + 4 + half));
          const s3 = k_quads(u3, v128.load(xs + 96 + o), <i32>load<i8>(sc + 6 + half));
          const sum = i32x4.add(i32x4.add(s0, s1), i32x4.add(s2, s3));
          if (half) sHi = i32x4.add(sHi, sum);
          else sLo = i32x4.add(sLo, sum);
        }
      }
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

// ---- GeGLU ----

/** f32 -> f16 bits, round to nearest even (NaN stays NaN, overflow to infinity), as numeric.ts f32ToF16. */
function f32_to_f16_bits(v: f32): u32 {
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
 * out[i] = gelu(gate[i]) * up[i], n values, as model/ops.ts geglu (ggml_vec_geglu_f32): gelu from ggml's table of
 * 65536 f16 inputs (f32 values at `table`), 0 at or below -10, x at or above 10. out may be gate.
 */
export function geglu(out: usize, gate: usize, up: usize, n: i32, table: usize): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const x = load<f32>(gate + o);
    const g: f32 = x <= -10 ? 0 : x >= 10 ? x : load<f32>(table + (<usize>f32_to_f16_bits(x) << 2));
    store<f32>(out + o, g * load<f32>(up + o));
  }
}

// ---- attention of one query head over the f16 KV cache: ggml's CPU flash attention, one_chunk path ----

// glibc's expf (ARM optimized-routines, evaluated in double), as src/engine/numeric.ts
const EXP2F_TAB: StaticArray<u64> = [
  0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b, 0x3fef54873168b9aa,
  0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
  0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74,
  0x3feea11473eb0187, 0x3feea589994cce13, 0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
  0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
  0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
];

function glibc_expf(x: f32): f32 {
  if (isNaN(x)) return x;
  if (x > <f32>88.72283172607422) return Infinity;
  if (x < <f32>-103.97207641601562) return 0;
  const z: f64 = reinterpret<f64>(0x3ff71547652b82fe) * 32.0 * <f64>x;
  const shift: f64 = 6755399441055744.0; // 0x1.8p52
  const kd0 = z + shift;
  const ki = reinterpret<u64>(kd0);
  const kd = kd0 - shift;
  const r = z - kd;
  const s = reinterpret<f64>(unchecked(EXP2F_TAB[<i32>(ki & 31)]) + (ki << 47));
  const c0 = reinterpret<f64>(0x3fac6af84b912394) / 32768.0;
  const c1 = reinterpret<f64>(0x3fcebfce50fac4f3) / 1024.0;
  const c2 = reinterpret<f64>(0x3fe62e42ff0c52d6) / 32.0;
  const p = c0 * r + c1;
  const y = p * (r * r) + (c2 * r + 1.0);
  return <f32>(y * s);
}

/** Each lane rounded to the nearest f16 value (nearest even), overflow to infinity, as F16C's vcvtps2ph. */
@inline function f16_round4(x: v128): v128 {
  const abs = v128.and(x, i32x4.splat(0x7fffffff));
  const sign = v128.and(x, i32x4.splat(0x80000000));
  // normal f16 range: round the f32 mantissa to 10 bits
  const odd = v128.and(i32x4.shr_u(abs, 13), i32x4.splat(1));
  let normal = v128.and(i32x4.add(abs, i32x4.add(i32x4.splat(0xfff), odd)), i32x4.splat(0xffffe000));
  normal = v128.bitselect(i32x4.splat(0x7f800000), normal, i32x4.gt_u(normal, i32x4.splat(0x477fe000)));
  // subnormal f16 range (|x| < 2^-14): multiples of 2^-24, by adding and removing 0.5 in f32
  const sub = f32x4.sub(f32x4.add(abs, f32x4.splat(0.5)), f32x4.splat(0.5));
  let r = v128.bitselect(sub, normal, i32x4.lt_u(abs, i32x4.splat(0x38800000)));
  r = v128.bitselect(abs, r, i32x4.ge_u(abs, i32x4.splat(0x7f800000))); // inf and NaN stay
  return v128.or(r, sign);
}

/**
 * out (d f32) = attention of query q (d f32) over positions 0..n-1 of f16 caches k, v; position p of this KV head
 * at element p*stride + offset. q is rounded to f16; scores by ggml_vec_dot_f16 (32 lanes; f16 products are exact in
 * f32, so multiply-then-add is the fused multiply-add); online softmax with glibc's expf; the V sum accumulated in f16
 * (a fused multiply-add per element, then rounding to f16). `scratch` holds 2*d f32. d % 4 == 0.
 */
// glibc's expm1f and tanhf (2.36, Sun's fdlibm in f32), as src/engine/numeric.ts: Gemma 2's soft-capping
function glibc_expm1f(x: f32): f32 {
  let hx = reinterpret<i32>(x);
  const neg = hx < 0;
  hx &= 0x7fffffff;
  if (hx >= 0x4195b844) {
    if (hx >= 0x42b17218) {
      if (hx > 0x7f800000) return x;
      if (hx == 0x7f800000) return neg ? -1 : x;
      if (x > <f32>88.72167969) return Infinity;
    }
    if (neg) return -1;
  }
  let k: i32 = 0;
  let c: f32 = 0;
  if (hx > 0x3eb17218) {
    let hi: f32, lo: f32;
    if (hx < 0x3f851592) {
      if (!neg) { hi = x - reinterpret<f32>(0x3f317180); lo = reinterpret<f32>(0x3717f7d1); k = 1; }
      else { hi = x + reinterpret<f32>(0x3f317180); lo = -reinterpret<f32>(0x3717f7d1); k = -1; }
    } else {
      k = <i32>(reinterpret<f32>(0x3fb8aa3b) * x + (neg ? <f32>-0.5 : <f32>0.5));
      const t = <f32>k;
      hi = x - t * reinterpret<f32>(0x3f317180);
      lo = t * reinterpret<f32>(0x3717f7d1);
    }
    x = hi - lo;
    c = (hi - x) - lo;
  } else if (hx < 0x33000000) {
    return x;
  }
  const hfx: f32 = <f32>0.5 * x;
  const hxs: f32 = x * hfx;
  const q1 = reinterpret<f32>(0xbd088889), q2 = reinterpret<f32>(0x3ad00d01), q3 = reinterpret<f32>(0xb8a670cd);
  const q4 = reinterpret<f32>(0x36867e54), q5 = reinterpret<f32>(0xb457edbb);
  const r1: f32 = <f32>1 + hxs * (q1 + hxs * (q2 + hxs * (q3 + hxs * (q4 + hxs * q5))));
  const t: f32 = <f32>3 - r1 * hfx;
  let e: f32 = hxs * ((r1 - t) / (<f32>6 - x * t));
  if (k == 0) return x - (x * e - hxs);
  e = x * (e - c) - c;
  e -= hxs;
  if (k == -1) return <f32>0.5 * (x - e) - <f32>0.5;
  if (k == 1) return x < <f32>-0.25 ? <f32>-2 * (e - (x + <f32>0.5)) : <f32>1 + <f32>2 * (x - e);
  if (k <= -2 || k > 56) {
    let y: f32 = <f32>1 - (e - x);
    y = k == 128 ? y * <f32>2 * reinterpret<f32>(0x7f000000) : reinterpret<f32>(reinterpret<i32>(y) + (k << 23));
    return y - <f32>1;
  }
  let y: f32;
  if (k < 23) {
    y = reinterpret<f32>(0x3f800000 - (0x1000000 >> k)) - (e - x);
  } else {
    y = x - (e + reinterpret<f32>((0x7f - k) << 23));
    y += <f32>1;
  }
  return reinterpret<f32>(reinterpret<i32>(y) + (k << 23));
}

function glibc_tanhf(x: f32): f32 {
  const jx = reinterpret<i32>(x);
  const ix = jx & 0x7fffffff;
  if (ix >= 0x7f800000) return isNaN(x) ? x : jx >= 0 ? <f32>1 : <f32>-1;
  let z: f32;
  if (ix < 0x41b00000) {
    if (ix == 0) return x;
    if (ix < 0x24000000) return x * (<f32>1 + x);
    if (ix >= 0x3f800000) {
      const t = glibc_expm1f(<f32>2 * abs<f32>(x));
      z = <f32>1 - <f32>2 / (t + <f32>2);
    } else {
      const t = glibc_expm1f(<f32>-2 * abs<f32>(x));
      z = -t / (t + <f32>2);
    }
  } else z = 1;
  return jx >= 0 ? z : -z;
}

/** A score soft-capped as ggml's flash attention does it: cap * tanhf(s * (1 / cap)); cap 0: unchanged. */
// @ts-ignore: decorator
@inline function softcap_score(s: f32, cap: f32): f32 {
  return cap == 0 ? s : cap * glibc_tanhf(s * (<f32>1.0 / cap));
}

/**
 * One query head over the cells [a0, a1) then [b0, b1) of its KV head (model/ops.ts attendHead: the order
 * llama.cpp visits a ring's cells), scores soft-capped by `cap` (0: none).
 */
export function attend_f16(out: usize, q: usize, k: usize, v: usize, a0: i32, a1: i32, b0: i32, b1: i32, stride: i32, offset: i32, d: i32, scratch: usize, cap: f32): void {
  const qh = scratch;
  const acc = scratch + (<usize>d << 2);
  for (let i = 0; i < d; i += 4) {
    v128.store(qh + (<usize>i << 2), f16_round4(v128.load(q + (<usize>i << 2))));
    v128.store(acc + (<usize>i << 2), f32x4.splat(0));
  }
  const np = d & ~31;
  let S: f32 = 0;
  let M: f32 = -Infinity;
  for (let r = 0; r < 2; r++) for (let p = r ? b0 : a0, end = r ? b1 : a1; p < end; p++) {
    const kb = k + (<usize>(p * stride + offset) << 1);
    const vb = v + (<usize>(p * stride + offset) << 1);
    let a0l = f32x4.splat(0), a0h = f32x4.splat(0), a1l = f32x4.splat(0), a1h = f32x4.splat(0);
    let a2l = f32x4.splat(0), a2h = f32x4.splat(0), a3l = f32x4.splat(0), a3h = f32x4.splat(0);
    for (let i = 0; i < np; i += 32) {
      const kp = kb + (<usize>i << 1);
      const qp = qh + (<usize>i << 2);
      const h0 = v128.load(kp), h1 = v128.load(kp + 16), h2 = v128.load(kp + 32), h3 = v128.load(kp + 48);
      a0l = f32x4.add(a0l, f32x4.mul(f16x4_to_f32x4(i32x4.extend_low_i16x8_u(h0)), v128.load(qp)));
      a0h = f32x4.add(a0h, f32x4.mul(f16x4_to_f32x4(i32x4.extend_high_i16x8_u(h0)), v128.load(qp + 16)));
      a1l = f32x4.add(a1l, f32x4.mul(f16x4_to_f32x4(i32x4.extend_low_i16x8_u(h1)), v128.load(qp + 32)));
      a1h = f32x4.add(a1h, f32x4.mul(f16x4_to_f32x4(i32x4.extend_high_i16x8_u(h1)), v128.load(qp + 48)));
      a2l = f32x4.add(a2l, f32x4.mul(f16x4_to_f32x4(i32x4.extend_low_i16x8_u(h2)), v128.load(qp + 64)));
      a2h = f32x4.add(a2h, f32x4.mul(f16x4_to_f32x4(i32x4.extend_high_i16x8_u(h2)), v128.load(qp + 80)));
      a3l = f32x4.add(a3l, f32x4.mul(f16x4_to_f32x4(i32x4.extend_low_i16x8_u(h3)), v128.load(qp + 96)));
      a3h = f32x4.add(a3h, f32x4.mul(f16x4_to_f32x4(i32x4.extend_high_i16x8_u(h3)), v128.load(qp + 112)));
    }
    let sd: f64 = <f64>reduce32(a0l, a0h, a1l, a1h, a2l, a2h, a3l, a3h);
    for (let i = np; i < d; i++) sd += <f64>(f16_to_f32(<u32>load<u16>(kb + (<usize>i << 1))) * load<f32>(qh + (<usize>i << 2)));
    const s = softcap_score(<f32>sd, cap);
    let ms: f32 = 1;
    let vs: f32 = 1;
    if (s > M) {
      ms = glibc_expf(M - s);
      M = s;
      const vms = f32x4.splat(ms);
      for (let i = 0; i < d; i += 4) {
        const ap = acc + (<usize>i << 2);
        v128.store(ap, f16_round4(f32x4.mul(v128.load(ap), vms)));
      }
    } else {
      vs = glibc_expf(s - M);
    }
    const vvs = f64x2.splat(<f64>vs);
    for (let i = 0; i < d; i += 4) {
      const ap = acc + (<usize>i << 2);
      const a = v128.load(ap);
      const vv = f16x4_to_f32x4(i32x4.extend_low_i16x8_u(v128.load64_zero(vb + (<usize>i << 1))));
      const lo = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(vv), vvs), f64x2.promote_low_f32x4(a));
      const hi = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(v128.shuffle<f32>(vv, vv, 2, 3, 0, 1)), vvs), f64x2.promote_low_f32x4(v128.shuffle<f32>(a, a, 2, 3, 0, 1)));
      v128.store(ap, f16_round4(v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5)));
    }
    S = S * ms + vs;
  }
  const inv: f32 = S == 0 ? 0 : <f32>1.0 / S;
  const vinv = f32x4.splat(inv);
  for (let i = 0; i < d; i += 4) v128.store(out + (<usize>i << 2), f32x4.mul(v128.load(acc + (<usize>i << 2)), vinv));
}

// ---- attention, tiled path (ggml's flash attention for batches of 64+ query rows) ----

/** One lane of ggml_v_expf (AVX2 + FMA), as src/engine/numeric.ts vExpf. */
function v_expf1(x: f32): f32 {
  const r: f32 = 12582912.0;
  const z = <f32>(<f64>x * <f64>reinterpret<f32>(0x3fb8aa3b) + <f64>r);
  const n: f32 = z - r;
  const b = <f32>(<f64>(-n) * <f64>reinterpret<f32>(0x35bfbe8e) + <f64><f32>(<f64>(-n) * <f64>reinterpret<f32>(0x3f317200) + <f64>x));
  const e = reinterpret<i32>(z) << 23;
  const k = reinterpret<f32>(e + 0x3f800000);
  const u: f32 = b * b;
  const p0 = reinterpret<f32>(0x3c072010), p1 = reinterpret<f32>(0x3d2b9f17), p2 = reinterpret<f32>(0x3e2aaf33);
  const p3 = reinterpret<f32>(0x3efffedb), p4 = reinterpret<f32>(0x3f7ffff6);
  const f1 = <f32>(<f64>p0 * <f64>b + <f64>p1);
  const f2 = <f32>(<f64>p2 * <f64>b + <f64>p3);
  const f3 = <f32>(<f64>f1 * <f64>u + <f64>f2);
  const j = <f32>(<f64>f3 * <f64>u + <f64>(p4 * b));
  const an = abs(n);
  if (!(an > 126)) return <f32>(<f64>k * <f64>j + <f64>k);
  const g: i32 = n <= 0 ? <i32>0x82000000 : 0;
  const s1 = reinterpret<f32>(g + 0x7f000000);
  if (an > 192) return s1 * s1;
  const s2 = reinterpret<f32>(e - g);
  return <f32>(<f64>s2 * <f64>j + <f64>s2) * s1;
}

/**
 * All nq query rows of one head of a batch: row r (f32, at q + r*qStride elements) sits at position pos0 + r and
 * attends to positions 0..pos0+r of the f16 caches (position p of this KV head at element p*stride + offset).
 * As ggml's tiled flash attention: f32 q, scores as FMA chains over the head dimension, keys in tiles of 64 with a
 * softmax per tile (ggml_v_expf; each 8 summed as hsum8, the 8s summed in double), V accumulated in f32 by FMA.
 * scratch: (nq*d + 2*64*d + 64 + 2*nq) f32. d % 4 == 0.
 */
/**
 * The `nq` query rows at positions pos0.. of one head (model/ops.ts attendHeadTiled) over a KV layer of `cells`
 * rows (position p in cell p % cells) of which each row sees the last `window` positions (0: all), scores
 * soft-capped by `cap` (0: none).
 */
export function attend_tiled(out: usize, q: usize, qStride: i32, k: usize, v: usize, pos0: i32, nq: i32, cells: i32, window: i32, stride: i32, offset: i32, d: i32, scratch: usize, cap: f32): void {
  const acc = scratch; //                                   nq x d
  const kt = acc + (<usize>(nq * d) << 2); //               d x 64 (keys transposed)
  const vf = kt + (<usize>(d * 64) << 2); //                64 x d
  const kq = vf + (<usize>(d * 64) << 2); //                64
  const mArr = kq + 256; //                                 nq
  const sArr = mArr + (<usize>nq << 2); //                  nq
  for (let r = 0; r < nq; r++) {
    store<f32>(mArr + (<usize>r << 2), -Infinity);
    store<f32>(sArr + (<usize>r << 2), 0);
  }
  memory.fill(acc, 0, <usize>(nq * d) << 2);
  const filled = min(cells, pos0 + nq); // cells written so far
  for (let t0 = 0; t0 < filled; t0 += 64) {
    const mt = min(64, filled - t0);
    // the tile in f32: keys transposed (d x 64, zero past mt), values as rows
    for (let j = 0; j < 64; j++) {
      const base = <usize>((t0 + j) * stride + offset) << 1;
      for (let i = 0; i < d; i++) {
        store<f32>(kt + (<usize>(i * 64 + j) << 2), j < mt ? f16_to_f32(<u32>load<u16>(k + base + (<usize>i << 1))) : 0);
      }
      if (j < mt) for (let i = 0; i < d; i++) store<f32>(vf + (<usize>(j * d + i) << 2), f16_to_f32(<u32>load<u16>(v + base + (<usize>i << 1))));
    }
    for (let r = 0; r < nq; r++) {
      // the cells this row sees: [a0, a1) and [b0, b1) (model/ops.ts visibleCells), relative to the tile
      const qp = pos0 + r;
      const lo = window > 0 ? max(0, qp - window + 1) : 0;
      const qc = qp % cells, lc = lo % cells;
      const a0 = (lc <= qc ? lc : 0) - t0, a1 = qc + 1 - t0;
      const b0 = (lc <= qc ? 0 : lc) - t0, b1 = (lc <= qc ? 0 : cells) - t0;
      if (max(a0, 0) >= min(a1, mt) && max(b0, 0) >= min(b1, mt)) continue; // sees nothing of this tile
      const qr = q + (<usize>(r * qStride) << 2);
      // scores: 16 groups of 4 positions, each an FMA chain over the head dimension
      let tileMax: f32 = -Infinity;
      for (let j = 0; j < 64; j += 4) {
        const any = j < mt && ((j + 4 > a0 && j < a1) || (j + 4 > b0 && j < b1));
        if (!any) {
          v128.store(kq + (<usize>j << 2), f32x4.splat(-Infinity));
          continue;
        }
        let s = f32x4.splat(0);
        for (let i = 0; i < d; i++) s = fma4(f32x4.splat(load<f32>(qr + (<usize>i << 2))), v128.load(kt + (<usize>(i * 64 + j) << 2)), s);
        v128.store(kq + (<usize>j << 2), s);
        for (let l = 0; l < 4; l++) {
          const jl = j + l;
          const pp = kq + (<usize>jl << 2);
          if (jl >= mt || !((jl >= a0 && jl < a1) || (jl >= b0 && jl < b1))) store<f32>(pp, -Infinity);
          else {
            const x = softcap_score(load<f32>(pp), cap);
            store<f32>(pp, x);
            if (x > tileMax) tileMax = x;
          }
        }
      }
      if (tileMax == -Infinity) continue; // nothing of this tile is seen
      const mp = mArr + (<usize>r << 2), sp = sArr + (<usize>r << 2);
      const mOld = load<f32>(mp);
      const mNew: f32 = max(mOld, tileMax);
      const ar = acc + (<usize>(r * d) << 2);
      if (mNew > mOld) {
        const ms = glibc_expf(mOld - mNew);
        const vms = f32x4.splat(ms);
        for (let i = 0; i < d; i += 4) v128.store(ar + (<usize>i << 2), f32x4.mul(v128.load(ar + (<usize>i << 2)), vms));
        store<f32>(sp, load<f32>(sp) * ms);
      }
      store<f32>(mp, mNew);
      let sum: f64 = 0;
      for (let g = 0; g < 64; g += 8) {
        for (let l = 0; l < 8; l++) {
          const pp = kq + (<usize>(g + l) << 2);
          store<f32>(pp, v_expf1(load<f32>(pp) - mNew));
        }
        const lo = v128.load(kq + (<usize>g << 2)), hi = v128.load(kq + (<usize>(g + 4) << 2));
        sum += <f64>hsum8(lo, hi);
      }
      store<f32>(sp, <f32>(<f64>load<f32>(sp) + sum));
      // V: per element an FMA chain over the tile's visible positions
      for (let j = 0; j < mt; j++) {
        const pv = load<f32>(kq + (<usize>j << 2));
        if (pv == 0) continue; // a masked cell (adding 0 * v changes nothing)
        const pj = f32x4.splat(pv);
        const vr = vf + (<usize>(j * d) << 2);
        for (let i = 0; i < d; i += 4) v128.store(ar + (<usize>i << 2), fma4(pj, v128.load(vr + (<usize>i << 2)), v128.load(ar + (<usize>i << 2))));
      }
    }
  }
  for (let r = 0; r < nq; r++) {
    const s = load<f32>(sArr + (<usize>r << 2));
    const inv = f32x4.splat(s == 0 ? <f32>0 : <f32>1.0 / s);
    const ar = acc + (<usize>(r * d) << 2);
    const orow = out + (<usize>(r * qStride) << 2);
    for (let i = 0; i < d; i += 4) v128.store(orow + (<usize>i << 2), f32x4.mul(v128.load(ar + (<usize>i << 2)), inv));
  }
}
