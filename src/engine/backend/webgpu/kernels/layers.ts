// Per-layer kernels other than the products and attention: RMSNorm, RoPE, the final soft-cap, and the probe that
// tells whether the device's fma is fused.
import { HEADER, type KernelFeatures, WG, exactMath, fmaFn, header } from "./common.ts";

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
