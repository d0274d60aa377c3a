// What every WGSL kernel shares: the workgroup size, the features a device may have, the header (bindings of
// `step`), reductions, exact fma/exp/tanh where the device lacks them, and float literals as bit patterns.
import { expfConstants, vExpfConstants } from "../../../numeric.ts";

export const WG = 64;

/** What the device offers that the kernels use: dot4I8Packed, a fused fma(), shader-f16 (native f16 loads). */
export interface KernelFeatures {
  dot4I8Packed: boolean;
  fusedFma: boolean;
  f16: boolean;
}

/** Every feature off: the kernels every WebGPU device runs (plain WGSL, fmaSoft, f16 values unpacked from u32). */
export const BASELINE: KernelFeatures = { dot4I8Packed: false, fusedFma: false, f16: false };

const HEADER_BODY = /* wgsl */ `
struct Step { n: u32, pos: u32, lastRow: u32, zero: u32 }
@group(0) @binding(0) var<uniform> step: Step;
// x, hidden from the compiler's algebra (step.zero is 0 at run time): keeps a rounding step that the compiler
// might otherwise fold away or fuse into the next operation (Mesa fuses a*b + c and simplifies (a + b) - a)
fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ step.zero); }
`;
/** The common header; "enable f16" must come first in a module. */
export const header = (f: KernelFeatures) => (f.f16 ? "enable f16;\n" : "") + HEADER_BODY;
export const HEADER = HEADER_BODY;

/** Reductions over the 64 threads of a workgroup (`red` is workgroup memory; call in uniform control flow). */
const REDUCE = /* wgsl */ `
var<workgroup> red: array<f32, ${WG}>;
fn reduceSum(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] = red[li] + red[li + w]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn reduceMax(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] = max(red[li], red[li + w]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
`;

/** f32 rounded to the nearest f16 value (and back), and int8x4 dot products where the language lacks them. */
export const HELPERS = /* wgsl */ `
// x rounded to the nearest f16 value (ties to even), in integer arithmetic: some compilers (Mesa's) fold
// unpack2x16float(pack2x16float(x)) into x
fn roundF16(x: f32) -> f32 {
  let u = bitcast<u32>(x);
  let e = (u >> 23u) & 0xffu;
  if (e == 255u) { return x; }
  let sign = u & 0x80000000u;
  if (e >= 113u) { // a normal f16 (or an overflow to infinity): keep 10 mantissa bits
    let r = (u + 0xfffu + ((u >> 13u) & 1u)) & 0xffffe000u;
    if (((r >> 23u) & 0xffu) >= 143u) { return bitcast<f32>(sign | 0x7f800000u); }
    return bitcast<f32>(r);
  }
  if (e < 101u) { return bitcast<f32>(sign); } // below half the smallest f16 subnormal
  // an f16 subnormal: a multiple of 2^-24
  let m = (u & 0x7fffffu) | 0x800000u;
  let drop = 126u - e; // 14..25
  var q = m >> drop;
  let rem = m & ((1u << drop) - 1u);
  let half = 1u << (drop - 1u);
  if (rem > half || (rem == half && (q & 1u) == 1u)) { q += 1u; }
  return bitcast<f32>(sign | bitcast<u32>(ldexp(f32(q), -24)));
}
fn roundBf16(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
}
`;
export const DOT4_FALLBACK = /* wgsl */ `
fn dot4I8(a: u32, b: u32) -> i32 {
  var s = 0;
  for (var i = 0u; i < 32u; i += 8u) { s += extractBits(i32(a), i, 8u) * extractBits(i32(b), i, 8u); }
  return s;
}
`;
export const DOT4_NATIVE = /* wgsl */ `
fn dot4I8(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }
`;

/**
 * f32 fused multiply-add in integer arithmetic, RN(a*b + c) with one rounding (half to even), for devices whose
 * fma() rounds twice (SwiftShader): llama.cpp's sums are fma chains. Finite inputs; subnormal inputs count as
 * zero and subnormal results flush to zero (neither occurs in this forward pass).
 */
