// The WebAssembly backend for Node: compiles build/kernels-*.wasm (made by `npm run build:wasm`), picking the
// relaxed-SIMD build when the runtime validates relaxed SIMD, the plain-SIMD build otherwise.
import { readFile } from "node:fs/promises";
import { hasRelaxedSimd, WasmBackend } from "../engine/backend/wasm.ts";

const modules = new Map<string, Promise<WebAssembly.Module>>();

export function kernelModule(variant: "relaxed" | "simd"): Promise<WebAssembly.Module> {
  let m = modules.get(variant);
  if (!m) {
    const url = new URL(`../../build/kernels-${variant}.wasm`, import.meta.url);
    m = readFile(url).then(
      (bytes) => WebAssembly.compile(bytes),
      () => {
        throw new Error(`${url.pathname} is missing: run "npm run build:wasm" (npm install does it)`);
      },
    );
    modules.set(variant, m);
  }
  return m;
}

export async function loadWasmBackend(variant: "relaxed" | "simd" = hasRelaxedSimd() ? "relaxed" : "simd"): Promise<WasmBackend> {
  return new WasmBackend(await kernelModule(variant), variant);
}
