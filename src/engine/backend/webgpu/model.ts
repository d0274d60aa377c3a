// The Gemma forward pass on WebGPU: weights, activations and the KV cache live in GPU buffers; one command buffer
// per forward call runs every layer (kernels.ts) and only the logits come back. The host hands in a GPUDevice
// (Node: the `webgpu` package; browsers: navigator.gpu), so this file has no host imports.
//
// Weight matrices larger than the device's maxStorageBufferBindingSize are split by rows into chunks, each its own
// buffers and bind group. Numerics follow llama.cpp's CPU backend as the WebAssembly kernels do: Q8_0 activations
// for quantized weights, activations rounded to f16/bf16 for those weights, matrix sums in ggml's x86 order,
// glibc's RoPE table, ggml's GELU table, an f16 KV cache with f16 accumulators for short batches, RMSNorm's double
// sum, ggml's exp and attention's dot products in the WebAssembly kernels' order (exact fma and exp emulated where
// the device lacks them): the tests require the logits to equal the WebAssembly backend's bit for bit.
// Arithmetic is f32 everywhere (agreement needs it); where the device has shader-f16 the kernels read the f16 KV
// cache and F16 weights as native f16 values instead of unpacking them from u32 words (the same values).
import type { ByteSource } from "../../byte-source.ts";
import { layerCells, layerKind, layerSteps, type GemmaConfig, type LayerStep } from "../../config.ts";
import { GGML_TYPE, ggmlTypeName, typeLayout } from "../../ggml-types.ts";
import { legacyBlockValue } from "../../quant.ts";
import type { GgufTensorInfo } from "../../gguf.ts";
import { f16ToF32 } from "../../numeric.ts";
import { planTensors, readModelHeader, readVector, type LoadOptions, type RunnableModel } from "../../model/load.ts";
import { GELU_F16, Rope } from "../../model/ops.ts";
import {
  ADD, attention, COPY_LAST_ROW, embedKernel, f32bits, fmaProbe, GEGLU, hasMin, isQuantized, matmulKernel, matmulRowsPerGroup, quantize, rmsnorm, rope, softcapLogits, STORE_KV, WG,
  type KernelFeatures,
} from "./kernels.ts";

// GPUBufferUsage / GPUMapMode values (the globals are not defined in every host)
const MAP_READ = 0x1;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const UNIFORM = 0x40;
const STORAGE = 0x80;

const MAX_GROUPS = 65535;

export interface WebGpuOptions extends LoadOptions {
  /** Split weights into bindings of at most this many bytes (default: the device's maxStorageBufferBindingSize). */
  maxBindingBytes?: number;
  /** WGSL has dot4I8Packed (gpu.wgslLanguageFeatures has "packed_4x8_integer_dot_product"); else a fallback. */
  dot4I8Packed?: boolean;
}

/** One row range of a weight matrix in its own GPU buffers. */
interface Chunk {
  rowStart: number;
  rows: number;
  buffers: GPUBuffer[]; // [wq] or [wq, wd]
}

interface GpuWeight {
  name: string;
  type: number;
  rows: number;
  cols: number;
  chunks: Chunk[];
}

interface GpuLayer {
  wq: GpuWeight; wk: GpuWeight; wv: GpuWeight; wo: GpuWeight; wGate: GpuWeight; wUp: GpuWeight; wDown: GpuWeight;
  attnNorm: GPUBuffer; ffnNorm: GPUBuffer;
  /** Gemma 2 and 3: the norms after attention and after the feed-forward; Gemma 3: QK-norms (config.ts). */
  attnPostNorm?: GPUBuffer; ffnPostNorm?: GPUBuffer; qNorm?: GPUBuffer; kNorm?: GPUBuffer;
}

/** GPU bytes per row of a weight in the layout kernels.ts reads. */
function gpuRowBytes(type: number, cols: number): number[] {
  switch (type) {
    case GGML_TYPE.Q4_0: return [(cols / 32) * 16, (cols / 32) * 4];
    case GGML_TYPE.Q8_0: case GGML_TYPE.Q5_0: return [(cols / 32) * 32, (cols / 32) * 4];
    case GGML_TYPE.Q4_1: case GGML_TYPE.Q5_1: return [(cols / 32) * 32, (cols / 32) * 4, (cols / 32) * 4];
    case GGML_TYPE.F16: case GGML_TYPE.BF16: return [cols * 2];
    case GGML_TYPE.F32: return [cols * 4];
  }
  throw new Error(`no WebGPU layout for ggml type ${ggmlTypeName(type)}`);
}