const FMA_SOFT = /* wgsl */ `
fn add64(a: vec2u, b: vec2u) -> vec2u { let lo = a.y + b.y; return vec2u(a.x + b.x + select(0u, 1u, lo < a.y), lo); }
fn sub64(a: vec2u, b: vec2u) -> vec2u { return vec2u(a.x - b.x - select(0u, 1u, a.y < b.y), a.y - b.y); }
fn lt64(a: vec2u, b: vec2u) -> bool { return a.x < b.x || (a.x == b.x && a.y < b.y); }
fn msb64(a: vec2u) -> u32 { if (a.x != 0u) { return 32u + firstLeadingBit(a.x); } return firstLeadingBit(a.y); }
fn shl64(a: vec2u, s: u32) -> vec2u {
  if (s == 0u) { return a; }
  if (s >= 32u) { return vec2u(a.y << (s - 32u), 0u); }
  return vec2u((a.x << s) | (a.y >> (32u - s)), a.y << s);
}
// a >> s with the bits shifted out OR-ed into bit 0 (enough for correct rounding with 40 guard bits)
fn shr64Jam(a: vec2u, s: u32) -> vec2u {
  if (s == 0u) { return a; }
  if (s >= 64u) { return vec2u(0u, select(0u, 1u, a.x != 0u || a.y != 0u)); }
  var r: vec2u;
  var lost: u32;
  if (s >= 32u) {
    let t = s - 32u;
    r = vec2u(0u, a.x >> t);
    lost = a.y | (a.x & ((1u << t) - 1u));
  } else {
    r = vec2u(a.x >> s, (a.y >> s) | (a.x << (32u - s)));
    lost = a.y & ((1u << s) - 1u);
  }
  return vec2u(r.x, r.y | select(0u, 1u, lost != 0u));
}
fn fmaSoft(a: f32, b: f32, c: f32) -> f32 {
  let ua = bitcast<u32>(a);
  let ub = bitcast<u32>(b);
  let uc = bitcast<u32>(c);
  let ea = (ua >> 23u) & 0xffu;
  let eb = (ub >> 23u) & 0xffu;
  let ec = (uc >> 23u) & 0xffu;
  if (ea == 255u || eb == 255u || ec == 255u) { return a * b + c; }
  if (ea == 0u || eb == 0u) { return c; }
  if (ec == 0u) { return a * b; }
  // the exact product of the 24-bit significands, from 12-bit limbs: value = p * 2^(ea + eb - 300)
  let ma = (ua & 0x7fffffu) | 0x800000u;
  let mb = (ub & 0x7fffffu) | 0x800000u;
  let a1 = ma >> 12u;
  let a0 = ma & 0xfffu;
  let b1 = mb >> 12u;
  let b0 = mb & 0xfffu;
  let mid = a1 * b0 + a0 * b1;
  let hh = a1 * b1;
  var p = add64(add64(vec2u(hh >> 8u, hh << 24u), vec2u(mid >> 20u, mid << 12u)), vec2u(0u, a0 * b0));
  // both operands with their top bit at bit 62: value = m * 2^e
  let lp = 62u - msb64(p);
  p = shl64(p, lp);
  let ep = i32(ea) + i32(eb) - 300 - i32(lp);
  let m = vec2u(((uc & 0x7fffffu) | 0x800000u) << 7u, 0u);
  let em = i32(ec) - 189;
  let sp = (ua ^ ub) >> 31u;
  let sm = uc >> 31u;
  // the larger magnitude minus or plus the smaller, aligned to it
  let pBig = ep > em || (ep == em && !lt64(p, m));
  let big = select(m, p, pBig);
  let eBig = select(em, ep, pBig);
  let sign = select(sm, sp, pBig);
  let small = shr64Jam(select(p, m, pBig), u32(eBig - select(ep, em, pBig)));
  let r0 = select(sub64(big, small), add64(big, small), sp == sm);
  if (r0.x == 0u && r0.y == 0u) { return 0.0; }
  // top bit to 63, then keep 24 bits and round on the 40 below
  let top = msb64(r0);
  let r = shl64(r0, 63u - top);
  var e = eBig - i32(63u - top);
  var mant = r.x >> 8u;
  let rest = vec2u(r.x & 0xffu, r.y);
  let halfway = vec2u(0x80u, 0u);
  if (lt64(halfway, rest) || (rest.x == halfway.x && rest.y == halfway.y && (mant & 1u) == 1u)) {
    mant += 1u;
    if (mant == 0x1000000u) { mant = 0x800000u; e += 1; }
  }
  let be = e + 190;
  if (be >= 255) { return bitcast<f32>((sign << 31u) | 0x7f800000u); }
  if (be <= 0) { return bitcast<f32>(sign << 31u); }
  return bitcast<f32>((sign << 31u) | (u32(be) << 23u) | (mant & 0x7fffffu));
}
`;

