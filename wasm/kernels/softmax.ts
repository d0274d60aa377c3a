// ---- The sampler's passes over the vocabulary (src/engine/sampler-wasm.ts) ----
// src/engine/sampler.ts weighs every id by exp((logit - max) / T): at 256k ids, `Math.exp` costs ~2.3 ms a token
// on these machines (~9 ns a call), 3% of a Gemma-2B decode step; here the same pass in f64x2 takes ~1 ms. The
// weights stay f64 and agree with Math.exp to 2 ulp, so the sampler's distribution is the same to far below what
// any test or draw can see (test/unit/sampler.test.ts compares probabilities to 1e-12). Beside it: the largest
// logit, top-p's buckets and the ids they select, and the draw's walk, each the same arithmetic as the sampler's
// JavaScript (buckets, ids and draws bit for bit).

/**
 * f64 constants, each read with v128.load64_splat (V8 13 rebuilds a v128 constant at each use inside a loop:
 * common.ts). 1/k! for k = 12 down to 2, then log2(e), ln 2 in two parts (fdlibm's: k * LN2_HI is exact), and the
 * smallest x whose exp is a normal f64 (below it the weight is 0: at most 2^-1022 of the best id's weight 1), 1.
 */
const C = memory.data<f64>([
  1.0 / 479001600, 1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120,
  1.0 / 24, 1.0 / 6, 0.5,
  1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10, -708.0, 1.0,
]);
const C_LOG2E = 11, C_LN2_HI = 12, C_LN2_LO = 13, C_MIN = 14, C_ONE = 15;

@inline function c(j: i32): v128 {
  return v128.load64_splat(C + (<usize>j << 3));
}

/** exp(x) per lane: x = k ln 2 + r (|r| <= ln 2 / 2), exp(r) by its Taylor polynomial of degree 12 (Horner), times 2^k. */
@inline function exp2x(x: v128): v128 {
  const k = f64x2.nearest(f64x2.mul(x, c(C_LOG2E)));
  const r = f64x2.sub(f64x2.sub(x, f64x2.mul(k, c(C_LN2_HI))), f64x2.mul(k, c(C_LN2_LO)));
  // written out: AssemblyScript leaves a loop here, which serializes the two calls of a pass's iteration
  let p = f64x2.add(f64x2.mul(c(0), r), c(1));
  p = f64x2.add(f64x2.mul(p, r), c(2));
  p = f64x2.add(f64x2.mul(p, r), c(3));
  p = f64x2.add(f64x2.mul(p, r), c(4));
  p = f64x2.add(f64x2.mul(p, r), c(5));
  p = f64x2.add(f64x2.mul(p, r), c(6));
  p = f64x2.add(f64x2.mul(p, r), c(7));
  p = f64x2.add(f64x2.mul(p, r), c(8));
  p = f64x2.add(f64x2.mul(p, r), c(9));
  p = f64x2.add(f64x2.mul(p, r), c(10));
  p = f64x2.add(f64x2.mul(p, r), c(C_ONE));
  p = f64x2.add(f64x2.mul(p, r), c(C_ONE));
  // 2^k from its exponent bits (k >= -1022 where the lane is kept)
  const e = i64x2.shl(i64x2.add(i64x2.extend_low_i32x4_s(i32x4.trunc_sat_f64x2_s_zero(k)), i64x2.splat(1023)), 52);
  return v128.and(f64x2.mul(p, e), f64x2.ge(x, c(C_MIN)));
}

/** exp2x for one value, the same operations in the same order (the tail of a pass: the same bits as a lane). */
@inline function exp1(x: f64): f64 {
  if (!(x >= load<f64>(C + (<usize>C_MIN << 3)))) return 0;
  const k = nearest<f64>(x * load<f64>(C + (<usize>C_LOG2E << 3)));
  const r = (x - k * load<f64>(C + (<usize>C_LN2_HI << 3))) - k * load<f64>(C + (<usize>C_LN2_LO << 3));
  let p = load<f64>(C);
  for (let j = 1; j < 11; j++) p = p * r + load<f64>(C + (<usize>j << 3));
  p = p * r + 1;
  p = p * r + 1;
  return p * reinterpret<f64>((<i64>(<i32>k) + 1023) << 52);
}

/**
 * w[i] = x[i] >= cut ? exp((x[i] - m) / t) : 0 for the n f32 values at `x` (t 1: no division), into the f64s at
 * `w` (none stored when w is 0); returns their sum. The caller's m is at least every kept x[i] (the weights are
 * at most 1); -Infinity values weigh 0. Sums in four f64 lanes (ids i mod 4), then (0 + 2) + (1 + 3), then the
 * tail in order.
 */