/**
 * GGUF row bytes -> the GPU layout (quantized blocks split into packed values and f32 scales): Q5_0 as Q8_0
 * (its values -16..15 as int8; the products and sums are the same integers), Q4_1 and Q5_1 as their values in
 * bytes, the scale and the min.
 */
export function repackRows(type: number, src: Uint8Array, rows: number, cols: number): Uint8Array[] {
  if (!isQuantized(type)) return [src];
  if (type === GGML_TYPE.Q5_0 || hasMin(type)) {
    const nb = (rows * cols) / 32;
    const bb = typeLayout(type).blockBytes;
    const qs = new Uint8Array(nb * 32);
    const ds = new Float32Array(nb), ms = new Float32Array(nb);
    for (let b = 0; b < nb; b++) {
      const p = b * bb;
      ds[b] = f16ToF32(src[p]! | (src[p + 1]! << 8));
      if (hasMin(type)) ms[b] = f16ToF32(src[p + 2]! | (src[p + 3]! << 8));
      for (let j = 0; j < 32; j++) qs[b * 32 + j] = legacyBlockValue(type, src, p, j) & 0xff;
    }
    return hasMin(type) ? [qs, new Uint8Array(ds.buffer), new Uint8Array(ms.buffer)] : [qs, new Uint8Array(ds.buffer)];
  }
  const nb = (rows * cols) / 32;
  const q4 = type === GGML_TYPE.Q4_0;
  const bb = q4 ? 18 : 34;
  const qb = bb - 2;
  const qs = new Uint8Array(nb * qb);
  const ds = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const p = b * bb;
    ds[b] = f16ToF32(src[p]! | (src[p + 1]! << 8));
    qs.set(src.subarray(p + 2, p + bb), b * qb);
  }
  return [qs, new Uint8Array(ds.buffer)];
}

export class WebGpuGemma {
  readonly cfg: GemmaConfig;
  private readonly device: GPUDevice;
  private readonly maxBatch: number;
  private readonly contextSize: number;
  /** RoPE tables of global and (when the model has them) local layers, and their GPU copies. */
  private readonly ropes: { rope: Rope; cos: GPUBuffer; sin: GPUBuffer }[];
  /** The steps of every layer (config.ts layerSteps), recorded by encodeBatch. */
  private readonly steps: LayerStep[];
  private ropeRows = 0;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly features: KernelFeatures;
  private readonly step: GPUBuffer;
  private readonly stepLast: GPUBuffer;
  private readonly buf: Record<"tokens" | "x" | "xb" | "xn" | "q" | "k" | "v" | "qn" | "kn" | "att" | "hb" | "hb2" | "logits" | "xq" | "xd" | "xs" | "gelu", GPUBuffer>;
  private readonly readback: GPUBuffer;
  private readonly kc: GPUBuffer[] = [];
  private readonly vc: GPUBuffer[] = [];
  /** Every buffer this model made (destroy() frees them). */
  private readonly owned: GPUBuffer[] = [];
  tokenEmbd!: GpuWeight;
  layers: GpuLayer[] = [];
  outputNorm!: GPUBuffer;

