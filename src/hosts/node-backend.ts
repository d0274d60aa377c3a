// Backends for Node hosts: the WebAssembly kernels are read from build/ (workerd imports them statically); WebGPU
// runs through Dawn (the `webgpu` package), loaded only when asked for.
import type { Backend } from "../engine/backend/backend.ts";
import { ReferenceBackend } from "../engine/backend/reference.ts";
import type { ByteSource } from "../engine/byte-source.ts";
import { loadModel, type LoadOptions, type RunnableModel } from "../engine/model/load.ts";
import { hasRelaxedSimd } from "../engine/backend/wasm.ts";
import { provideSamplerWasm, samplerKernels } from "../engine/sampler-wasm.ts";

export const BACKEND_NAMES = ["wasm", "webgpu", "reference"];

/** The sampler's passes over the vocabulary on the WebAssembly kernels (engine/sampler-wasm.ts), whatever runs the model. */
async function provideSamplerKernels(): Promise<void> {
  if (samplerKernels()) return;
  const { kernelModule } = await import("./node-wasm.ts");
  provideSamplerWasm(await kernelModule(hasRelaxedSimd() ? "relaxed" : "simd"));
}

/**
 * An arena backend by name (wasm, reference); WebGPU is not one: see loadNodeModel. `threads`: wasm only. The
 * sampler gets its kernels here too.
 */
export async function createBackend(name: string, threads = 1): Promise<Backend> {
  await provideSamplerKernels();
  if (name === "reference") return new ReferenceBackend();
  if (name !== "wasm") throw new Error(`"${name}" is not an arena backend (use loadNodeModel)`);
  const { loadWasmBackend } = await import("./node-wasm.ts");
  return loadWasmBackend(undefined, threads);
}

/** Load a model on the named backend (one of BACKEND_NAMES); `threads` > 1 splits the wasm kernels' work. */
export async function loadNodeModel(src: ByteSource, backend: string, opts: LoadOptions & { threads?: number } = {}): Promise<RunnableModel> {
  if (backend === "webgpu") {
    await provideSamplerKernels(); // createBackend does it for the others
    const { loadNodeWebGpuModel } = await import("./node-webgpu.ts");
    return loadNodeWebGpuModel(src, opts);
  }
  return loadModel(src, await createBackend(backend, opts.threads), opts);
}
