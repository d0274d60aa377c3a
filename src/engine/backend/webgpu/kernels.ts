// WGSL compute kernels of the WebGPU forward pass. Every kernel has the same first two bindings: `step` (the
// batch: n tokens at position pos, written once per forward) and `p` (the op's own constants, written once when
// the op's bind group is made); storage buffers follow. `step.lastRow` is the batch's last row (COPY_LAST_ROW);
// `step.zero` is always 0 (see opaque()). f32 arithmetic throughout, in llama.cpp's order and rounding (see
// model.ts); the KV cache holds f16 values (pairs in u32s, read as array<f16> where the device has shader-f16),
// as the CPU path keeps f16. Weights are stored per type (see model.ts: upload):
//   Q4_0: wq = 4 u32 of nibbles per block (byte j: element j low, element j+16 high), wd = one f32 scale per block
//   Q8_0: wq = 8 u32 of int8 per block, wd = one f32 scale per block
//   F16, BF16: wq = one u32 per pair of values;  F32: wq = f32 values
import { GGML_TYPE } from "../../ggml-types.ts";
import { expfConstants, vExpfConstants } from "../../numeric.ts";

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
const header = (f: KernelFeatures) => (f.f16 ? "enable f16;\n" : "") + HEADER_BODY;
const HEADER = HEADER_BODY;

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
const HELPERS = /* wgsl */ `
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
const DOT4_FALLBACK = /* wgsl */ `
fn dot4I8(a: u32, b: u32) -> i32 {
  var s = 0;
  for (var i = 0u; i < 32u; i += 8u) { s += extractBits(i32(a), i, 8u) * extractBits(i32(b), i, 8u); }
  return s;
}
`;
const DOT4_NATIVE = /* wgsl */ `
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
function exactMath(): string {
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
export const softcapLogits = (f: KernelFeatures) => header(f) + fmaFn(f.fusedFma) + exactMath() + /* wgsl */ `
struct P { n: u32, cap: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = g.x + g.y * nwg.x * ${WG}u;
  if (i >= p.n) { return; }
  let cap = bitcast<f32>(p.cap);
  x[i] = cap * tanhfGlibc(x[i] * divCR(vec2f(1.0, 0.0), cap));
}`;

/** A probe: out[i] = fmaX(a[i], b[i], c[i]) (tests, and the check whether the device's fma() is fused). */
export const fmaProbe = (fused: boolean) => HEADER + fmaFn(fused) + /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= p.n || step.n == 0u) { return; }
  out[g.x] = fmaX(a[g.x], b[g.x], c[g.x]);
}`;

/** Weight bindings (at 2 and, for quantized types, 3) and `wval(row, col)`: one dequantized value. */
function weightAccess(type: number, f16: boolean): string {
  switch (type) {
    case GGML_TYPE.Q4_0:
      return /* wgsl */ `
@group(0) @binding(2) var<storage, read> wq: array<u32>;
@group(0) @binding(3) var<storage, read> wd: array<f32>;
fn wval(r: u32, c: u32, cols: u32) -> f32 {
  let b = r * (cols / 32u) + c / 32u;
  let j = c % 32u;
  let byte = (wq[b * 4u + (j % 16u) / 4u] >> ((j % 4u) * 8u)) & 0xffu;
  let nib = select(byte & 15u, byte >> 4u, j >= 16u);
  return (f32(nib) - 8.0) * wd[b];
}`;
    case GGML_TYPE.Q8_0:
    case GGML_TYPE.Q5_0: // uploaded as Q8_0: its values (-16..15) as int8 and the block's scale
      return /* wgsl */ `
@group(0) @binding(2) var<storage, read> wq: array<u32>;
@group(0) @binding(3) var<storage, read> wd: array<f32>;
fn wval(r: u32, c: u32, cols: u32) -> f32 {
  let b = r * (cols / 32u) + c / 32u;
  let j = c % 32u;
  return f32(extractBits(i32(wq[b * 8u + j / 4u]), (j % 4u) * 8u, 8u)) * wd[b];
}`;
    case GGML_TYPE.Q4_1:
    case GGML_TYPE.Q5_1: // values (0..15, 0..31) as bytes, the block's scale and its min
      return /* wgsl */ `