/** `fmaX`: the device's fma() where it is fused (one rounding), else fmaSoft. */
export const fmaFn = (fused: boolean) => (fused ? "fn fmaX(a: f32, b: f32, c: f32) -> f32 { return fma(a, b, c); }\n" : FMA_SOFT + "fn fmaX(a: f32, b: f32, c: f32) -> f32 { return fmaSoft(a, b, c); }\n");

/** The bits of x as an f32 (kernel constants travel as u32 words). */
export const f32bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;
const f32Lit = (x: number) => `bitcast<f32>(0x${f32bits(x).toString(16)}u)`;
/** A double as a WGSL double-f32 literal (hi + lo, ~48 bits). */
const ddLit = (x: number) => `vec2f(${f32Lit(Math.fround(x))}, ${f32Lit(Math.fround(x - Math.fround(x)))})`;

/**
 * Scalar math that llama.cpp's CPU path computes in double or with correctly rounded f32 operations, in
 * double-f32 arithmetic (hi + lo, ~48 bits; needs fmaX): results agree with the double computations except when
 * the exact value lies within ~2^-44 of an f32 rounding boundary.
 *   expGlibc: glibc's expf (2^(k/32) table, degree-3 polynomial, all in double);  vExpf: ggml_v_expf (f32 + fma);
 *   divCR / sqrtCR: correctly rounded f32 division and square root (WGSL allows 2.5 ulp).
 */
