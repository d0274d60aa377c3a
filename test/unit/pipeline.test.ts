// A model in parts: layer ranges and vocabulary slices, each in its own WebAssembly backend, chunked prefill.
// The arithmetic of every row is the single-process engine's, so the logits must be identical bit for bit.
import { describe, expect, it } from "vitest";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { readGguf } from "../../src/engine/gguf.ts";
import { configFromGguf } from "../../src/engine/config.ts";
import { loadModel } from "../../src/engine/model/load.ts";
import { chunks } from "../../src/engine/model/gemma.ts";
import { loadPart, type PartSpec } from "../../src/engine/model/part.ts";
import { LocalPart, Pipeline } from "../../src/engine/pipeline.ts";
import { loadWasmBackend } from "../../src/hosts/node-wasm.ts";
import { testModel } from "../helpers/models.ts";

/** Logits after prefilling `prompt`, then after each of `decode` single tokens. */
async function run(forward: (t: number[], p: number) => Float32Array | Promise<Float32Array>, prompt: number[], decode: number[]): Promise<number[][]> {
  const out = [Array.from(await forward(prompt, 0))];
  for (let i = 0; i < decode.length; i++) out.push(Array.from(await forward([decode[i]!], prompt.length + i)));
  return out;
}

async function parts(bytes: Uint8Array, specs: PartSpec[], chunk: number, contextSize = 256) {
  const src = new MemoryByteSource(bytes);
  const gguf = await readGguf(src);
  const cfg = configFromGguf(gguf);
  const runners = [];
  for (const spec of specs) {
    const part = await loadPart(src, await loadWasmBackend(), cfg, (n) => gguf.tensors.get(n), spec, { contextSize, sequences: 2, chunk });
    runners.push(new LocalPart(part));
  }
  return new Pipeline(cfg, runners, { chunk, contextSize });
}

const prompt = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 2 : 5 + ((i * 7919) % (vocab - 5))));

describe("a model split into parts gives the single-process logits bit for bit", () => {
  // q4_0 (repacked rows), q4_k (llama.cpp's gemm on whole groups of 4 prompt tokens), f16 (tinyBLAS for 2+ rows);
  // 9 prompt tokens in chunks of 4 (the last chunk is one token of a 9-row micro-batch: still tinyBLAS, still the
  // gemm groups), 70 in chunks of 16 (the tiled attention of 64+ row micro-batches, computed 16 rows at a time)
  for (const [shape, type, vocab] of [["tiny-gqa", "q4_0", 1536], ["tiny-k", "q4_k", 1024], ["tiny-gqa", "f16", 1536]] as const) {
    for (const [n, chunk] of [[9, 4], [70, 16], [140, 8]] as const) {
      it(`${shape} ${type}, ${n}-token prompt: 3 layer parts, 3 vocabulary slices, chunks of ${chunk}`, async () => {
        const { bytes } = await testModel(shape, type);
        const whole = await loadModel(new MemoryByteSource(bytes), await loadWasmBackend(), { contextSize: 256 });
        const p = prompt(n, vocab);
        const decode = [17, 300, 2, 901];
        const expected = await run(whole.forward, p, decode);
        const split = await parts(bytes, [
          { layers: [0, 1] }, { layers: [1, 2] }, { layers: [2, 3] },
          { vocab: [0, 512] }, { vocab: [512, 1024] }, ...(vocab > 1024 ? [{ vocab: [1024, vocab] } as PartSpec] : []),
        ], chunk);
        expect(await run((t, pos) => split.forward(t, pos, 1), p, decode)).toEqual(expected);
      });
    }
  }

  // Gemma 2 and 3: each layer part keeps its own layers' rings and RoPE kinds; a 70-token prompt passes the window
  for (const [shape, type, layers] of [["tiny-gemma2", "q8_0", 4], ["tiny-gemma3", "q4_0", 6]] as const) {
    it(`${shape} ${type}, 70-token prompt: layer parts of 2 layers, 2 vocabulary slices, chunks of 16`, async () => {
      const { bytes } = await testModel(shape, type);
      const whole = await loadModel(new MemoryByteSource(bytes), await loadWasmBackend(), { contextSize: 256 });
      const p = prompt(70, 1024);
      const decode = [17, 300, 2, 901];
      const expected = await run(whole.forward, p, decode);
      const layerParts = Array.from({ length: layers / 2 }, (_, i) => ({ layers: [2 * i, 2 * i + 2] }) as PartSpec);
      const split = await parts(bytes, [...layerParts, { vocab: [0, 512] }, { vocab: [512, 1024] }], 16);
      expect(await run((t, pos) => split.forward(t, pos, 1), p, decode)).toEqual(expected);
    });
  }

  it("one part holding everything, chunks of 4, on another sequence slot", async () => {
    const { bytes } = await testModel("tiny-k", "q4_k");
    const whole = await loadModel(new MemoryByteSource(bytes), await loadWasmBackend(), { contextSize: 256 });
    const p = prompt(37, 1024);
    const expected = await run(whole.forward, p, [5, 6]);
    const one = await parts(bytes, [{ layers: [0, 3], vocab: [0, 1024] }], 4);
    expect(await run((t, pos) => one.forward(t, pos, 1), p, [5, 6])).toEqual(expected);
  });
});

describe("chunks(): llama.cpp's 512-token micro-batches, cut into chunks", () => {
  it("cuts 1100 tokens in chunks of 128 within micro-batches of 512, outputs only on the last", () => {
    const c = [...chunks(1100, 512, 128)];
    expect(c.map((x) => [x.start, x.n, x.batchRows])).toEqual([
      [0, 128, 512], [128, 128, 512], [256, 128, 512], [384, 128, 512],
      [512, 128, 512], [640, 128, 512], [768, 128, 512], [896, 128, 512],
      [1024, 76, 76],
    ]);
    expect(c.map((x) => x.outputs)).toEqual([...Array(8).fill("none"), "last"]);
  });
  it("refuses a chunk that would cut llama.cpp's groups of 4 tokens", () => {
    expect(() => [...chunks(100, 512, 6)]).toThrow(/not a multiple of 4/);
  });
});