export function exp_weights(x: usize, w: usize, n: i32, m: f64, t: f64, cut: f64): f64 {
  const vm = f64x2.splat(m), vt = f64x2.splat(t), vcut = f64x2.splat(cut);
  const scaled = t != 1;
  let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    const lo = f64x2.promote_low_f32x4(v);
    const hi = f64x2.promote_low_f32x4(v128.shuffle<i32>(v, v, 2, 3, 0, 1));
    let a = f64x2.sub(lo, vm), b = f64x2.sub(hi, vm);
    if (scaled) {
      a = f64x2.div(a, vt);
      b = f64x2.div(b, vt);
    }
    const ea = v128.and(exp2x(a), f64x2.ge(lo, vcut));
    const eb = v128.and(exp2x(b), f64x2.ge(hi, vcut));
    if (w) {
      v128.store(w + (<usize>i << 3), ea);
      v128.store(w + (<usize>i << 3), eb, 16);
    }
    s0 = f64x2.add(s0, ea);
    s1 = f64x2.add(s1, eb);
  }
  const s = f64x2.add(s0, s1);
  let total = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
  for (; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    const e = v >= cut ? exp1(scaled ? (v - m) / t : v - m) : 0;
    if (w) store<f64>(w + (<usize>i << 3), e);
    total += e;
  }
  return total;
}

/** The largest of the n f32 values at `x`, -Infinity for none; NaN values are passed over (as `v > max` does). */
export function max_f32(x: usize, n: i32): f32 {
  let m0 = f32x4.splat(-Infinity), m1 = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 7 < n; i += 8) {
    const a = v128.load(x + (<usize>i << 2)), b = v128.load(x + (<usize>i << 2), 16);
    m0 = v128.bitselect(a, m0, f32x4.gt(a, m0));
    m1 = v128.bitselect(b, m1, f32x4.gt(b, m1));
  }
  m0 = v128.bitselect(m1, m0, f32x4.gt(m1, m0));
  let m = f32x4.extract_lane(m0, 0);
  if (f32x4.extract_lane(m0, 1) > m) m = f32x4.extract_lane(m0, 1);
  if (f32x4.extract_lane(m0, 2) > m) m = f32x4.extract_lane(m0, 2);
  if (f32x4.extract_lane(m0, 3) > m) m = f32x4.extract_lane(m0, 3);
  for (; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (v > m) m = v;
  }
  return m;
}

/**
 * A draw from the n f64 weights at `w` (r: a uniform number times their total): walking them in order, the first
 * index where r minus the weights so far drops below 0, else the last index with a nonzero weight (0 for none).
 */
export function pick_index(w: usize, n: i32, r: f64): i32 {
  let last = 0;
  for (let i = 0; i < n; i++) {
    const v = load<f64>(w + (<usize>i << 3));
    if (v == 0) continue;
    last = i;
    r -= v;
    if (r < 0) return i;
  }
  return last;
}

/**
 * Top-p's buckets (Sampler.nucleus): for each of the n values x[i] (f32) with weight w[i] (f64), its bucket
 * b[i] (u16) = min(buckets - 1, floor((m - x) * scale)) when x > m - range, else `buckets`; mass[j] (f64, buckets + 1
 * of them, zeroed here) sums the weights of bucket j in id order.
 */
export function bucket_mass(x: usize, w: usize, b: usize, mass: usize, n: i32, m: f64, scale: f64, range: f64, buckets: i32): void {
  memory.fill(mass, 0, (<usize>buckets + 1) << 3);
  const floor_ = m - range;
  for (let i = 0; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    let j = buckets;
    if (v > floor_) {
      const f = Math.floor((m - v) * scale);
      j = f < <f64>(buckets - 1) ? <i32>f : buckets - 1;
    }
    store<u16>(b + (<usize>i << 1), <u16>j);
    const at = mass + (<usize>j << 3);
    store<f64>(at, load<f64>(at) + load<f64>(w + (<usize>i << 3)));
  }
}

/**
 * The ids i < n whose u16 bucket b[i] is at least lo and below hi, ascending, as i32 at `out`; returns their count.
 * Eight buckets are tested at a time (few ids are selected: top-p keeps the head of the distribution).
 */
export function select_ids(b: usize, n: i32, lo: i32, hi: i32, out: usize): i32 {
  // lo <= j < hi as one unsigned comparison: j - lo < hi - lo (mod 2^16)
  const vlo = i16x8.splat(<i16>lo), width = i16x8.splat(<i16>(hi - lo));
  let k = 0;
  let i = 0;
  for (; i + 7 < n; i += 8) {
    if (!v128.any_true(i16x8.lt_u(i16x8.sub(v128.load(b + (<usize>i << 1)), vlo), width))) continue;
    for (let t = i; t < i + 8; t++) k = keep(b, t, lo, hi, out, k);
  }
  for (; i < n; i++) k = keep(b, i, lo, hi, out, k);
  return k;
}

@inline function keep(b: usize, i: i32, lo: i32, hi: i32, out: usize, k: i32): i32 {
  const j = <i32>load<u16>(b + (<usize>i << 1));
  if (j < lo || j >= hi) return k;
  store<i32>(out + (<usize>k << 2), i);
  return k + 1;
}