@group(0) @binding(2) var<storage, read> wq: array<u32>;
@group(0) @binding(3) var<storage, read> wd: array<f32>;
@group(0) @binding(4) var<storage, read> wm: array<f32>;
fn wval(r: u32, c: u32, cols: u32) -> f32 {
  let b = r * (cols / 32u) + c / 32u;
  let j = c % 32u;
  return opaque(f32(extractBits(wq[b * 8u + j / 4u], (j % 4u) * 8u, 8u)) * wd[b]) + wm[b];
}`;
    case GGML_TYPE.F16:
      if (f16) {
        return /* wgsl */ `
@group(0) @binding(2) var<storage, read> wq: array<vec2<f16>>;
fn wpair(i: u32) -> vec2f { return vec2f(wq[i]); }
fn wval(r: u32, c: u32, cols: u32) -> f32 { return wpair((r * cols + c) / 2u)[c % 2u]; }`;
      }
      return /* wgsl */ `
@group(0) @binding(2) var<storage, read> wq: array<u32>;
fn wpair(i: u32) -> vec2f { return unpack2x16float(wq[i]); }
fn wval(r: u32, c: u32, cols: u32) -> f32 { return wpair((r * cols + c) / 2u)[c % 2u]; }`;
    case GGML_TYPE.BF16:
      return /* wgsl */ `
@group(0) @binding(2) var<storage, read> wq: array<u32>;
fn wpair(i: u32) -> vec2f { let u = wq[i]; return vec2f(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u)); }
fn wval(r: u32, c: u32, cols: u32) -> f32 { return wpair((r * cols + c) / 2u)[c % 2u]; }`;
    case GGML_TYPE.F32:
      return /* wgsl */ `
@group(0) @binding(2) var<storage, read> wq: array<f32>;
fn wpair(i: u32) -> vec2f { return vec2f(wq[2u * i], wq[2u * i + 1u]); }
fn wval(r: u32, c: u32, cols: u32) -> f32 { return wq[r * cols + c]; }`;
  }
  throw new Error(`no WebGPU kernels for ggml type ${type}`);
}

export const isQuantized = (type: number) =>
  type === GGML_TYPE.Q4_0 || type === GGML_TYPE.Q8_0 || type === GGML_TYPE.Q5_0 || hasMin(type);
/** Q4_1 and Q5_1: a min per block besides the scale (a third weight buffer; Q8_1's d * sum(q) on the activations). */
export const hasMin = (type: number) => type === GGML_TYPE.Q4_1 || type === GGML_TYPE.Q5_1;

/** Rows [rowStart, rowStart + chunkRows) of the token embedding, scaled, for the batch's tokens in that range. */
export function embedKernel(type: number, f: KernelFeatures): string {
  const nb = hasMin(type) ? 5 : isQuantized(type) ? 4 : 3;
  return header(f) + weightAccess(type, f.f16) + /* wgsl */ `
struct P { cols: u32, rowStart: u32, chunkRows: u32, scale: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(${nb}) var<storage, read> tokens: array<u32>;
@group(0) @binding(${nb + 1}) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u) {
  let t = g.y;
  let c = g.x;
  if (t >= step.n || c >= p.cols) { return; }
  let tok = tokens[t];
  if (tok < p.rowStart || tok >= p.rowStart + p.chunkRows) { return; }
  x[t * p.cols + c] = wval(tok - p.rowStart, c, p.cols) * bitcast<f32>(p.scale);
}`;
}

/** Rows per workgroup of matmulKernel for a weight type (64 threads: rows x lanes). */
export const matmulRowsPerGroup = (type: number) => (isQuantized(type) ? 8 : 2);

/**
 * out[t*rows + rowStart + r] = dot(row r of the chunk, activations of token t), with the sums in llama.cpp's x86
 * order (see ggml-order.ts), so that results match the CPU backends bit for bit where the GPU's fma() is fused and
 * its adds are not contracted (both hold on SwiftShader and common GPUs; elsewhere they agree to rounding):
 *  - Q4_0 with rows % 8 == 0 (llama.cpp repacks those): one fma chain over whole-block integer sums;
 *  - other Q4_0, Q8_0: 8 lanes of 4-product integer sums, fma-accumulated per block, then hsum_float_8;
 *  - F16/F32: one token: 32 fma lanes reduced as GGML_F32x8_REDUCE; 2+ tokens with rows % 4 == 0 and cols % 8 == 0:
 *    tinyBLAS, 8 fma lanes then hsum; BF16 one token: 32 lanes of products added, reduced as vec_dot_bf16.
 * Quantized weights take Q8_0 activations (xq, xd from quantize); float weights the activations rounded to their
 * type. Each workgroup: 8 rows x 8 lanes (quantized) or 2 rows x 32 lanes (float).
 */
export function matmulKernel(type: number, f: KernelFeatures): string {
  const q = isQuantized(type);
  const min = hasMin(type);
  const L = q ? 8 : 32;
  const first = min ? 5 : q ? 4 : 3;
  const inputs = min
    ? `@group(0) @binding(${first}) var<storage, read> xq: array<u32>;