describe("a part refuses what it cannot hold", () => {
  it("a position its sequence has not reached (a restarted part), a token outside its slice, a missing layer", async () => {
    const { bytes } = await testModel("tiny-gqa", "q4_0");
    const src = new MemoryByteSource(bytes);
    const gguf = await readGguf(src);
    const cfg = configFromGguf(gguf);
    const sizing = { contextSize: 64, sequences: 1, chunk: 8 };
    const layer = await loadPart(src, await loadWasmBackend(), cfg, (n) => gguf.tensors.get(n), { layers: [1, 2] }, sizing);
    const x = new Float32Array(cfg.dim);
    expect(() => layer.layers(x, 0, 5, 1, 1, "all")).toThrow(/holds 0 positions here, so position 5 cannot follow/);
    expect(() => layer.layers(x, 1, 0, 1, 1, "all")).toThrow(/slot 1 does not exist/);
    const vocab = await loadPart(src, await loadWasmBackend(), cfg, (n) => gguf.tensors.get(n), { vocab: [512, 1024] }, sizing);
    expect(() => vocab.embed([100])).toThrow(/outside this part's vocabulary slice \[512, 1024\)/);
    expect(() => vocab.layers(x, 0, 0, 1, 1, "all")).toThrow(/holds no layers/);
    await expect(loadPart(src, await loadWasmBackend(), cfg, (n) => gguf.tensors.get(n), { vocab: [3, 100] }, sizing)).rejects.toThrow(/multiple of 8/);
  });

  it("a part over its memory budget fails naming both sizes; a truncated file names the tensor it could not read", async () => {
    const { bytes } = await testModel("tiny-gqa", "q4_0");
    const gguf = await readGguf(new MemoryByteSource(bytes));
    const cfg = configFromGguf(gguf);
    const sizing = { contextSize: 64, sequences: 1, chunk: 8 };
    const { kernelModule } = await import("../../src/hosts/node-wasm.ts");
    const { WasmBackend } = await import("../../src/engine/backend/wasm.ts");
    const small = new WasmBackend(await kernelModule("relaxed"), "relaxed", { maxBytes: 256 * 1024 });
    await expect(loadPart(new MemoryByteSource(bytes), small, cfg, (n) => gguf.tensors.get(n), { layers: [0, 3] }, sizing)).rejects.toThrow(
      /the model needs \d+ bytes of WebAssembly memory, over its budget of 262144 bytes/,
    );
    const last = gguf.tensors.get("blk.2.ffn_down.weight")!;
    const cut = new MemoryByteSource(bytes.subarray(0, last.offset + 10));
    await expect(loadPart(cut, await loadWasmBackend(), cfg, (n) => gguf.tensors.get(n), { layers: [2, 3] }, sizing)).rejects.toThrow(
      new RegExp(`tensor "blk\\.2\\.ffn_down\\.weight" \\(${last.nbytes} bytes at offset ${last.offset}\\): `),
    );
  });
});

describe("batched steps over a model in parts (what a sharded coordinator runs)", () => {
  it("three requests through the batch scheduler over 3 layer parts and 3 vocabulary slices: each the tokens it gets alone", async () => {
    const { BatchScheduler } = await import("../../src/engine/batching.ts");
    const { pipelineBatch } = await import("../../src/engine/model/load.ts");
    const { generate } = await import("../../src/engine/generate.ts");
    const { bytes } = await testModel("tiny-gqa", "q4_0");
    const whole = await loadModel(new MemoryByteSource(bytes), await loadWasmBackend(), { contextSize: 256 });
    const src = new MemoryByteSource(bytes);
    const gguf = await readGguf(src);
    const cfg = configFromGguf(gguf);
    const specs: PartSpec[] = [{ layers: [0, 1] }, { layers: [1, 3] }, { vocab: [0, 512] }, { vocab: [512, 1024] }, { vocab: [1024, 1536] }];
    const runners = [];
    for (const spec of specs) runners.push(new LocalPart(await loadPart(src, await loadWasmBackend(), cfg, (n) => gguf.tensors.get(n), spec, { contextSize: 256, sequences: 3, chunk: 16, outputs: 3 })));
    const pipeline = new Pipeline(cfg, runners, { chunk: 16, contextSize: 256 });
    const sched = new BatchScheduler(pipelineBatch(pipeline, 3, 16), whole.tokenizer, { maxBatchSize: 3, prefillChunk: 8, promptCache: true });
    const prompts = [prompt(70, 1536), prompt(9, 1536).reverse(), prompt(23, 1536)];
    const alone: number[][] = [];
    for (const p of prompts) {
      const ids: number[] = [];
      for await (const ev of generate(whole, { prompt: { ids: p }, maxTokens: 10, sampling: { temperature: 0 } })) if (ev.type === "token") ids.push(ev.id);
      alone.push(ids);
    }
    const got = await Promise.all(prompts.map((p) => new Promise<number[]>((resolve, reject) => {
      const ids: number[] = [];
      sched.submit({ promptIds: p, maxTokens: 10, sampling: { temperature: 0 } }, (ev) => {
        if (ev.type === "token") ids.push(ev.id);
        else if (ev.type === "error") reject(new Error(ev.message));
        else if (ev.type === "done") resolve(ids);
      });
    })));
    expect(got).toEqual(alone);
  });
});