  constructor(device: GPUDevice, cfg: GemmaConfig, maxBatch: number, contextSize: number, features: KernelFeatures) {
    const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize, nLayers, ropeDims } = cfg;
    if (headDim > 512 || headDim % 2 || (nKvHeads * headDim) % 2) throw new Error(`the WebGPU kernels need an even head_dim <= 512, got ${headDim}`);
    this.device = device;
    this.cfg = cfg;
    this.maxBatch = maxBatch;
    this.contextSize = contextSize;
    this.features = features;
    this.step = this.buffer(16, UNIFORM | COPY_DST);
    this.stepLast = this.buffer(16, UNIFORM | COPY_DST);
    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const maxCols = Math.max(dim, qDim, hiddenDim);
    const f = (n: number) => this.buffer(n * 4, STORAGE | COPY_DST | COPY_SRC);
    // xn: a normed copy of xb (post-norms); qn, kn: QK-normed q and k (a kernel may not read and write one buffer)
    const post = cfg.postNorms ? 1 : 0, qk = cfg.qkNorm ? 1 : 0;
    this.buf = {
      tokens: f(maxBatch), x: f(maxBatch * dim), xb: f(maxBatch * dim), xn: f(post * maxBatch * dim), q: f(maxBatch * qDim), k: f(maxBatch * kvDim),
      v: f(maxBatch * kvDim), qn: f(qk * maxBatch * qDim), kn: f(qk * maxBatch * kvDim), att: f(maxBatch * qDim), hb: f(maxBatch * hiddenDim),
      hb2: f(maxBatch * hiddenDim), logits: f(vocabSize), xq: f((maxBatch * maxCols) / 4), xd: f((maxBatch * maxCols) / 32), xs: f((maxBatch * maxCols) / 32), gelu: f(65536),
    };
    this.steps = layerSteps(cfg);
    // a RoPE table for global layers and, when there are any, one for local layers (config.ts layerKind)
    const table = (l: number) => {
      const kind = layerKind(cfg, l);
      return { rope: new Rope(headDim, ropeDims, kind.ropeTheta, contextSize, kind.ropeScale), cos: f((contextSize * ropeDims) / 2), sin: f((contextSize * ropeDims) / 2) };
    };
    const globalLayer = cfg.local.indexOf(false), localLayer = cfg.local.indexOf(true);
    this.ropes = [table(Math.max(globalLayer, 0)), ...(localLayer >= 0 ? [table(localLayer)] : [])];
    device.queue.writeBuffer(this.buf.gelu, 0, GELU_F16);
    this.readback = this.buffer(vocabSize * 4, MAP_READ | COPY_DST);
    for (let l = 0; l < nLayers; l++) {
      const cells = layerCells(cfg, l, contextSize); // sliding-window layers: a ring of llama.cpp's size
      this.kc.push(f((cells * kvDim) / 2));
      this.vc.push(f((cells * kvDim) / 2));
    }
  }

  private buffer(size: number, usage: number): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage });
    this.owned.push(b);
    return b;
  }

  /** Upload a weight matrix from the file, split into chunks of at most `maxBinding` bytes per buffer. */
  async uploadWeight(src: ByteSource, name: string, info: GgufTensorInfo, rows: number, cols: number, maxBinding: number): Promise<GpuWeight> {
    const { type } = info;
    if (cols % 2) throw new Error(`${name}: the WebGPU kernels need an even row length, got ${cols}`);
    const gpuBytes = gpuRowBytes(type, cols);
    const srcRow = info.nbytes / rows;
    const chunkRows = Math.min(rows, Math.floor(maxBinding / Math.max(...gpuBytes)));
    if (chunkRows < 1) throw new Error(`${name}: one row (${Math.max(...gpuBytes)} bytes) exceeds the device's binding size ${maxBinding}`);
    const sliceRows = Math.max(2, Math.floor((8 << 20) / srcRow)) & ~1; // read ~8 MiB at a time (an even row count)
    const chunks: Chunk[] = [];
    for (let rowStart = 0; rowStart < rows; rowStart += chunkRows) {
      const n = Math.min(chunkRows, rows - rowStart);
      const chunk: Chunk = { rowStart, rows: n, buffers: gpuBytes.map((b) => this.buffer(n * b, STORAGE | COPY_DST)) };
      for (let r = 0; r < n; r += sliceRows) {
        const m = Math.min(sliceRows, n - r);
        const bytes = await src.read(info.offset + (rowStart + r) * srcRow, m * srcRow);
        // every part is a multiple of 4 bytes (even row lengths), as writeBuffer needs
        repackRows(type, bytes, m, cols).forEach((part, i) => this.device.queue.writeBuffer(chunk.buffers[i]!, r * gpuBytes[i]!, part));
      }
      chunks.push(chunk);
    }
    return { name, type, rows, cols, chunks };
  }

  uploadVector(values: Float32Array): GPUBuffer {
    const b = this.buffer(values.byteLength, STORAGE | COPY_DST);
    this.device.queue.writeBuffer(b, 0, values);
    return b;
  }

  private pipeline(key: string, code: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code: code() });
      p = this.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** A dispatch of `pipeline` with its constants `params` (made once per `key`) and storage `buffers`. */
  private dispatch(pass: GPUComputePassEncoder, key: string, pipeline: GPUComputePipeline, step: GPUBuffer, params: number[], buffers: GPUBuffer[], groups: [number, number?, number?]): void {
    let bg = this.bindGroups.get(key);
    if (!bg) {
      const p = this.buffer(Math.max(16, params.length * 4), UNIFORM | COPY_DST);
      this.device.queue.writeBuffer(p, 0, new Uint32Array(params));
      bg = this.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [step, p, ...buffers].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      this.bindGroups.set(key, bg);
    }
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(...groups);
  }

  /** Workgroups for `items` independent threads: a 2-D grid when one dimension is not enough. */
  private static grid(items: number): [number, number] {
    const groups = Math.ceil(items / WG);
    const x = Math.min(groups, MAX_GROUPS);
    return [x, Math.ceil(groups / x)];
  }

  private matmul(pass: GPUComputePassEncoder, key: string, step: GPUBuffer, n: number, w: GpuWeight, input: GPUBuffer, out: GPUBuffer, quantized: { from?: GPUBuffer }): void {
    const q = isQuantized(w.type);
    if (q && quantized.from !== input) {
      const pl = this.pipeline("quantize", () => quantize(this.features));
      this.dispatch(pass, `${key}.quantize`, pl, step, [w.cols], [input, this.buf.xq, this.buf.xd, this.buf.xs], WebGpuGemma.grid((n * w.cols) / 32));
      quantized.from = input;
    }
    const pl = this.pipeline(`matmul${w.type}`, () => matmulKernel(w.type, this.features));
    const groups = (rows: number) => Math.ceil(rows / matmulRowsPerGroup(w.type));
    for (const [i, c] of w.chunks.entries()) {
      const x = Math.min(groups(c.rows), MAX_GROUPS);
      const inputs = hasMin(w.type) ? [this.buf.xq, this.buf.xd, this.buf.xs] : q ? [this.buf.xq, this.buf.xd] : [input];
      this.dispatch(pass, `${key}.${i}`, pl, step, [w.rows, w.cols, c.rowStart, c.rows], [...c.buffers, ...inputs, out], [x, Math.ceil(groups(c.rows) / x), n]);
    }
  }

  /** Rows of the cos/sin table for positions up to `end` (computed on the CPU, uploaded once). */
  private ensureRope(end: number): void {
    if (end <= this.ropeRows) return;
    const half = this.cfg.ropeDims / 2;
    for (const t of this.ropes) {
      const cos = new Float32Array((end - this.ropeRows) * half);
      const sin = new Float32Array(cos.length);
      for (let p = this.ropeRows; p < end; p++) {
        const v = t.rope.values(p);
        cos.set(v.cos, (p - this.ropeRows) * half);
        sin.set(v.sin, (p - this.ropeRows) * half);
      }
      this.device.queue.writeBuffer(t.cos, this.ropeRows * half * 4, cos);
      this.device.queue.writeBuffer(t.sin, this.ropeRows * half * 4, sin);
    }
    this.ropeRows = end;
  }

  /** Process `tokens` at positions pos.. (in chunks of maxBatch) and return the logits of the last one. */
  async forward(tokens: number[], pos: number): Promise<Float32Array> {
    if (!tokens.length) throw new Error("forward() needs at least one token");
    if (pos + tokens.length > this.contextSize) {
      throw new RangeError(`context full: ${pos + tokens.length} tokens do not fit in a context of ${this.contextSize}`);
    }
    for (const tok of tokens) {
      if (!(Number.isInteger(tok) && tok >= 0 && tok < this.cfg.vocabSize)) throw new RangeError(`token id ${tok} is outside the vocabulary of ${this.cfg.vocabSize}`);
    }
    this.ensureRope(pos + tokens.length);
    // at most llama.cpp's micro-batch of 512 at a time: its cuts, and a sliding-window ring always has room for them
    const step = Math.min(this.maxBatch, 512);
    for (let i = 0; i < tokens.length; i += step) {
      const chunk = tokens.slice(i, i + step);
      const last = i + step >= tokens.length;
      this.encodeBatch(chunk, pos + i, last);
    }
    await this.readback.mapAsync(1 /* GPUMapMode.READ */);
    const logits = new Float32Array(this.readback.getMappedRange().slice(0));
    this.readback.unmap();
    return logits;
  }

  private encodeBatch(tokens: number[], pos: number, withHead: boolean): void {
    const { dim, hiddenDim, nHeads, nKvHeads, headDim, ropeDims, normEps, vocabSize } = this.cfg;
    const n = tokens.length;
    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const dev = this.device;
    const B = this.buf;
    dev.queue.writeBuffer(this.step, 0, new Uint32Array([n, pos, n - 1, 0]));
    dev.queue.writeBuffer(this.stepLast, 0, new Uint32Array([1, pos + n - 1, n - 1, 0]));
    dev.queue.writeBuffer(B.tokens, 0, new Uint32Array(tokens));
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    const S = this.step;
    const quantized: { from?: GPUBuffer } = {};
    const rows = (items: number): [number, number] => [Math.ceil(items / WG), n];

    const e = this.tokenEmbd;
    const embed = this.pipeline(`embed${e.type}`, () => embedKernel(e.type, this.features));
    for (const [i, c] of e.chunks.entries()) {
      this.dispatch(pass, `embed.${i}`, embed, S, [dim, c.rowStart, c.rows, f32bits(this.cfg.embedScale)], [...c.buffers, B.tokens, B.x], rows(dim));
    }
    const norm = this.pipeline("rmsnorm", () => rmsnorm(this.features));
    const ropePl = this.pipeline("rope", () => rope(this.features));
    const store = this.pipeline("store", () => STORE_KV);
    const attend = this.pipeline("attention", () => attention(this.features));
    const add = this.pipeline("add", () => ADD);
    const geglu = this.pipeline("geglu", () => GEGLU);
    // every layer runs config.ts's layerSteps, the list gemma.ts runs on the CPU; this records each into the pass
    const { qScale, attnSoftcap } = this.cfg;
    const eps = f32bits(normEps);
    for (const [l, w] of this.layers.entries()) {
      const L = `l${l}`;
      const kind = layerKind(this.cfg, l);
      const rt = this.ropes[kind.local ? 1 : 0]!;
      const cells = layerCells(this.cfg, l, this.contextSize);
      let [q, k] = [B.q, B.k];
      // llama.cpp runs the last layer's feed-forward on the last token only when only its logits are wanted
      // (matrix sums for one token and for a batch differ in order for float weights): from there, F and nf
      const tail = withHead && l === this.layers.length - 1;
      let [F, nf, K] = [S, n, L];
      for (const step of this.steps) {
        switch (step) {
          case "attn_norm":
            this.dispatch(pass, `${L}.attn_norm`, norm, S, [dim, eps], [B.x, w.attnNorm, B.xb], [n]);
            break;
          case "qkv":
            quantized.from = undefined;
            this.matmul(pass, `${L}.wq`, S, n, w.wq, B.xb, B.q, quantized);
            this.matmul(pass, `${L}.wk`, S, n, w.wk, B.xb, B.k, quantized);
            this.matmul(pass, `${L}.wv`, S, n, w.wv, B.xb, B.v, quantized);
            break;
          case "qk_norm":
            // one RMSNorm row per head, into qn and kn (a kernel may not read and write one buffer)
            this.dispatch(pass, `${L}.q_norm`, norm, S, [headDim, eps, nHeads], [B.q, w.qNorm!, B.qn], [n * nHeads]);
            this.dispatch(pass, `${L}.k_norm`, norm, S, [headDim, eps, nKvHeads], [B.k, w.kNorm!, B.kn], [n * nKvHeads]);
            [q, k] = [B.qn, B.kn];
            break;
          case "rope_store":
            this.dispatch(pass, `${L}.rope_q`, ropePl, S, [nHeads, headDim, ropeDims, f32bits(qScale)], [q, rt.cos, rt.sin], rows(nHeads * (headDim - ropeDims / 2)));
            this.dispatch(pass, `${L}.rope_k`, ropePl, S, [nKvHeads, headDim, ropeDims, f32bits(1)], [k, rt.cos, rt.sin], rows(nKvHeads * (headDim - ropeDims / 2)));
            this.dispatch(pass, `${L}.store`, store, S, [kvDim, cells], [k, B.v, this.kc[l]!, this.vc[l]!], rows(kvDim / 2));
            break;
          case "attention":
            this.dispatch(
              pass, `${L}.attention`, attend, S, [headDim, kvDim, nHeads / nKvHeads, qDim, cells, kind.window, attnSoftcap ? f32bits(attnSoftcap) : 0, 0],
              [q, this.kc[l]!, this.vc[l]!, B.att], [nHeads, n],
            );
            break;
          case "attn_out":
            quantized.from = undefined;
            this.matmul(pass, `${L}.wo`, S, n, w.wo, B.att, B.xb, quantized);
            break;
          case "attn_post_norm":
            this.dispatch(pass, `${L}.attn_post_norm`, norm, S, [dim, eps], [B.xb, w.attnPostNorm!, B.xn], [n]);
            break;
          case "attn_residual":
            this.dispatch(pass, `${L}.add_attn`, add, S, [dim], [B.x, w.attnPostNorm ? B.xn : B.xb], WebGpuGemma.grid(n * dim));
            if (tail) {
              if (n > 1) this.dispatch(pass, "copy_last", this.pipeline("copy_last", () => COPY_LAST_ROW), this.stepLast, [dim], [B.x], [Math.ceil(dim / WG)]);
              [F, nf, K] = [this.stepLast, 1, `${L}.last`];
            }
            break;
          case "ffn_norm":
            this.dispatch(pass, `${K}.ffn_norm`, norm, F, [dim, eps], [B.x, w.ffnNorm, B.xb], [nf]);
            break;
          case "ffn":
            quantized.from = undefined;
            this.matmul(pass, `${K}.gate`, F, nf, w.wGate, B.xb, B.hb, quantized);
            this.matmul(pass, `${K}.up`, F, nf, w.wUp, B.xb, B.hb2, quantized);
            this.dispatch(pass, `${K}.geglu`, geglu, F, [hiddenDim], [B.hb, B.hb2, B.gelu], WebGpuGemma.grid(nf * hiddenDim));
            quantized.from = undefined;
            this.matmul(pass, `${K}.down`, F, nf, w.wDown, B.hb, B.xb, quantized);
            break;
          case "ffn_post_norm":
            this.dispatch(pass, `${K}.ffn_post_norm`, norm, F, [dim, eps], [B.xb, w.ffnPostNorm!, B.xn], [nf]);
            break;
          case "ffn_residual":
            this.dispatch(pass, `${K}.add_ffn`, add, F, [dim], [B.x, w.ffnPostNorm ? B.xn : B.xb], WebGpuGemma.grid(nf * dim));
            break;
        }
      }
    }
    if (withHead) {
      this.dispatch(pass, "output_norm", norm, this.stepLast, [dim, eps], [B.x, this.outputNorm, B.xb], [1]);
      quantized.from = undefined;
      this.matmul(pass, "output", this.stepLast, 1, e, B.xb, B.logits, quantized);
      const cap = this.cfg.finalSoftcap;
      if (cap) this.dispatch(pass, "softcap", this.pipeline("softcap", () => softcapLogits(this.features)), this.stepLast, [vocabSize, f32bits(cap)], [B.logits], WebGpuGemma.grid(vocabSize));
    }
    pass.end();
    if (withHead) enc.copyBufferToBuffer(B.logits, 0, this.readback, 0, vocabSize * 4);
    dev.queue.submit([enc.finish()]);
  }

  /** Free every GPU buffer of this model (the device stays the host's). */
  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}