@group(0) @binding(${first + 1}) var<storage, read> xd: array<f32>;
@group(0) @binding(${first + 2}) var<storage, read> xs: array<f32>;
@group(0) @binding(${first + 3}) var<storage, read_write> out: array<f32>;`
    : q
    ? `@group(0) @binding(${first}) var<storage, read> xq: array<u32>;
@group(0) @binding(${first + 1}) var<storage, read> xd: array<f32>;
@group(0) @binding(${first + 2}) var<storage, read_write> out: array<f32>;`
    : `@group(0) @binding(${first}) var<storage, read> x: array<f32>;
@group(0) @binding(${first + 1}) var<storage, read_write> out: array<f32>;`;
  const round = type === GGML_TYPE.F16 ? "roundF16" : type === GGML_TYPE.BF16 ? "roundBf16" : "";
  const q4 = type === GGML_TYPE.Q4_0;
  // integer sum of the 4 products of lane k (values 4k..4k+3) of block b
  const laneSum = q4
    ? `fn laneSum(wb: u32, xb: u32, k: u32) -> i32 {
  let w = wq[wb * 4u + k % 4u];
  let nib = select(w & 0x0f0f0f0fu, (w >> 4u) & 0x0f0f0f0fu, k >= 4u);
  let xv = xq[xb * 8u + k];
  return dot4I8(nib, xv) - 8 * dot4I8(0x01010101u, xv);
}`
    : q
    ? `fn laneSum(wb: u32, xb: u32, k: u32) -> i32 { return dot4I8(wq[wb * 8u + k], xq[xb * 8u + k]); }`
    : "";
  const body = q
    ? /* wgsl */ `
  let nb = p.cols / 32u;
  let wr = rr * nb;
  let xr = t * nb;
  if (${q4 ? "p.rows % 8u == 0u" : "false"}) {
    // whole-block sums, 8 blocks at a time (one per lane), then lane 0 chains them in block order
    for (var g = 0u; g < nb; g += 8u) {
      var s = 0;
      if (g + lane < nb) { for (var k = 0u; k < 8u; k++) { s += laneSum(wr + g + lane, xr + g + lane, k); } }
      blk[li] = s;
      workgroupBarrier();
      if (lane == 0u) {
        for (var k = 0u; k < min(8u, nb - g); k++) { acc = fmaX(f32(blk[li + k]), wd[wr + g + k] * xd[xr + g + k], acc); }
      }
      workgroupBarrier();
    }
    lanes[li] = acc;
    workgroupBarrier();
    if (lane == 0u && valid) { out[t * p.rows + p.rowStart + r] = lanes[li]; }
    return;
  }
  // Q4_1, Q5_1: the min times Q8_1's d * sum(q) summed beside the lanes (fused, as GCC contracts summs += m * s)
  var summs = 0.0;
  for (var b = 0u; b < nb; b++) {
    acc = fmaX(wd[wr + b] * xd[xr + b], f32(laneSum(wr + b, xr + b, lane)), acc);
    ${min ? "summs = fmaX(wm[wr + b], xs[xr + b], summs);" : ""}
  }
  lanes[li] = acc;
  workgroupBarrier();
  if (lane == 0u && valid) { out[t * p.rows + p.rowStart + r] = hsum8(li)${min ? " + summs" : ""}; }`
    : /* wgsl */ `
  let w0 = rr * p.cols;
  let x0 = t * p.cols;
  let tiny = step.n >= 2u && p.rows % 4u == 0u && p.cols % 8u == 0u;
  let lanesUsed = select(32u, 8u, tiny);
  let np = select(p.cols & ~31u, p.cols, tiny);
  if (lane < lanesUsed) {
    for (var i = lane; i < np; i += lanesUsed) {
      let wv = wval(0u, w0 + i, 1u);
      let xv = ${round}(x[x0 + i]);
      ${type === GGML_TYPE.F32 ? "acc = fmaX(wv, xv, acc);" : "acc = wv * xv + acc; // the product of two f16/bf16 values is exact: fused or not, one rounding"}
    }
  }
  lanes[li] = acc;
  workgroupBarrier();
  if (lane == 0u && valid) {
    let base = li;
    var sum = 0.0;
    if (tiny) { sum = hsum8(base); } else {
      sum = ${type === GGML_TYPE.BF16 ? "reduceBf16(base)" : "reduce4x8(base)"};
      for (var i = np; i < p.cols; i++) { sum = ${type === GGML_TYPE.F32 ? "fmaX(wval(0u, w0 + i, 1u), x[x0 + i], sum)" : `sum + wval(0u, w0 + i, 1u) * ${round}(x[x0 + i])`}; }
    }
    out[t * p.rows + p.rowStart + r] = sum;
  }`;
  return header(f) + HELPERS + fmaFn(f.fusedFma) + (f.dot4I8Packed ? DOT4_NATIVE : DOT4_FALLBACK) + weightAccess(type, f.f16) + /* wgsl */ `