export function exactMath(): string {
  const e = expfConstants();
  const v = vExpfConstants();
  return /* wgsl */ `
fn twoSum(a: f32, b: f32) -> vec2f {
  let s = opaque(a + b);
  let bb = opaque(s - a);
  return vec2f(s, (a - opaque(s - bb)) + (b - bb));
}
fn fastTwoSum(a: f32, b: f32) -> vec2f { let s = opaque(a + b); return vec2f(s, b - opaque(s - a)); }
fn twoProd(a: f32, b: f32) -> vec2f { let p = opaque(a * b); return vec2f(p, fmaX(a, b, -p)); }
fn ddAdd(a: vec2f, b: vec2f) -> vec2f {
  let s = twoSum(a.x, b.x);
  let t = twoSum(a.y, b.y);
  let u = fastTwoSum(s.x, s.y + t.x);
  return fastTwoSum(u.x, u.y + t.y);
}
fn ddMul(a: vec2f, b: vec2f) -> vec2f { let p = twoProd(a.x, b.x); return fastTwoSum(p.x, p.y + (opaque(a.x * b.y) + opaque(a.y * b.x))); }
const EXP2_TAB = array<vec2f, 32>(${e.pow2.map(ddLit).join(", ")});
fn expGlibc(x: f32) -> f32 {
  // +inf, built at run time (a constant expression may not overflow)
  if (x > 88.72283172607422) { return bitcast<f32>(0x7f800000u | (bitcast<u32>(x) & 0u)); }
  if (x < -103.97207641601562) { return 0.0; }
  let z = ddMul(${ddLit(e.invLn2N)}, vec2f(x, 0.0));
  let kf = round(z.x);
  let r = twoSum(z.x - kf, z.y);
  let k = i32(kf);
  let s = EXP2_TAB[k & 31] * ldexp(1.0, (k - (k & 31)) / 32);
  let p = ddAdd(ddMul(${ddLit(e.c0)}, r), ${ddLit(e.c1)});
  let y = ddAdd(ddMul(p, ddMul(r, r)), ddAdd(ddMul(${ddLit(e.c2)}, r), vec2f(1.0, 0.0)));
  let res = ddMul(y, s);
  return res.x + res.y;
}
fn vExpf(x: f32) -> f32 {
  let z = fmaX(x, ${f32Lit(v.log2e!)}, ${f32Lit(v.r!)});
  let n = z - ${f32Lit(v.r!)};
  let b = fmaX(-n, ${f32Lit(v.ln2lo!)}, fmaX(-n, ${f32Lit(v.ln2hi!)}, x));
  let e = bitcast<u32>(z) << 23u;
  let k = bitcast<f32>(e + 0x3f800000u);
  let u = b * b;
  let j = fmaX(fmaX(fmaX(${f32Lit(v.p0!)}, b, ${f32Lit(v.p1!)}), u, fmaX(${f32Lit(v.p2!)}, b, ${f32Lit(v.p3!)})), u, ${f32Lit(v.p4!)} * b);
  if (!(abs(n) > 126.0)) { return fmaX(k, j, k); }
  let g = select(0u, 0x82000000u, n <= 0.0);
  let s1 = bitcast<f32>(g + 0x7f000000u);
  if (abs(n) > 192.0) { return s1 * s1; }
  let s2 = bitcast<f32>(e - g);
  return fmaX(s2, j, s2) * s1;
}
fn nextUp(q: f32) -> f32 { return bitcast<f32>(bitcast<u32>(q) + select(1u, 0xffffffffu, q < 0.0)); }
fn nextDown(q: f32) -> f32 { return bitcast<f32>(bitcast<u32>(q) + select(0xffffffffu, 1u, q < 0.0)); }
// RN((n.x + n.y) / d) for n >= 0, d > 0: the quotient, moved by an ulp while the exact remainder says a
// neighbour is nearer (the remainder of a quotient within an ulp or two is exact in f32)
fn divCR(n: vec2f, d: f32) -> f32 {
  var q = n.x / d;
  for (var i = 0; i < 4; i++) {
    let r = fmaX(-q, d, n.x) + n.y;
    let up = nextUp(q);
    let down = nextDown(q);
    if (r > (up - q) * d * 0.5) { q = up; } else if (-r > (q - down) * d * 0.5) { q = down; } else { break; }
  }
  return q;
}
${TANHF}
fn sqrtCR(y: f32) -> f32 {
  var s = sqrt(y);
  for (var i = 0; i < 4; i++) {
    let r = fmaX(-s, s, y); // y - s^2, exact
    if (r > s * (nextUp(s) - s)) { s = nextUp(s); } else if (r < -(s * (s - nextDown(s)))) { s = nextDown(s); } else { break; }
  }
  return s;
}
`;
}

/**
 * glibc's tanhf over its expm1f (numeric.ts tanhf, expm1f; Sun's fdlibm in f32), every product that feeds a sum
 * kept apart with opaque() and the divisions correctly rounded (divCR): Gemma 2's soft-capping.
 */
