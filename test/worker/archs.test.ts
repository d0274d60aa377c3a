// The Worker serves Gemma 2 and Gemma 3 files: its Durable Object loads them from R2, reports their
// architecture, and answers with the tokens the engine gives in process (which test/llama-cpp checks against
// llama.cpp), past the sliding window.
import { describe, expect, it } from "vitest";
import relaxedKernels from "../../build/kernels-relaxed.wasm";
import { WasmBackend } from "../../src/engine/backend/wasm.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { generate } from "../../src/engine/generate.ts";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { loadModel } from "../../src/engine/model/load.ts";
import { makeTestModelBytes, SHAPES } from "../../src/tools/make-test-model.ts";
import { baseEnv, call, envWith, waitReady } from "./helpers.ts";

const PROMPT = "The quick brown fox jumps over the lazy dog while the model answers";

describe.each(["gemma2", "gemma3"] as const)("the Worker serving a %s file", (arch) => {
  it("reports the architecture and answers with the engine's greedy tokens", async () => {
    const bytes = await makeTestModelBytes({ shape: SHAPES[`tiny-${arch}`]!, type: GGML_TYPE.Q8_0, seed: 3 });
    await baseEnv.MODELS.put(`${arch}-tiny.gguf`, bytes);
    const e = envWith({ MODEL_ID: `${arch}-tiny`, MODEL_KEY: `${arch}-tiny.gguf` });
    await waitReady(e);
    const health = (await (await call("/health", {}, e)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: "ready", model: `${arch}-tiny`, architecture: arch });

    const m = await loadModel(new MemoryByteSource(bytes), new WasmBackend(relaxedKernels, "relaxed"), { contextSize: 512 });
    const ids = m.tokenizer.encode(PROMPT, { addBos: true });
    const out: number[] = [];
    for await (const ev of generate(m, { prompt: { ids }, maxTokens: 24, sampling: { temperature: 0 } })) if (ev.type === "token") out.push(ev.id);
    const r = (await (await call("/v1/completions", { json: { model: `${arch}-tiny`, prompt: PROMPT, max_tokens: 24, temperature: 0 } }, e)).json()) as any;
    expect(r.usage.prompt_tokens).toBe(ids.length);
    expect(r.choices[0].text).toBe(m.tokenizer.decode(out));
    expect(ids.length + out.length).toBeGreaterThan(16 + 8); // well past the 16-position window
  });
});