struct P { rows: u32, cols: u32, rowStart: u32, chunkRows: u32 }
@group(0) @binding(1) var<uniform> p: P;
${inputs}
var<workgroup> lanes: array<f32, ${WG}>;
${q ? `var<workgroup> blk: array<i32, ${WG}>;` : ""}
${laneSum}
// hsum_float_8: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))
fn hsum8(o: u32) -> f32 {
  return ((lanes[o] + lanes[o + 4u]) + (lanes[o + 2u] + lanes[o + 6u])) + ((lanes[o + 1u] + lanes[o + 5u]) + (lanes[o + 3u] + lanes[o + 7u]));
}
${q ? "" : `// GGML_F32x8_REDUCE of 4 accumulators of 8 lanes, then hadd twice
fn reduce4x8(o: u32) -> f32 {
  var v: array<f32, 8>;
  for (var i = 0u; i < 8u; i++) { v[i] = (lanes[o + i] + lanes[o + 16u + i]) + (lanes[o + 8u + i] + lanes[o + 24u + i]); }
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}
// vec_dot_bf16's reduction: (c1+c3)+(c2+c4) per lane, then (g0+g2)+(g1+g3)
fn reduceBf16(o: u32) -> f32 {
  var c: array<f32, 8>;
  for (var i = 0u; i < 8u; i++) { c[i] = (lanes[o + i] + lanes[o + 16u + i]) + (lanes[o + 8u + i] + lanes[o + 24u + i]); }
  return ((c[4] + c[0]) + (c[6] + c[2])) + ((c[5] + c[1]) + (c[7] + c[3]));
}`}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lane = li % ${L}u;
  let r = (wg.x + wg.y * nwg.x) * ${WG / L}u + li / ${L}u;
  let t = wg.z;
  if (t >= step.n) { return; }
  let valid = r < p.chunkRows;
  let rr = min(r, p.chunkRows - 1u);
  var acc = 0.0;
