// The WebAssembly backend for Node: compiles build/kernels-*.wasm (made by `npm run build:wasm`), picking the
// relaxed-SIMD build when the runtime validates relaxed SIMD, the plain-SIMD build otherwise; with threads > 1
// the shared-memory build, and worker threads running it (node-threads.ts).
import { readFile } from "node:fs/promises";
import { hasRelaxedSimd, WasmBackend } from "../engine/backend/wasm.ts";
import { NodeKernelThreads } from "./node-threads.ts";
import type { RowEncoder } from "../engine/quant.ts";
import { wasmRowEncoder } from "../engine/wasm-quantizer.ts";

const modules = new Map<string, Promise<WebAssembly.Module>>();

export function kernelModule(variant: "relaxed" | "simd" | "relaxed-mt" | "simd-mt"): Promise<WebAssembly.Module> {
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

let grammar: Promise<WebAssembly.Module> | undefined;
/** build/xgrammar.wasm compiled (the grammar engine, engine/grammar.ts; made by wasm/build-xgrammar.js). */
export function grammarModule(): Promise<WebAssembly.Module> {
  const url = new URL("../../build/xgrammar.wasm", import.meta.url);
  grammar ??= readFile(url).then(
    (bytes) => WebAssembly.compile(bytes),
    () => {
      throw new Error(`${url.pathname} is missing: run "npm run build" (npm install does it)`);
    },
  );
  return grammar;
}

/** ggml's quantizers in WebAssembly (engine/wasm-quantizer.ts), for the CLI's writers. */
export async function nodeRowEncoder(): Promise<RowEncoder> {
  return wasmRowEncoder(await kernelModule("simd"));
}

export async function loadWasmBackend(variant: "relaxed" | "simd" = hasRelaxedSimd() ? "relaxed" : "simd", threads = 1): Promise<WasmBackend> {
  if (!(Number.isInteger(threads) && threads >= 1)) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  if (threads === 1) return new WasmBackend(await kernelModule(variant), variant);
  const module = await kernelModule(`${variant}-mt`);
  const backend = new WasmBackend(module, variant, { shared: true });
  backend.setThreads(await NodeKernelThreads.start(module, backend.sharedMemory, threads - 1));
  return backend;
}
