// WebAssembly SIMD matrix kernels (AssemblyScript). Built twice by wasm/build.js: with relaxed SIMD
// (i16x8.relaxed_dot_i8x16_i7x16_s for Q4_0) and with plain SIMD128 only; ASC_FEATURE_RELAXED_SIMD picks the
// code path at compile time. No allocator, no globals that matter: every kernel works on pointers into the
// memory the host imports, so one instance serves one model and many instances can coexist.
//
// Every kernel has a plain twin in src/engine/backend/reference.ts and is tested against it.

// ---- activation rounding (what llama.cpp's CPU backend does to activations before each matmul) ----

/** x (n f32) -> Q8_0 blocks: qs (n i8), ds (n/32 f32: the f16-rounded scale), sums (n/32 i32: sum of qs). */
export function quantize_q8_0(x: usize, qs: usize, ds: usize, sums: usize, n: i32): void {
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
    store<i32>(sums + (<usize>b << 2), i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3));
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

@inline function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline function f16_to_f32(h: u32): f32 {
  return reinterpret<f32>(((h & 0x7fff) << 13)) * reinterpret<f32>(<u32>(112 + 127) << 23) * (h & 0x8000 ? -1 : 1);
}

// ---- matrix x activations: out[t*rows + r] = dot(row r of w, activations of token t) ----

/** Q4_0 weights (18-byte blocks) x Q8_0 activations (from quantize_q8_0). */
export function matmul_q4_0(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, sums: usize, ntok: i32, out: usize): void {
  const nb = cols >> 5;
  const mask = i8x16.splat(0x0f);
  const eight = i8x16.splat(8);
  for (let t = 0; t < ntok; t++) {
    const xq = qs + <usize>(t * cols);
    const xd = ds + (<usize>(t * nb) << 2);
    const xs = sums + (<usize>(t * nb) << 2);
    for (let r = 0; r < rows; r++) {
      let acc = f32x4.splat(0);
      let corr: f32 = 0;
      let p = w + <usize>r * <usize>(nb * 18);
      for (let b = 0; b < nb; b++, p += 18) {
        const d: f32 = f16_to_f32(load<u16>(p)) * load<f32>(xd + (<usize>b << 2));
        const v = v128.load(p + 2);
        const lo = v128.and(v, mask);
        const hi = v128.and(i8x16.shr_u(v, 4), mask);
        const x0 = v128.load(xq + (<usize>b << 5));
        const x1 = v128.load(xq + (<usize>b << 5) + 16);
        let isum: v128;
        if (ASC_FEATURE_RELAXED_SIMD) {
          // nibbles 0..15 as the 7-bit operand; the -8 offset comes back as 8 * sum(x) per block
          const s16 = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, lo), i16x8.relaxed_dot_i8x16_i7x16_s(x1, hi));
          isum = i32x4.extadd_pairwise_i16x8_s(s16);
          const xsum = load<i32>(xs + (<usize>b << 2)) << 3;
          corr += d * <f32>xsum;
        } else {
          const l = i8x16.sub(lo, eight);
          const h = i8x16.sub(hi, eight);
          isum = i32x4.add(
            i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(l), i16x8.extend_low_i8x16_s(x0)),
              i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(l), i16x8.extend_high_i8x16_s(x0))),
            i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(h), i16x8.extend_low_i8x16_s(x1)),
              i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(h), i16x8.extend_high_i8x16_s(x1))));
        }
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(d)));
      }
      store<f32>(out + (<usize>(t * rows + r) << 2), hsum(acc) - corr);
    }
  }
}

@inline function dot_i8x16(a: v128, b: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), i16x8.extend_low_i8x16_s(b)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), i16x8.extend_high_i8x16_s(b)));
}

