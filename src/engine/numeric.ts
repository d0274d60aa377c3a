// Scalar number formats the weights and caches use: IEEE half (f16) and bfloat16, with the same
// round-to-nearest-even conversions as ggml (ggml-impl.h: ggml_compute_fp32_to_fp16, ggml_compute_fp32_to_bf16).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 -> f16 bits, round to nearest even; NaN stays NaN, overflow becomes infinity. */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // may carry into the exponent: still correct
  return sign | h;
}

const F16_TABLE = new Float32Array(65536);
for (let h = 0; h < 65536; h++) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  let v: number;
  if (exp === 0) v = mant * 2 ** -24;
  else if (exp === 0x1f) v = mant ? NaN : Infinity;
  else v = (1 + mant / 1024) * 2 ** (exp - 15);
  F16_TABLE[h] = sign * v;
}

/** f16 bits -> number (exact). */
export function f16ToF32(h: number): number {
  return F16_TABLE[h & 0xffff]!;
}

/** Round a number to the nearest f16 value (as ggml does when it stores f16). */
export function roundF16(value: number): number {
  return F16_TABLE[f32ToF16(value)]!;
}

/** f32 -> bf16 bits, round to nearest even (NaN made quiet), as ggml_compute_fp32_to_bf16. */
export function f32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 64;
  return ((x + (0x7fff + ((x >>> 16) & 1))) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

// ---- expf as glibc computes it (the exp2f-table algorithm of ARM's optimized-routines, evaluated in double,
// ---- no FMA): llama.cpp's softmax calls expf, and a last-bit difference there moves f16-rounded attention sums.

const EXP2F_N = 32;
/** Bits of 2^(i/32) minus i << 47 (high and low 32-bit halves). */
const EXP2F_TAB = [
  0x3ff00000, 0x00000000, 0x3fefd9b0, 0xd3158574, 0x3fefb558, 0x6cf9890f, 0x3fef9301, 0xd0125b51,
  0x3fef72b8, 0x3c7d517b, 0x3fef5487, 0x3168b9aa, 0x3fef387a, 0x6e756238, 0x3fef1e9d, 0xf51fdee1,
  0x3fef06fe, 0x0a31b715, 0x3feef1a7, 0x373aa9cb, 0x3feedea6, 0x4c123422, 0x3feece08, 0x6061892d,
  0x3feebfda, 0xd5362a27, 0x3feeb42b, 0x569d4f82, 0x3feeab07, 0xdd485429, 0x3feea47e, 0xb03a5585,
  0x3feea09e, 0x667f3bcd, 0x3fee9f75, 0xe8ec5f74, 0x3feea114, 0x73eb0187, 0x3feea589, 0x994cce13,
  0x3feeace5, 0x422aa0db, 0x3feeb737, 0xb0cdc5e5, 0x3feec491, 0x82a3f090, 0x3feed503, 0xb23e255d,
  0x3feee89f, 0x995ad3ad, 0x3feeff76, 0xf2fb5e47, 0x3fef199b, 0xdd85529c, 0x3fef3720, 0xdcef9069,
  0x3fef5818, 0xdcfba487, 0x3fef7c97, 0x337b9b5f, 0x3fefa4af, 0xa2a490da, 0x3fefd076, 0x5b6e4540,
];
const f64 = new Float64Array(1);
const f64u = new Uint32Array(f64.buffer); // little-endian: [low, high]
function fromBits(hi: number, lo: number): number {
  f64u[0] = lo;
  f64u[1] = hi;
  return f64[0]!;
}
const INV_LN2_N = fromBits(0x3ff71547, 0x652b82fe) * EXP2F_N; // 0x1.71547652b82fep+0 * N
const SHIFT = 1.5 * 2 ** 52;
const C0 = fromBits(0x3fac6af8, 0x4b912394) / EXP2F_N ** 3; // 0x1.c6af84b912394p-5 / N^3
const C1 = fromBits(0x3fcebfce, 0x50fac4f3) / EXP2F_N ** 2; // 0x1.ebfce50fac4f3p-3 / N^2
const C2 = fromBits(0x3fe62e42, 0xff0c52d6) / EXP2F_N; //      0x1.62e42ff0c52d6p-1 / N

/** glibc expf's constants as doubles (2^(i/32) for its table), for kernels that redo its arithmetic (WebGPU). */
export function expfConstants(): { invLn2N: number; c0: number; c1: number; c2: number; pow2: number[] } {
  const pow2 = Array.from({ length: EXP2F_N }, (_, i) => fromBits((EXP2F_TAB[2 * i]! + (i << 15)) >>> 0, EXP2F_TAB[2 * i + 1]!));
  return { invLn2N: INV_LN2_N, c0: C0, c1: C1, c2: C2, pow2 };
}

/** ggml_v_expf's f32 constants (for the WebGPU port of vExpf). */
export const vExpfConstants = (): Record<string, number> => ({ ...VEXP });

/** expf(x) for an f32 x, bit for bit as glibc's. */
export function expf(x: number): number {
  if (Number.isNaN(x)) return x;
  if (x > 88.72283172607422) return Infinity; // 0x1.62e42ep6f
  if (x < -103.97207641601562) return 0; //       -0x1.9fe368p6f
  const z = INV_LN2_N * x;
  const kd = z + SHIFT - SHIFT; // round to nearest integer (ties to even), in double
  const r = z - kd;
  const k = kd | 0;
  const i = k & (EXP2F_N - 1);
  // 2^(k/N) = table entry with k shifted into the exponent (k << 47 touches only the high word)
  const s = fromBits((EXP2F_TAB[2 * i]! + ((k & 0x1ffff) << 15)) >>> 0, EXP2F_TAB[2 * i + 1]!);
  const p = C0 * r + C1;
  const y = p * (r * r) + (C2 * r + 1);
  return Math.fround(y * s);
}

// ---- sinf/cosf as glibc computes them (ARM optimized-routines sincosf: double-precision polynomial after a
// ---- pi/2 range reduction); llama.cpp builds its RoPE cos/sin table with them.

/** A double from a C hex literal like "-0x1.ffffffd0c621cp-2". */
function hexDouble(s: string): number {
  const m = /^(-?)0x([0-9a-f])(?:\.([0-9a-f]+))?p([+-]?\d+)$/i.exec(s);
  if (!m) throw new Error(`bad hex float ${s}`);
  const frac = m[3] ?? "0";
  const v = (parseInt(m[2]!, 16) + parseInt(frac, 16) / 16 ** frac.length) * 2 ** Number(m[4]);
  return m[1] ? -v : v;
}
const SC_HPI_INV = hexDouble("0x1.45F306DC9C883p+23");
const SC_HPI = hexDouble("0x1.921FB54442D18p0");
const SC_C = ["0x1p0", "-0x1.ffffffd0c621cp-2", "0x1.55553e1068f19p-5", "-0x1.6c087e89a359dp-10", "0x1.99343027bf8c3p-16"].map(hexDouble);
const SC_S = ["-0x1.555545995a603p-3", "0x1.1107605230bc4p-7", "-0x1.994eb3774cf24p-13"].map(hexDouble);
const SC_SIGN = [1, -1, -1, 1];
const PIO2P63 = hexDouble("0x1.921FB54442D18p-62");
const INV_PIO4 = [
  0xa2, 0xa2f9, 0xa2f983, 0xa2f9836e, 0xf9836e4e, 0x836e4e44, 0x6e4e4415, 0x4e441529,
  0x441529fc, 0x1529fc27, 0x29fc2757, 0xfc2757d1, 0x2757d1f5, 0x57d1f534, 0xd1f534dd, 0xf534ddc0,
  0x34ddc0db, 0xddc0db62, 0xc0db6295, 0xdb629599, 0x6295993c, 0x95993c43, 0x993c4390, 0x3c439041,
].map(BigInt);
const M64 = (1n << 64n) - 1n;

function abstop12(y: number): number {
  f32[0] = y;
  return (u32[0]! >>> 20) & 0x7ff;
}
const ABSTOP_PIO4 = abstop12(0.7853981852531433); // 0x1.921FB6p-1f
const ABSTOP_2P12 = abstop12(2 ** -12);
const ABSTOP_120 = abstop12(120);

/** sinf_poly: table 0 or, with `neg`, table 1 (the negated cosine coefficients). */
function sincosPoly(x: number, x2: number, neg: boolean, n: number): number {
  if ((n & 1) === 0) {
    const x3 = x * x2;
    const s1 = SC_S[1]! + x2 * SC_S[2]!;
    const x7 = x3 * x2;
    const s = x + x3 * SC_S[0]!;
    return Math.fround(s + x7 * s1);
  }
  const g = neg ? -1 : 1;
  const x4 = x2 * x2;
  const c2 = g * SC_C[3]! + x2 * (g * SC_C[4]!);
  const c1 = g * SC_C[0]! + x2 * (g * SC_C[1]!);
  const x6 = x4 * x2;
  const c = c1 + x4 * (g * SC_C[2]!);
  return Math.fround(c + x6 * c2);
}

/** Range reduction of |x| >= 120 with the 192-bit 4/pi table; returns [r, quadrant]. */
function reduceLarge(xi: number): [number, number] {
  const o = (xi >>> 26) & 15;
  const shift = (xi >>> 23) & 7;
  const m = BigInt((((xi & 0xffffff) | 0x800000) << shift) >>> 0);
  let res0 = (m * INV_PIO4[o]!) & 0xffffffffn;
  const res1 = m * INV_PIO4[o + 4]!;
  const res2 = m * INV_PIO4[o + 8]!;
  res0 = ((res2 >> 32n) | (res0 << 32n)) & M64;
  res0 = (res0 + res1) & M64;
  const n = (res0 + (1n << 61n)) >> 62n;
  res0 = (res0 - (n << 62n)) & M64;
  const signed = res0 >= 1n << 63n ? res0 - (1n << 64n) : res0;
  return [Number(signed) * PIO2P63, Number(n)];
}

function sinOrCos(y: number, cos: boolean): number {
  const top = abstop12(y);
  if (top < ABSTOP_PIO4) {
    if (top < ABSTOP_2P12) return cos ? 1 : y;
    return sincosPoly(y, y * y, false, cos ? 1 : 0);
  }
  let x: number;
  let n: number;
  let q: number;
  if (top < ABSTOP_120) {
    // n = ((int32_t)(x * hpi_inv) + 0x800000) >> 24
    n = (Math.trunc(y * SC_HPI_INV) + 0x800000) >> 24;
    x = y - n * SC_HPI;
    q = n;
  } else if (Number.isFinite(y)) {
    f32[0] = y;
    const xi = u32[0]!;
    [x, n] = reduceLarge(xi);
    q = n + (xi >>> 31);
  } else {
    return NaN;
  }
  const s = SC_SIGN[q & 3]!;
  return sincosPoly(x * s, x * x, (q & 2) !== 0, cos ? n ^ 1 : n);
}

/** sinf(x) for an f32 x, bit for bit as glibc's. */
export function sinf(x: number): number {
  return sinOrCos(x, false);
}

/** cosf(x) for an f32 x, bit for bit as glibc's. */
export function cosf(x: number): number {
  return sinOrCos(x, true);
}

// ---- ggml_v_expf (AVX2 + FMA), the vectorized exp of ggml's softmax, one lane at a time ----

const VEXP = {
  r: 12582912, // 0x1.8p23
  log2e: Math.fround(hexDouble("0x1.715476p+0")),
  ln2hi: Math.fround(hexDouble("0x1.62e4p-1")),
  ln2lo: Math.fround(hexDouble("0x1.7f7d1cp-20")),
  p0: Math.fround(hexDouble("0x1.0e4020p-7")),
  p1: Math.fround(hexDouble("0x1.573e2ep-5")),
  p2: Math.fround(hexDouble("0x1.555e66p-3")),
  p3: Math.fround(hexDouble("0x1.fffdb6p-2")),
  p4: Math.fround(hexDouble("0x1.ffffecp-1")),
};
const fma = (a: number, b: number, c: number) => Math.fround(a * b + c);
const bitsToF32 = (b: number) => ((u32[0] = b >>> 0), f32[0]!);

/** One lane of ggml_v_expf(x): exp(x) to within a few ulp, the same bits as llama.cpp's AVX2 build. */
export function vExpf(x: number): number {
  const { r } = VEXP;
  const z = fma(x, VEXP.log2e, r);
  const n = Math.fround(z - r);
  const b = fma(-n, VEXP.ln2lo, fma(-n, VEXP.ln2hi, x));
  f32[0] = z;
  const e = (u32[0]! << 23) | 0;
  const k = bitsToF32(e + 0x3f800000);
  const u = Math.fround(b * b);
  const j = fma(fma(fma(VEXP.p0, b, VEXP.p1), u, fma(VEXP.p2, b, VEXP.p3)), u, Math.fround(VEXP.p4 * b));
  const an = Math.abs(n);
  if (!(an > 126)) return fma(k, j, k);
  const g = n <= 0 ? 0x82000000 : 0;
  const s1 = bitsToF32(g + 0x7f000000);
  if (an > 192) return Math.fround(s1 * s1);
  const s2 = bitsToF32(e - g);
  return Math.fround(fma(s2, j, s2) * s1);
}

// ---- tanhf as glibc computes it (sysdeps/ieee754/flt-32: s_tanhf.c over s_expm1f.c, Sun's fdlibm, every
// ---- step in f32). ggml's tanh (Gemma 2's soft-capping of attention scores and logits) calls it.

const fr = Math.fround;
const f32i = new Int32Array(f32.buffer);
const floatBits = (x: number) => ((f32[0] = x), f32i[0]!);
const floatOfBits = (b: number) => ((f32i[0] = b | 0), f32[0]!);
const EXPM1F = {
  ln2hi: fr(6.9313812256e-1), ln2lo: fr(9.0580006145e-6), invln2: fr(1.4426950216),
  q1: fr(-3.3333335072e-2), q2: fr(1.5873016091e-3), q3: fr(-7.9365076090e-5), q4: fr(4.0082177293e-6), q5: fr(-2.0109921195e-7),
};

/** expm1f(x) for an f32 x, bit for bit as glibc's (2.36). */
export function expm1f(x: number): number {
  const E = EXPM1F;
  let hx = floatBits(x);
  const neg = hx < 0;
  hx &= 0x7fffffff;
  if (hx >= 0x4195b844) { // |x| >= 27 ln2
    if (hx >= 0x42b17218) { // |x| >= 88.72
      if (hx > 0x7f800000) return x; // NaN
      if (hx === 0x7f800000) return neg ? -1 : x;
      if (x > 88.72167969) return Infinity;
    }
    if (neg) return -1;
  }
  let k: number, c = 0;
  if (hx > 0x3eb17218) { // |x| > ln2 / 2: x = k ln2 + r
    let hi: number, lo: number;
    if (hx < 0x3f851592) { // and |x| < 1.5 ln2
      if (!neg) (hi = fr(x - E.ln2hi)), (lo = E.ln2lo), (k = 1);
      else (hi = fr(x + E.ln2hi)), (lo = -E.ln2lo), (k = -1);
    } else {
      k = Math.trunc(fr(fr(E.invln2 * x) + (neg ? -0.5 : 0.5)));
      hi = fr(x - fr(k * E.ln2hi));
      lo = fr(k * E.ln2lo);
    }
    x = fr(hi - lo);
    c = fr(fr(hi - x) - lo);
  } else if (hx < 0x33000000) {
    return x; // |x| < 2^-25
  } else k = 0;
  const hfx = fr(0.5 * x);
  const hxs = fr(x * hfx);
  const r1 = fr(1 + fr(hxs * fr(E.q1 + fr(hxs * fr(E.q2 + fr(hxs * fr(E.q3 + fr(hxs * fr(E.q4 + fr(hxs * E.q5))))))))));
  const t = fr(3 - fr(r1 * hfx));
  let e = fr(hxs * fr(fr(r1 - t) / fr(6 - fr(x * t))));
  if (k === 0) return fr(x - fr(fr(x * e) - hxs));
  e = fr(fr(x * fr(e - c)) - c);
  e = fr(e - hxs);
  if (k === -1) return fr(fr(0.5 * fr(x - e)) - 0.5);
  if (k === 1) return x < -0.25 ? fr(-2 * fr(e - fr(x + 0.5))) : fr(1 + fr(2 * fr(x - e)));
  if (k <= -2 || k > 56) {
    let y = fr(1 - fr(e - x));
    y = k === 128 ? fr(fr(y * 2) * 2 ** 127) : floatOfBits(floatBits(y) + (k << 23));
    return fr(y - 1);
  }
  let y: number;
  if (k < 23) {
    const t1 = floatOfBits(0x3f800000 - (0x1000000 >> k)); // 1 - 2^-k
    y = fr(t1 - fr(e - x));
  } else {
    const t1 = floatOfBits((0x7f - k) << 23); // 2^-k
    y = fr(fr(x - fr(e + t1)) + 1);
  }
  return floatOfBits(floatBits(y) + (k << 23));
}

/** tanhf(x) for an f32 x, bit for bit as glibc's (2.36). */
export function tanhf(x: number): number {
  const jx = floatBits(x);
  const ix = jx & 0x7fffffff;
  if (ix >= 0x7f800000) return Number.isNaN(x) ? x : jx >= 0 ? 1 : -1;
  let z: number;
  if (ix < 0x41b00000) { // |x| < 22
    if (ix === 0) return x;
    if (ix < 0x24000000) return fr(x * fr(1 + x)); // |x| < 2^-55
    if (ix >= 0x3f800000) { // |x| >= 1
      const t = expm1f(fr(2 * Math.abs(x)));
      z = fr(1 - fr(2 / fr(t + 2)));
    } else {
      const t = expm1f(fr(-2 * Math.abs(x)));
      z = fr(-t / fr(t + 2));
    }
  } else z = 1;
  return jx >= 0 ? z : -z;
}