const TANHF = /* wgsl */ `
fn expm1fGlibc(x0: f32) -> f32 {
  var x = x0;
  let ux = bitcast<u32>(x);
  let neg = (ux >> 31u) == 1u;
  let hx = ux & 0x7fffffffu;
  if (hx >= 0x4195b844u) {
    if (hx >= 0x42b17218u) {
      if (hx > 0x7f800000u) { return x; }
      if (hx == 0x7f800000u) { return select(x, -1.0, neg); }
      if (x > ${f32Lit(88.72167969)}) { return bitcast<f32>(0x7f800000u | (ux & 0u)); }
    }
    if (neg) { return -1.0; }
  }
  var k = 0;
  var c = 0.0;
  if (hx > 0x3eb17218u) {
    var hi: f32;
    var lo: f32;
    if (hx < 0x3f851592u) {
      if (!neg) { hi = x - bitcast<f32>(0x3f317180u); lo = bitcast<f32>(0x3717f7d1u); k = 1; }
      else { hi = x + bitcast<f32>(0x3f317180u); lo = -bitcast<f32>(0x3717f7d1u); k = -1; }
    } else {
      k = i32(opaque(bitcast<f32>(0x3fb8aa3bu) * x) + select(0.5, -0.5, neg));
      let t = f32(k);
      hi = x - opaque(t * bitcast<f32>(0x3f317180u));
      lo = t * bitcast<f32>(0x3717f7d1u);
    }
    x = opaque(hi - lo);
    c = opaque(hi - x) - lo;
  } else if (hx < 0x33000000u) {
    return x;
  }
  let hfx = 0.5 * x;
  let hxs = x * hfx;
  let q1 = bitcast<f32>(0xbd088889u);
  let q2 = bitcast<f32>(0x3ad00d01u);
  let q3 = bitcast<f32>(0xb8a670cdu);
  let q4 = bitcast<f32>(0x36867e54u);
  let q5 = bitcast<f32>(0xb457edbbu);
  let r1 = 1.0 + opaque(hxs * (q1 + opaque(hxs * (q2 + opaque(hxs * (q3 + opaque(hxs * (q4 + opaque(hxs * q5)))))))));
  let t = 3.0 - opaque(r1 * hfx);
  var e = hxs * divCR(vec2f(r1 - t, 0.0), 6.0 - opaque(x * t));
  if (k == 0) { return x - (opaque(x * e) - hxs); }
  e = opaque(x * (e - c)) - c;
  e = e - hxs;
  if (k == -1) { return opaque(0.5 * (x - e)) - 0.5; }
  if (k == 1) {
    if (x < -0.25) { return -2.0 * (e - (x + 0.5)); }
    return 1.0 + opaque(2.0 * (x - e));
  }
  if (k <= -2 || k > 56) {
    var y = 1.0 - (e - x);
    if (k == 128) { y = y * 2.0 * bitcast<f32>(0x7f000000u); } else { y = bitcast<f32>(bitcast<i32>(y) + (k << 23u)); }
    return y - 1.0;
  }
  var y: f32;
  if (k < 23) {
    y = bitcast<f32>(0x3f800000 - (0x1000000 >> u32(k))) - (e - x);
  } else {
    y = x - (e + bitcast<f32>((0x7f - k) << 23u));
    y = y + 1.0;
  }
  return bitcast<f32>(bitcast<i32>(y) + (k << 23u));
}
fn tanhfGlibc(x: f32) -> f32 {
  let jx = bitcast<u32>(x);
  let ix = jx & 0x7fffffffu;
  let neg = (jx >> 31u) == 1u;
  if (ix >= 0x7f800000u) {
    if (ix > 0x7f800000u) { return x; }
    return select(1.0, -1.0, neg);
  }
  var z = 1.0;
  if (ix < 0x41b00000u) {
    if (ix == 0u) { return x; }
    if (ix < 0x24000000u) { return x * (1.0 + x); }
    if (ix >= 0x3f800000u) {
      let t = expm1fGlibc(2.0 * abs(x));
      z = 1.0 - divCR(vec2f(2.0, 0.0), t + 2.0);
    } else {
      let t = expm1fGlibc(-2.0 * abs(x));
      z = divCR(vec2f(-t, 0.0), t + 2.0);
    }
  }
  return select(z, -z, neg);
}
`;

/** out[i] = cap * tanh(x[i] / cap) over the last row's logits (final soft-capping: three ggml ops, as gemma.ts). */
