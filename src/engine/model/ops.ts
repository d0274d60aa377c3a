// Element-wise pieces of the forward pass, each rounding the way ggml's CPU ops do (f32 math, f16 where
// ggml keeps f16), so that greedy decoding agrees with llama.cpp token for token.
import { f16ToF32, f32ToF16 } from "../numeric.ts";

const fr = Math.fround;

/** ggml_rms_norm followed by ggml_mul with the weight: sum of squares in double, the rest in f32. */
export function rmsNorm(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
  const n = weight.length;
  for (let t = 0; t < x.length / n; t++) {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const v = x[t * n + i]!;
      sum += fr(v * v);
    }
    const mean = fr(sum / n);
    const scale = fr(1 / fr(Math.sqrt(fr(mean + eps))));
    for (let i = 0; i < n; i++) out[t * n + i] = fr(fr(x[t * n + i]! * scale) * weight[i]!);
  }
}

/** RoPE, NeoX (rotate-half) form, as ggml_rope_ext: theta advances by repeated f32 multiplication. */
export class Rope {
  private readonly cos: Float32Array;
  private readonly sin: Float32Array;
  private readonly headDim: number;
  constructor(headDim: number, theta: number, maxPos: number) {
    this.headDim = headDim;
    const half = headDim / 2;
    this.cos = new Float32Array(maxPos * half);
    this.sin = new Float32Array(maxPos * half);
    const thetaScale = fr(Math.pow(theta, -2 / headDim));
    for (let p = 0; p < maxPos; p++) {
      let t = p;
      for (let i = 0; i < half; i++) {
        this.cos[p * half + i] = Math.cos(t);
        this.sin[p * half + i] = Math.sin(t);
        t = fr(t * thetaScale);
      }
    }
  }
  /** Rotate `nHeads` heads of `vec` (one token) in place for position `pos`. */
  apply(vec: Float32Array, nHeads: number, pos: number): void {
    const half = this.headDim / 2;
    const c = this.cos.subarray(pos * half, (pos + 1) * half);
    const s = this.sin.subarray(pos * half, (pos + 1) * half);
    for (let h = 0; h < nHeads; h++) {
      const o = h * this.headDim;
      for (let i = 0; i < half; i++) {
        const x0 = vec[o + i]!;
        const x1 = vec[o + i + half]!;
        vec[o + i] = fr(fr(x0 * c[i]!) - fr(x1 * s[i]!));
        vec[o + i + half] = fr(fr(x0 * s[i]!) + fr(x1 * c[i]!));
      }
    }
  }
}

/** GELU (tanh form) through an f16 table, as ggml with GGML_GELU_FP16 does. */
const GELU_F16 = new Float32Array(65536);
{
  const SQRT_2_OVER_PI = 0.7978845608028654;
  const GELU_COEF_A = 0.044715;
  for (let h = 0; h < 65536; h++) {
    const x = f16ToF32(h);
    const g = 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * x * (1 + GELU_COEF_A * x * x)));
    GELU_F16[h] = f16ToF32(f32ToF16(fr(g)));
  }
}

/** GeGLU: out = gelu(gate) * up (ggml_vec_geglu_f32). */
export function geglu(out: Float32Array, gate: Float32Array, up: Float32Array): void {
  for (let i = 0; i < out.length; i++) {
    const x = gate[i]!;
    let g: number;
    if (x <= -10) g = 0;
    else if (x >= 10) g = x;
    else g = GELU_F16[f32ToF16(x)]!;
    out[i] = fr(g * up[i]!);
  }
}

/**
 * Attention of one query head over `n` cached positions, as ggml's CPU flash attention with an f16 KV cache:
 * q rounded to f16, scores in f32, online softmax, the weighted sum of V accumulated in f16.
 * `k`/`v` are f16 bit patterns, position p of this KV head at p*stride + offset.
 */
export function attendHead(
  out: Float32Array,
  q: Float32Array,
  k: Uint16Array,
  v: Uint16Array,
  n: number,
  stride: number,
  offset: number,
  acc: Float32Array,
): void {
  const d = q.length;
  const qh = new Float32Array(d);
  for (let i = 0; i < d; i++) qh[i] = f16ToF32(f32ToF16(q[i]!));
  let S = 0;
  let M = -Infinity;
  acc.fill(0);
  for (let p = 0; p < n; p++) {
    const base = p * stride + offset;
    let s = 0;
    for (let i = 0; i < d; i++) s += f16ToF32(k[base + i]!) * qh[i]!;
    s = fr(s);
    let ms = 1;
    let vs = 1;
    if (s > M) {
      const mOld = M;
      M = s;
      ms = fr(Math.exp(mOld - M));
      for (let i = 0; i < d; i++) acc[i] = f16ToF32(f32ToF16(fr(acc[i]! * ms)));
    } else {
      vs = fr(Math.exp(s - M));
    }
    for (let i = 0; i < d; i++) acc[i] = f16ToF32(f32ToF16(fr(acc[i]! + f16ToF32(v[base + i]!) * vs)));
    S = fr(fr(S * ms) + vs);
  }
  const inv = S === 0 ? 0 : fr(1 / S);
  for (let i = 0; i < d; i++) out[i] = fr(acc[i]! * inv);
}
