// ---- attention of one query head over the f16 KV cache: ggml's CPU flash attention, one_chunk path ----
import { f16x4_to_f32x4, fusedMadd, reduce32 } from "./common";

// glibc's expf (ARM optimized-routines, evaluated in double), as src/engine/numeric.ts
const EXP2F_TAB: StaticArray<u64> = [
  0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b, 0x3fef54873168b9aa,
  0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
  0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74,
  0x3feea11473eb0187, 0x3feea589994cce13, 0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
  0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
  0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
];

export function glibc_expf(x: f32): f32 {
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
@inline export function softcap_score(s: f32, cap: f32): f32 {
  return cap == 0 ? s : cap * glibc_tanhf(s * (<f32>1.0 / cap));
}

/**
 * `nh` query heads (q and out: nh x d f32, head after head) that share one KV head, each over the cells [a0, a1)
 * then [b0, b1) of it (model/ops.ts attendHead for each head: the order llama.cpp visits a ring's cells), scores
 * soft-capped by `cap` (0: none); cell p of the KV head at element p*stride + offset of the f16 caches k, v. Each
 * head's arithmetic is attendHead's alone: q rounded to f16; scores by ggml_vec_dot_f16 (32 lanes; f16 products are
 * exact in f32, so multiply-then-add is the fused multiply-add); online softmax with glibc's expf; the V sum
 * accumulated in f16 (a fused multiply-add per element, then rounding to f16). The heads share each cell's K and V
 * converted to f32 once (a KV head serves 8 query heads in Gemma-2B). `scratch` holds 2*nh*d + 2*d + 2*nh f32.
 * d % 4 == 0.
 */
export function attend_f16(out: usize, q: usize, k: usize, v: usize, a0: i32, a1: i32, b0: i32, b1: i32, stride: i32, offset: i32, d: i32, nh: i32, scratch: usize, cap: f32): void {
  const hd = <usize>d << 2; // bytes of one head's f32 vector
  const qh = scratch, acc = qh + <usize>nh * hd, kf = acc + <usize>nh * hd, vf = kf + hd;
  const mS = vf + hd, sS = mS + (<usize>nh << 2); // each head's running max M and sum S
  for (let h = 0; h < nh; h++) {
    store<f32>(mS + (<usize>h << 2), -Infinity);
    store<f32>(sS + (<usize>h << 2), 0);
  }
  for (let i: usize = 0; i < <usize>nh * hd; i += 16) {
    v128.store(qh + i, f16_round4(v128.load(q + i)));
    v128.store(acc + i, f32x4.splat(0));
  }
  const np = d & ~31;
  const fused = ASC_FEATURE_RELAXED_SIMD && fusedMadd;
  for (let r = 0; r < 2; r++) for (let p = r ? b0 : a0, end = r ? b1 : a1; p < end; p++) {
    const kb = k + (<usize>(p * stride + offset) << 1);
    const vb = v + (<usize>(p * stride + offset) << 1);
    for (let i = 0; i < d; i += 4) {
      v128.store(kf + (<usize>i << 2), f16x4_to_f32x4(i32x4.extend_low_i16x8_u(v128.load64_zero(kb + (<usize>i << 1)))));
      v128.store(vf + (<usize>i << 2), f16x4_to_f32x4(i32x4.extend_low_i16x8_u(v128.load64_zero(vb + (<usize>i << 1)))));
    }
    for (let h = 0; h < nh; h++) {
      const qp0 = qh + <usize>h * hd, ap0 = acc + <usize>h * hd;
      // ggml_vec_dot_f16: 32 lanes (f16 products are exact in f32, so multiply-then-add is the fused multiply-add)
      let a0l = f32x4.splat(0), a0h = f32x4.splat(0), a1l = f32x4.splat(0), a1h = f32x4.splat(0);
      let a2l = f32x4.splat(0), a2h = f32x4.splat(0), a3l = f32x4.splat(0), a3h = f32x4.splat(0);
      for (let i = 0; i < np; i += 32) {
        const kp = kf + (<usize>i << 2), qp = qp0 + (<usize>i << 2);
        a0l = f32x4.add(a0l, f32x4.mul(v128.load(kp), v128.load(qp)));
        a0h = f32x4.add(a0h, f32x4.mul(v128.load(kp + 16), v128.load(qp + 16)));
        a1l = f32x4.add(a1l, f32x4.mul(v128.load(kp + 32), v128.load(qp + 32)));
        a1h = f32x4.add(a1h, f32x4.mul(v128.load(kp + 48), v128.load(qp + 48)));
        a2l = f32x4.add(a2l, f32x4.mul(v128.load(kp + 64), v128.load(qp + 64)));
        a2h = f32x4.add(a2h, f32x4.mul(v128.load(kp + 80), v128.load(qp + 80)));
        a3l = f32x4.add(a3l, f32x4.mul(v128.load(kp + 96), v128.load(qp + 96)));
        a3h = f32x4.add(a3h, f32x4.mul(v128.load(kp + 112), v128.load(qp + 112)));
      }
      let sd: f64 = <f64>reduce32(a0l, a0h, a1l, a1h, a2l, a2h, a3l, a3h);
      for (let i = np; i < d; i++) sd += <f64>(load<f32>(kf + (<usize>i << 2)) * load<f32>(qp0 + (<usize>i << 2)));
      const s = softcap_score(<f32>sd, cap);
      const M = load<f32>(mS + (<usize>h << 2));
      let ms: f32 = 1;
      let vs: f32 = 1;
      if (s > M) {
        ms = glibc_expf(M - s);
        store<f32>(mS + (<usize>h << 2), s);
        const vms = f32x4.splat(ms);
        for (let i = 0; i < d; i += 4) {
          const ap = ap0 + (<usize>i << 2);
          v128.store(ap, f16_round4(f32x4.mul(v128.load(ap), vms)));
        }
      } else {
        vs = glibc_expf(s - M);
      }
      // ggml_vec_mad_f16: acc = f16(acc + v * vs), the multiply-add fused (relaxed_madd where it is, else exactly in f64)
      if (fused) {
        const vvs = f32x4.splat(vs);
        for (let i = 0; i < d; i += 4) {
          const ap = ap0 + (<usize>i << 2);
          v128.store(ap, f16_round4(f32x4.relaxed_madd(v128.load(vf + (<usize>i << 2)), vvs, v128.load(ap))));
        }
      } else {
        const vvs = f64x2.splat(<f64>vs);
        for (let i = 0; i < d; i += 4) {
          const ap = ap0 + (<usize>i << 2);
          const a = v128.load(ap), vv = v128.load(vf + (<usize>i << 2));
          const lo = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(vv), vvs), f64x2.promote_low_f32x4(a));
          const hi = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(v128.shuffle<f32>(vv, vv, 2, 3, 0, 1)), vvs), f64x2.promote_low_f32x4(v128.shuffle<f32>(a, a, 2, 3, 0, 1)));
          v128.store(ap, f16_round4(v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5)));
        }
      }
      store<f32>(sS + (<usize>h << 2), load<f32>(sS + (<usize>h << 2)) * ms + vs);
    }
  }
  for (let h = 0; h < nh; h++) {
    const S = load<f32>(sS + (<usize>h << 2));
    const inv: f32 = S == 0 ? 0 : <f32>1.0 / S;
    const vinv = f32x4.splat(inv);
    const o = out + <usize>h * hd, ap0 = acc + <usize>h * hd;
    for (let i = 0; i < d; i += 4) v128.store(o + (<usize>i << 2), f32x4.mul(v128.load(ap0 + (<usize>i << 2)), vinv));
  }
}