/** Q8_0 weights (34-byte blocks) x Q8_0 activations. */
export function matmul_q8_0(w: usize, rows: i32, cols: i32, qs: usize, ds: usize, ntok: i32, out: usize): void {
  const nb = cols >> 5;
  for (let t = 0; t < ntok; t++) {
    const xq = qs + <usize>(t * cols);
    const xd = ds + (<usize>(t * nb) << 2);
    for (let r = 0; r < rows; r++) {
      let acc = f32x4.splat(0);
      let p = w + <usize>r * <usize>(nb * 34);
      for (let b = 0; b < nb; b++, p += 34) {
        const d: f32 = f16_to_f32(load<u16>(p)) * load<f32>(xd + (<usize>b << 2));
        const isum = i32x4.add(dot_i8x16(v128.load(p + 2), v128.load(xq + (<usize>b << 5))),
          dot_i8x16(v128.load(p + 18), v128.load(xq + (<usize>b << 5) + 16)));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(d)));
      }
      store<f32>(out + (<usize>(t * rows + r) << 2), hsum(acc));
    }
  }
}

/** 4 f16 bit patterns (low 16 bits of each i32 lane) -> 4 f32 (exact for finite values). */
@inline function f16x4_to_f32x4(h: v128): v128 {
  const mag = f32x4.mul(i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13), f32x4.splat(reinterpret<f32>(<u32>(112 + 127) << 23)));
  return v128.or(mag, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** F16 weights x f32 activations (already rounded to f16 by round_f16). cols % 8 == 0. */
export function matmul_f16(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize): void {
  for (let t = 0; t < ntok; t++) {
    const xt = x + (<usize>(t * cols) << 2);
    for (let r = 0; r < rows; r++) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      const p = w + (<usize>r * <usize>cols << 1);
      for (let i = 0; i < cols; i += 8) {
        const h = v128.load(p + (<usize>i << 1));
        a0 = f32x4.add(a0, f32x4.mul(f16x4_to_f32x4(i32x4.extend_low_i16x8_u(h)), v128.load(xt + (<usize>i << 2))));
        a1 = f32x4.add(a1, f32x4.mul(f16x4_to_f32x4(i32x4.extend_high_i16x8_u(h)), v128.load(xt + (<usize>i << 2) + 16)));
      }
      store<f32>(out + (<usize>(t * rows + r) << 2), hsum(f32x4.add(a0, a1)));
    }
  }
}

/** BF16 weights x f32 activations (already rounded to bf16). cols % 8 == 0. */
export function matmul_bf16(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize): void {
  for (let t = 0; t < ntok; t++) {
    const xt = x + (<usize>(t * cols) << 2);
    for (let r = 0; r < rows; r++) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      const p = w + (<usize>r * <usize>cols << 1);
      for (let i = 0; i < cols; i += 8) {
        const h = v128.load(p + (<usize>i << 1));
        a0 = f32x4.add(a0, f32x4.mul(i32x4.shl(i32x4.extend_low_i16x8_u(h), 16), v128.load(xt + (<usize>i << 2))));
        a1 = f32x4.add(a1, f32x4.mul(i32x4.shl(i32x4.extend_high_i16x8_u(h), 16), v128.load(xt + (<usize>i << 2) + 16)));
      }
      store<f32>(out + (<usize>(t * rows + r) << 2), hsum(f32x4.add(a0, a1)));
    }
  }
}

/** F32 weights x f32 activations. cols % 8 == 0. */
export function matmul_f32(w: usize, rows: i32, cols: i32, x: usize, ntok: i32, out: usize): void {
  for (let t = 0; t < ntok; t++) {
    const xt = x + (<usize>(t * cols) << 2);
    for (let r = 0; r < rows; r++) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      const p = w + (<usize>r * <usize>cols << 2);
      for (let i = 0; i < cols; i += 8) {
        a0 = f32x4.add(a0, f32x4.mul(v128.load(p + (<usize>i << 2)), v128.load(xt + (<usize>i << 2))));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(p + (<usize>i << 2) + 16), v128.load(xt + (<usize>i << 2) + 16)));
      }
      store<f32>(out + (<usize>(t * rows + r) << 2), hsum(f32x4.add(a0, a1)));
    }
  }
}
