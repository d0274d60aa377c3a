// WebGPU in tests: the device (through the same host code as the CLI) and a runner for one kernel of kernels.ts.
import { BASELINE, type KernelFeatures } from "../../src/engine/backend/webgpu/kernels.ts";
import { deviceFmaIsFused } from "../../src/engine/backend/webgpu/model.ts";
import { nodeGpuDevice } from "../../src/hosts/node-webgpu.ts";

let device: Promise<{ device: GPUDevice; dot4I8Packed: boolean }> | undefined;

/** The driver this test process runs on: lavapipe in the "webgpu-lavapipe" project, else SwiftShader, or the user's. */
export const GPU_DRIVER = process.env.GEMMA_EDGE_USER_DRIVER ? "user" : process.env.GEMMA_EDGE_GPU === "lavapipe" ? "lavapipe" : "swiftshader";
if (GPU_DRIVER === "lavapipe" && process.env.GEMMA_EDGE_LAVAPIPE_ICD) {
  process.env.VK_ICD_FILENAMES = process.env.GEMMA_EDGE_LAVAPIPE_ICD; // before Dawn starts; CLI children inherit it
}

/** The test device; fails (never skips) naming why when the driver setup or Dawn cannot provide one. */
export function testGpu(): Promise<{ device: GPUDevice; dot4I8Packed: boolean }> {
  const err = GPU_DRIVER === "lavapipe" ? process.env.GEMMA_EDGE_LAVAPIPE_ERROR : process.env.GEMMA_EDGE_GPU_DRIVER_ERROR;
  if (err) return Promise.reject(new Error(`no Vulkan driver (${GPU_DRIVER}) for the WebGPU tests: ${err}`));
  device ??= nodeGpuDevice();
  return device;
}

type Data = Float32Array | Uint32Array | Int32Array | number; // a number: an empty buffer of that many 32-bit words

/**
 * Run `code` once: binding 0 = the step uniform {n, pos, lastRow}, 1 = `params` (u32 words), then one storage
 * buffer per entry of `buffers`. Returns every storage buffer's contents afterwards, as Uint32 words.
 */
export async function runKernel(code: string, step: [number, number, number], params: number[], buffers: Data[], groups: [number, number?, number?]): Promise<Uint32Array[]> {
  const { device: dev } = await testGpu();
  const make = (words: number, usage: number) => dev.createBuffer({ size: Math.max(16, words * 4), usage });
  const stepBuf = make(4, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  dev.queue.writeBuffer(stepBuf, 0, new Uint32Array([...step, 0]));
  const paramBuf = make(Math.max(4, params.length), GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  dev.queue.writeBuffer(paramBuf, 0, new Uint32Array(params));
  const storage = buffers.map((d) => {
    const words = typeof d === "number" ? d : d.length;
    const b = make(words, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    if (typeof d !== "number") dev.queue.writeBuffer(b, 0, d);
    return { b, words };
  });
  dev.pushErrorScope("validation");
  const pipeline = dev.createComputePipeline({ layout: "auto", compute: { module: dev.createShaderModule({ code }), entryPoint: "main" } });
  const bg = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [stepBuf, paramBuf, ...storage.map((s) => s.b)].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bg);
  pass.dispatchWorkgroups(...groups);
  pass.end();
  const reads = storage.map((s) => {
    const r = make(s.words, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    enc.copyBufferToBuffer(s.b, 0, r, 0, Math.max(16, s.words * 4));
    return r;
  });
  dev.queue.submit([enc.finish()]);
  const error = await dev.popErrorScope();
  if (error) throw new Error(`WebGPU validation: ${error.message}`);
  const out: Uint32Array[] = [];
  for (const [i, r] of reads.entries()) {
    await r.mapAsync(GPUMapMode.READ);
    out.push(new Uint32Array(r.getMappedRange().slice(0, storage[i]!.words * 4)));
    r.destroy();
  }
  for (const b of [stepBuf, paramBuf, ...storage.map((s) => s.b)]) b.destroy();
  return out;
}

export const asF32 = (u: Uint32Array) => new Float32Array(u.buffer, u.byteOffset, u.length);
export { f32bits } from "../../src/engine/backend/webgpu/kernels.ts";

/**
 * The kernel variants to check on this device: the baseline every device runs, and each feature the device has
 * turned on by itself (SwiftShader: dot4I8Packed; lavapipe: that and shader-f16).
 */
export async function kernelVariants(): Promise<{ label: string; f: KernelFeatures }[]> {
  const { device, dot4I8Packed } = await testGpu();
  const out = [{ label: "baseline", f: BASELINE }];
  if (dot4I8Packed) out.push({ label: "dot4I8Packed", f: { ...BASELINE, dot4I8Packed: true } });
  if (await deviceFmaIsFused(device)) out.push({ label: "native fma", f: { ...BASELINE, fusedFma: true } });
  if (device.features.has("shader-f16")) out.push({ label: "shader-f16", f: { ...BASELINE, f16: true } });
  return out;
}