/** A model loaded onto `device`: what generate() needs, plus destroy(). */
export interface WebGpuModel extends RunnableModel {
  model: WebGpuGemma;
  destroy(): void;
}

export async function loadModelWebGpu(src: ByteSource, device: GPUDevice, opts: WebGpuOptions = {}): Promise<WebGpuModel> {
  const header = await readModelHeader(src, opts);
  const { cfg, contextSize, maxBatch } = header;
  const maxBinding = Math.min(opts.maxBindingBytes ?? Infinity, device.limits.maxStorageBufferBindingSize);
  const features: KernelFeatures = {
    dot4I8Packed: opts.dot4I8Packed ?? false,
    fusedFma: await deviceFmaIsFused(device),
    f16: device.features.has("shader-f16"),
  };
  const model = new WebGpuGemma(device, cfg, maxBatch, contextSize, features);
  try {
    const plan = planTensors(
      header.gguf,
      cfg,
      (name, info, rows, cols) => ({ name, info, rows, cols }),
      (_name, info, n) => ({ info, n }),
    );
    const total = [plan.tokenEmbd, ...plan.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown, l.attnNorm, l.ffnNorm, ...Object.values(l.extra)]), plan.outputNorm]
      .reduce((s, t) => s + t.info.nbytes, 0);
    let loaded = 0;
    const upload = async (m: { name: string; info: GgufTensorInfo; rows: number; cols: number }) => {
      const w = await model.uploadWeight(src, m.name, m.info, m.rows, m.cols, maxBinding);
      loaded += m.info.nbytes;
      opts.onProgress?.(loaded, total);
      return w;
    };
    const vector = async (v: { info: GgufTensorInfo; n: number }) => {
      const b = model.uploadVector(await readVector(src, v.info, v.n));
      loaded += v.info.nbytes;
      opts.onProgress?.(loaded, total);
      return b;
    };
    model.tokenEmbd = await upload(plan.tokenEmbd);
    for (const l of plan.layers) {
      const layer: GpuLayer = {
        wq: await upload(l.wq), wk: await upload(l.wk), wv: await upload(l.wv), wo: await upload(l.wo),
        wGate: await upload(l.wGate), wUp: await upload(l.wUp), wDown: await upload(l.wDown),
        attnNorm: await vector(l.attnNorm), ffnNorm: await vector(l.ffnNorm),
      };
      // the architecture's other norms (post-norms, QK-norms), under their LayerWeights names
      for (const [field, v] of Object.entries(l.extra)) (layer as unknown as Record<string, GPUBuffer>)[field] = await vector(v!);
      model.layers.push(layer);
    }
    model.outputNorm = await vector(plan.outputNorm);
    await device.queue.onSubmittedWorkDone();
  } catch (e) {
    model.destroy();
    throw e;
  }
  const { gguf, tokenizer, chatTemplate } = header;
  return { gguf, cfg, tokenizer, chatTemplate, contextSize, model, forward: (tokens, pos) => model.forward(tokens, pos), destroy: () => model.destroy() };
}

