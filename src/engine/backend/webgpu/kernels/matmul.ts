// Matrix products in every weight type (and the embedding lookup), and the Q8_0 quantization of activations
// that llama.cpp does before a quantized product.
import { GGML_TYPE } from "../../../ggml-types.ts";
import { DOT4_FALLBACK, DOT4_NATIVE, HELPERS, type KernelFeatures, WG, exactMath, fmaFn, header } from "./common.ts";

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
