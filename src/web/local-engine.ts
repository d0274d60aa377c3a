// "Run in this browser": the engine itself in the page, on WebGPU where the browser has an adapter, else on the
// WebAssembly kernels (inlined into the page by web/build.js). The weights come from the server's
// /v1/models/{id}/gguf once and stay in the Cache API under their ETag, so a second visit starts without
// downloading; a new version of the file (a new ETag) replaces the old one.
import { hasRelaxedSimd, WasmBackend } from "../engine/backend/wasm.ts";
import { loadModelWebGpu } from "../engine/backend/webgpu/model.ts";
import { MemoryByteSource } from "../engine/byte-source.ts";
import { GrammarEngine, grammarWasmProvided, provideGrammarWasm, type ConstraintSpec, type TokenConstraint } from "../engine/grammar.ts";
import { loadModel, type RunnableModel } from "../engine/model/load.ts";
import { provideSamplerWasm, samplerKernels } from "../engine/sampler-wasm.ts";

export { generate } from "../engine/generate.ts";

/** The kernels' and the grammar engine's bytes, base64 (web/build.js defines these from build/*.wasm). */
declare const KERNELS_RELAXED: string;
declare const KERNELS_SIMD: string;
declare const XGRAMMAR_WASM: string;

const grammars = new WeakMap<RunnableModel, GrammarEngine>();

/** A constraint for a generation in the page (the grammar engine starts on first use, as on the server). */
export async function localConstraint(m: RunnableModel, spec: ConstraintSpec): Promise<TokenConstraint> {
  if (!grammarWasmProvided()) provideGrammarWasm(await WebAssembly.compile(fromBase64(XGRAMMAR_WASM)));
  let g = grammars.get(m);
  if (!g) grammars.set(m, (g = new GrammarEngine(m.tokenizer, m.cfg.vocabSize)));
  return g.constrain(spec, "response_format");
}

const CACHE = "gemma-edge-models";

export type Progress = (loaded: number, total: number, fromCache: boolean) => void;

/** The model file: from the Cache API when this version (ETag) is there, else downloaded (with progress) and cached. */
export async function modelBytes(url: string, headers: Record<string, string>, onProgress: Progress): Promise<Uint8Array> {
  const head = await fetch(url, { method: "HEAD", headers });
  if (!head.ok) throw new Error(`the model file is not available: HEAD ${url} answered ${head.status}`);
  const etag = head.headers.get("ETag") ?? "";
  const total = Number(head.headers.get("Content-Length"));
  const base = new URL(url, location.href).href;
  const key = `${base}?etag=${encodeURIComponent(etag)}`;
  const cache = "caches" in globalThis ? await caches.open(CACHE) : undefined;
  const hit = await cache?.match(key);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    onProgress(bytes.length, bytes.length, true);
    return bytes;
  }
  const res = await fetch(url, { headers });
  if (!res.ok || !res.body) throw new Error(`the model file did not download: GET ${url} answered ${res.status}`);
  const bytes = new Uint8Array(total);
  let pos = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (pos + value.length > total) throw new Error(`the model file is longer than its Content-Length (${total} bytes)`);
    bytes.set(value, pos);
    pos += value.length;
    onProgress(pos, total, false);
  }
  if (pos !== total) throw new Error(`the model file download ended after ${pos} of ${total} bytes`);
  if (cache) {
    for (const old of await cache.keys()) if (old.url.startsWith(`${base}?etag=`)) await cache.delete(old);
    await cache.put(key, new Response(bytes, { headers: { "Content-Type": "application/octet-stream" } }));
  }
  return bytes;
}

const fromBase64 = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

/** Load the model in the page: "auto" takes WebGPU when there is an adapter and it can run the model, else WebAssembly. */
export async function loadLocalModel(bytes: Uint8Array, want: "auto" | "webgpu" | "wasm"): Promise<{ model: RunnableModel; backend: string }> {
  const src = new MemoryByteSource(bytes, "model.gguf");
  const relaxed = hasRelaxedSimd();
  const module = await WebAssembly.compile(fromBase64(relaxed ? KERNELS_RELAXED : KERNELS_SIMD));
  if (!samplerKernels()) provideSamplerWasm(module); // the sampler's passes, whichever backend runs the model
  let fallback = "";
  if (want !== "wasm") {
    const adapter = await navigator.gpu?.requestAdapter();
    if (adapter) {
      const device = await adapter.requestDevice({
        requiredFeatures: adapter.features.has("shader-f16") ? ["shader-f16"] : [],
        requiredLimits: {
          maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
          maxBufferSize: adapter.limits.maxBufferSize,
        },
      });
      const dot4I8Packed = navigator.gpu.wgslLanguageFeatures?.has("packed_4x8_integer_dot_product") ?? false;
      try {
        return { model: await loadModelWebGpu(src, device, { dot4I8Packed }), backend: "webgpu" };
      } catch (e) {
        // "auto": a model the WebGPU kernels cannot run (K-quant weights, for one) runs in WebAssembly instead
        device.destroy();
        if (want === "webgpu") throw e;
        fallback = ` (WebGPU: ${(e as Error).message})`;
      }
    } else if (want === "webgpu") throw new Error("this browser offers no WebGPU adapter");
  }
  const variant = relaxed ? "relaxed" : "simd";
  return { model: await loadModel(src, new WasmBackend(module, variant)), backend: `wasm-${variant}${fallback}` };
}