/**
 * Whether the device's fma() rounds once: (1 + 2^-12)^2 - (1 + 2^-11) is 2^-24 exactly, and 0 when the product is
 * rounded first. Where it does not (SwiftShader), the kernels use fmaSoft.
 */
export async function deviceFmaIsFused(device: GPUDevice): Promise<boolean> {
  const make = (size: number, usage: number, data?: Float32Array | Uint32Array) => {
    const b = device.createBuffer({ size, usage });
    if (data) device.queue.writeBuffer(b, 0, data);
    return b;
  };
  const x = Math.fround(1 + 2 ** -12);
  const bufs = [
    make(16, UNIFORM | COPY_DST, new Uint32Array([1, 0, 0, 0])),
    make(16, UNIFORM | COPY_DST, new Uint32Array([1, 0, 0, 0])),
    make(16, STORAGE | COPY_DST, new Float32Array([x, 0, 0, 0])),
    make(16, STORAGE | COPY_DST, new Float32Array([x, 0, 0, 0])),
    make(16, STORAGE | COPY_DST, new Float32Array([-Math.fround(1 + 2 ** -11), 0, 0, 0])),
    make(16, STORAGE | COPY_SRC),
  ];
  const read = make(16, MAP_READ | COPY_DST);
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code: fmaProbe(true) }), entryPoint: "main" } });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })) }));
  pass.dispatchWorkgroups(1);
  pass.end();
  enc.copyBufferToBuffer(bufs[5]!, 0, read, 0, 16);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(1);
  const fused = new Float32Array(read.getMappedRange())[0] === 2 ** -24;
  read.unmap();
  for (const b of [...bufs, read]) b.destroy();
  return fused;
}