${body}
}`;
}

/**
 * Activations to Q8_0 blocks as ggml's quantize_row_q8_0: d = amax/127 (kept as f16), q = round-half-even(x * 127/amax);
 * and Q8_1's s = d * sum(q) (f16-rounded from the f32 d) for Q4_1 and Q5_1 weights.
 */
export const quantize = (f: KernelFeatures) => header(f) + HELPERS + fmaFn(f.fusedFma) + exactMath() + /* wgsl */ `
struct P { cols: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> xq: array<u32>;
@group(0) @binding(4) var<storage, read_write> xd: array<f32>;
@group(0) @binding(5) var<storage, read_write> xs: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = g.x + g.y * nwg.x * ${WG}u;
  if (b >= step.n * (p.cols / 32u)) { return; }
  var amax = 0.0;
  for (var j = 0u; j < 32u; j++) { amax = max(amax, abs(x[b * 32u + j])); }
  let d = divCR(vec2f(amax, 0.0), 127.0);
  let id = select(0.0, divCR(vec2f(127.0, 0.0), amax), amax != 0.0);
  xd[b] = roundF16(d);
  var sum = 0;
  for (var k = 0u; k < 8u; k++) {
    var packed = 0u;
    for (var j = 0u; j < 4u; j++) {
      let v = i32(round(x[b * 32u + 4u * k + j] * id));
      sum += v;
      packed |= (u32(v) & 0xffu) << (8u * j);
    }
    xq[b * 8u + k] = packed;
  }
  xs[b] = roundF16(d * f32(sum));
}`;

/**
 * RMSNorm times the weight, one workgroup per row, as ggml: squares rounded to f32 and summed in double (here
 * double-f32), mean and 1/sqrt correctly rounded.
 */
export const rmsnorm = (f: KernelFeatures) => header(f) + fmaFn(f.fusedFma) + exactMath() + /* wgsl */ `
struct P { dim: u32, eps: u32, perToken: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
var<workgroup> part: array<vec2f, ${WG}>;
var<workgroup> scaleS: f32;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  // one row of p.dim values per workgroup; p.perToken rows per token (QK-norm: one per head), 1 when 0
  if (wg.x >= step.n * max(p.perToken, 1u)) { return; }
  let src = wg.x * p.dim;
  let dst = src;
  var ss = vec2f(0.0, 0.0);
  for (var i = li; i < p.dim; i += ${WG}u) { let v = x[src + i]; ss = ddAdd(ss, vec2f(opaque(v * v), 0.0)); }
  part[li] = ss;
  workgroupBarrier();
  if (li == 0u) {
    var total = part[0];
    for (var i = 1u; i < ${WG}u; i++) { total = ddAdd(total, part[i]); }
    let mean = divCR(total, f32(p.dim));
    scaleS = divCR(vec2f(1.0, 0.0), sqrtCR(mean + bitcast<f32>(p.eps)));
  }
  workgroupBarrier();
  let scale = scaleS;
  for (var i = li; i < p.dim; i += ${WG}u) { out[dst + i] = (x[src + i] * scale) * w[i]; }
}`;

/**
 * RoPE (NeoX, rotate-half) in place on `nHeads` heads per token, then times p.scale; the cos/sin table comes from
 * the CPU (glibc-exact values, one row of dims/2 per position). Dimensions past ropeDims pass through.
 */
export const rope = (f: KernelFeatures) => header(f) + fmaFn(f.fusedFma) + /* wgsl */ `
struct P { nHeads: u32, headDim: u32, ropeDims: u32, scale: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> cosT: array<f32>;
@group(0) @binding(4) var<storage, read> sinT: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u) {
  let half = p.ropeDims / 2u;
  let m = p.headDim - half;
  let t = g.y;
  if (t >= step.n || g.x >= p.nHeads * m) { return; }
  let o = t * p.nHeads * p.headDim + (g.x / m) * p.headDim;
  let i = g.x % m;
  let scale = bitcast<f32>(p.scale);
  if (i < half) {
    let c = cosT[(step.pos + t) * half + i];
    let s = sinT[(step.pos + t) * half + i];
    let x0 = v[o + i];
    let x1 = v[o + i + half];
    // x0*cos - x1*sin and x0*sin + x1*cos with the first product fused (as GCC contracts ggml's rope)
    v[o + i] = fmaX(x0, c, -(x1 * s)) * scale;
    v[o + i + half] = fmaX(x0, s, x1 * c) * scale;
  } else {
    v[o + i + half] = v[o + i + half] * scale;
  }
}`;

/** Keys and values of the batch into the f16 cache at positions pos.. (two values per u32). */
export const STORE_KV = HEADER + /* wgsl */ `
struct P { kvDim: u32, cells: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> kc: array<u32>;
@group(0) @binding(5) var<storage, read_write> vc: array<u32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u) {
  let t = g.y;
  let pairs = p.kvDim / 2u;
  if (t >= step.n || g.x >= pairs) { return; }
  let src = t * p.kvDim + 2u * g.x;
  let dst = ((step.pos + t) % p.cells) * pairs + g.x; // a ring on sliding-window layers (config.ts layerCells)
  kc[dst] = pack2x16float(vec2f(k[src], k[src + 1u]));
  vc[dst] = pack2x16float(vec2f(v[src], v[src + 1u]));
}`;

/**
 * Causal attention of one query head for one token over the f16 cache (one workgroup each), in the two forms of
 * llama.cpp's CPU flash attention (model/ops.ts: attendHead, attendHeadTiled), operation for operation. Scores come
 * a tile of 64 cells at a time, one per thread; each thread keeps its share of the head's dimensions
 * (head_dim <= 512) and every thread runs the same softmax bookkeeping. The cache has p.cells cells (a ring of
 * them on a sliding-window layer), visited in cell order; each query sees the cells that hold its last p.window
 * positions (0: all before it), and soft-caps its scores by p.cap (0: none).
 *  - Batches under 64 rows: the query rounded to f16, scores as vec_dot_f16 (32 lanes), positions folded in one by
 *    one with glibc's expf into f16-rounded accumulators.
 *  - Batches of 64+ rows: the query in f32, scores as fma chains, one softmax step per tile with ggml_v_expf and
 *    the tile's sum in double, f32 accumulators.
 */
export const attention = (f: KernelFeatures) => header(f) + HELPERS + fmaFn(f.fusedFma) + exactMath() + /* wgsl */ `
struct P { headDim: u32, kvDim: u32, headsPerKv: u32, qDim: u32, cells: u32, window: u32, cap: u32, pad: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read> q: array<f32>;
${f.f16
  ? `@group(0) @binding(3) var<storage, read> kc: array<f16>;
@group(0) @binding(4) var<storage, read> vc: array<f16>;
fn kAt(e: u32) -> f32 { return f32(kc[e]); }
fn vAt(e: u32) -> f32 { return f32(vc[e]); }`
  : `@group(0) @binding(3) var<storage, read> kc: array<u32>;
@group(0) @binding(4) var<storage, read> vc: array<u32>;
fn kAt(e: u32) -> f32 { return unpack2x16float(kc[e / 2u])[e % 2u]; }
fn vAt(e: u32) -> f32 { return unpack2x16float(vc[e / 2u])[e % 2u]; }`}
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
var<workgroup> qs: array<f32, 512>;
var<workgroup> pt: array<f32, ${WG}>;
var<workgroup> ok: array<u32, ${WG}>;
// ggml_vec_dot_f16 of the cached key at element \`base\` and the f16 query: 32 lanes (the products are exact), the
// GGML_F32x8_REDUCE of them, the leftover products summed in double
fn dotF16(base: u32, d: u32) -> f32 {
  var l: array<f32, 32>;
  let np = d & ~31u;
  for (var i0 = 0u; i0 < np; i0 += 32u) {
    for (var j = 0u; j < 32u; j++) { l[j] = l[j] + qs[i0 + j] * kAt(base + i0 + j); }
  }
  var v: array<f32, 8>;
  for (var i = 0u; i < 8u; i++) { v[i] = (l[i] + l[16u + i]) + (l[8u + i] + l[24u + i]); }
  var sum = vec2f(((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])), 0.0);
  for (var i = np; i < d; i++) { sum = ddAdd(sum, vec2f(opaque(qs[i] * kAt(base + i)), 0.0)); }
  return sum.x + sum.y;
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let h = wg.x;
  let t = wg.y;
  if (t >= step.n) { return; }
  let tiled = step.n >= 64u;
  let d = p.headDim;
  let kvOff = (h / p.headsPerKv) * d;
  let qo = t * p.qDim + h * d;
  for (var i = li; i < d; i += ${WG}u) { qs[i] = select(roundF16(q[qo + i]), q[qo + i], tiled); }
  workgroupBarrier();
  // cell c of the layer's cache holds the latest position <= last that is c modulo p.cells (a ring on sliding-window
  // layers, the positions themselves elsewhere); the query at qp sees those in [lo, qp] (model/ops.ts visibleCells)
  let last = step.pos + step.n - 1u;
  let qp = step.pos + t;
  let filled = min(p.cells, last + 1u);
  let lo = select(0u, qp + 1u - min(p.window, qp + 1u), p.window > 0u);
  let cap = bitcast<f32>(p.cap);
  var m = -3.0e38; // "no score yet": exp(m - s) underflows to 0, as exp(-inf)
  var s = 0.0;
  var acc: array<f32, 8>;
  for (var p0 = 0u; p0 < filled; p0 += ${WG}u) {
    let ci = p0 + li;
    let cnt = min(${WG}u, filled - p0);
    var score = -3.0e38;
    var seen = false;
    if (ci < filled) {
      let held = ci + ((last - ci) / p.cells) * p.cells;
      seen = held <= qp && held >= lo;
    }
    if (seen) {
      let base = ci * p.kvDim + kvOff;
      if (tiled) {
        var sc = 0.0;
        for (var i = 0u; i < d; i++) { sc = fmaX(qs[i], kAt(base + i), sc); }
        score = sc;
      } else {
        score = dotF16(base, d);
      }
      // soft-capping (Gemma 2): cap * tanh(s * (1 / cap)), glibc's tanhf
      if (p.cap != 0u) { score = opaque(cap * tanhfGlibc(score * divCR(vec2f(1.0, 0.0), cap))); }
    }
    pt[li] = score;
    ok[li] = select(0u, 1u, seen);
    workgroupBarrier();
    if (tiled) {
      // a tile the query sees nothing of is skipped, as ggml skips it
      var tileMax = -3.0e38;
      var any = false;
      for (var j = 0u; j < cnt; j++) {
        if (ok[j] == 1u) { tileMax = max(tileMax, pt[j]); any = true; }
      }
      if (any) {
        let mNew = max(m, tileMax);
        if (mNew > m) {
          let ms = expGlibc(m - mNew);
          for (var k = 0u; k < 8u; k++) { acc[k] = acc[k] * ms; }
          s = s * ms;
        }
        m = mNew;
      }
      workgroupBarrier();
      pt[li] = select(0.0, vExpf(score - m), seen);
      workgroupBarrier();
      if (any) {
        var sum = vec2f(0.0, 0.0);
        for (var g = 0u; g < ${WG}u; g += 8u) {
          sum = ddAdd(sum, vec2f(((pt[g] + pt[g + 4u]) + (pt[g + 2u] + pt[g + 6u])) + ((pt[g + 1u] + pt[g + 5u]) + (pt[g + 3u] + pt[g + 7u])), 0.0));
        }
        let total = ddAdd(vec2f(s, 0.0), sum);
        s = total.x + total.y;
        for (var k = 0u; k < 8u; k++) {
          let i = li + ${WG}u * k;
          if (i < d) {
            var a = acc[k];
            for (var j = 0u; j < cnt; j++) { a = fmaX(pt[j], vAt((p0 + j) * p.kvDim + kvOff + i), a); }
            acc[k] = a;
          }
        }
      }
    } else {
      for (var j = 0u; j < cnt; j++) {
        if (ok[j] == 0u) { continue; }
        let sj = pt[j];
        var ms = 1.0;
        var vs = 1.0;
        if (sj > m) { ms = expGlibc(m - sj); m = sj; } else { vs = expGlibc(sj - m); }
        for (var k = 0u; k < 8u; k++) {
          let i = li + ${WG}u * k;
          if (i < d) {
            var a = acc[k];
            if (ms != 1.0) { a = roundF16(a * ms); }
            acc[k] = roundF16(fmaX(vAt((p0 + j) * p.kvDim + kvOff + i), vs, a));
          }
        }
        s = opaque(s * ms) + vs;
      }
    }
    workgroupBarrier();
  }
  let inv = select(divCR(vec2f(1.0, 0.0), s), 0.0, s == 0.0);
  for (var k = 0u; k < 8u; k++) {
    let i = li + ${WG}u * k;
    if (i < d) { out[qo + i] = acc[k] * inv; }
  }
}`;

/** An element-wise kernel over the batch's rows of p.cols values: `body` runs for element i. */
const elementwise = (bindings: string, body: string) => HEADER + /* wgsl */ `
struct P { cols: u32 }
@group(0) @binding(1) var<uniform> p: P;
${bindings}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = g.x + g.y * nwg.x * ${WG}u;
  if (i >= step.n * p.cols) { return; }
  ${body}
}`;

/** gate = gelu(gate) * up through ggml's f16 GELU table (the CPU path's own table, uploaded). */
export const GEGLU = elementwise(
  `@group(0) @binding(2) var<storage, read_write> gate: array<f32>;
@group(0) @binding(3) var<storage, read> up: array<f32>;
@group(0) @binding(4) var<storage, read> gelu: array<f32>;`,
  `let x = gate[i];
  var y = x;
  if (x <= -10.0) { y = 0.0; } else if (x < 10.0) { y = gelu[pack2x16float(vec2f(x, 0.0)) & 0xffffu]; }
  gate[i] = y * up[i];`,
);

/** x += y over the batch's rows. */
export const ADD = elementwise(
  `@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;`,
  "x[i] = x[i] + y[i];",
);

/** Row step.lastRow of x to row 0 (before the last layer's feed-forward runs on the last token only). */
export const COPY_LAST_ROW = HEADER + /* wgsl */ `
struct P { cols: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= p.cols || step.lastRow == 0u) { return; }
  x[g.x] = x[step.lastRow * p.cols + g.x];
}`;
