// Backends for Node hosts: the WebAssembly kernels are read from build/ (workerd imports them statically); WebGPU
// runs through Dawn (the `webgpu` package), loaded only when asked for.
import type { Backend } from "../engine/backend/backend.ts";
import { ReferenceBackend } from "../engine/backend/reference.ts";
import type { ByteSource } from "../engine/byte-source.ts";
import { loadModel, type LoadOptions, type RunnableModel } from "../engine/model/load.ts";

export const BACKEND_NAMES = ["wasm", "webgpu", "reference"];

/** An arena backend by name (wasm, reference); WebGPU is not one: see loadNodeModel. */
export async function createBackend(name: string): Promise<Backend> {
  if (name === "reference") return new ReferenceBackend();
  if (name !== "wasm") throw new Error(`"${name}" is not an arena backend (use loadNodeModel)`);
  const { loadWasmBackend } = await import("./node-wasm.ts");
  return loadWasmBackend();
}

/** Load a model on the named backend (one of BACKEND_NAMES). */
export async function loadNodeModel(src: ByteSource, backend: string, opts: LoadOptions = {}): Promise<RunnableModel> {
  if (backend === "webgpu") {
    const { loadNodeWebGpuModel } = await import("./node-webgpu.ts");
    return loadNodeWebGpuModel(src, opts);
  }
  return loadModel(src, await createBackend(backend), opts);
}
