// Backends for Node hosts: the WebAssembly kernels are read from build/ (workerd imports them statically).
import type { Backend } from "../engine/backend/backend.ts";
import { ReferenceBackend } from "../engine/backend/reference.ts";

export const BACKEND_NAMES = ["wasm", "reference"];

export async function createBackend(name: string): Promise<Backend> {
  if (name === "reference") return new ReferenceBackend();
  const { loadWasmBackend } = await import("./node-wasm.ts");
  return loadWasmBackend();
}
