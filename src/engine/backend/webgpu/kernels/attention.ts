// Attention: writing K and V into the f16 cache, and flash attention over it (ggml's CPU order, soft-cap and
// sliding window included).
import { HEADER, HELPERS, type KernelFeatures, WG, exactMath, fmaFn, header } from "./common.ts";

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
