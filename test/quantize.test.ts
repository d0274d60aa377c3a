// `gemma-edge quantize`: output bytes as ggml's reference quantizers make them, metadata copied, and llama.cpp
// generating from the result exactly as our engine does.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryByteSource } from "../src/engine/byte-source.ts";
import { GGML_TYPE } from "../src/engine/ggml-types.ts";
import { readGguf } from "../src/engine/gguf.ts";
import { dequantizeRow, quantizeQ8_0 } from "../src/engine/quant.ts";
import { runCli } from "./helpers/cli.ts";
import { greedyBothWays } from "./helpers/llama-cpp.ts";
import { testModel } from "./helpers/models.ts";
import { SHAPES } from "../src/tools/make-test-model.ts";

const dir = mkdtempSync(join(tmpdir(), "gemma-edge-quant-"));
const run = (...args: string[]) => runCli(args);

describe("gemma-edge quantize", () => {
  // a Gemma 3 shape whose hidden size (384) K-quants cannot cut: Q4_K_M falls back to Q5_0 and Q8_0 there, as llama.cpp's
  const gemma3Odd = { ...SHAPES["tiny-gemma3"]!, dim: 384, hiddenDim: 768, headDim: 64 };
  it.each([
    ["tiny-gqa", "q4_0"], ["tiny-gqa", "q8_0"], ["tiny-gqa", "q4_1"], ["tiny-gqa", "q5_0"], ["tiny-gqa", "q5_1"], ["tiny-k", "q6_k"], ["tiny-k", "q4_k_m"],
    [gemma3Odd, "q4_k_m"],
  ] as const)("F32 -> %j %s gives the bytes of a model quantized directly", async (shape, type) => {
    const f32 = await testModel(shape, "f32", 3);
    const direct = await testModel(shape, type, 3);
    const out = join(dir, `q-${type}.gguf`);
    const r = await run("quantize", "--in", f32.path, "--out", out, "--type", type);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`wrote .* \\(.* MB, ${type}\\) from .* peak RSS \\d+ MB`));
    expect(Buffer.compare(readFileSync(out), Buffer.from(direct.bytes))).toBe(0);
  });

  it("F16 -> Q8_0: each 2-D tensor quantized from its f16 values, 1-D tensors F32, file_type updated", async () => {
    const f16 = await testModel("tiny", "f16", 4);
    const out = join(dir, "f16-q8.gguf");
    expect((await run("quantize", "--in", f16.path, "--out", out, "--type", "q8_0")).code).toBe(0);
    const src = new MemoryByteSource(f16.bytes);
    const a = await readGguf(src);
    const outBytes = new Uint8Array(readFileSync(out));
    const b = await readGguf(new MemoryByteSource(outBytes));
    expect(b.metadata.get("general.file_type")).toBe(7);
    expect([...b.metadata.keys()]).toEqual([...a.metadata.keys()]);
    expect(b.metadata.get("tokenizer.chat_template")).toBe(a.metadata.get("tokenizer.chat_template"));
    for (const [name, t] of a.tensors) {
      const q = b.tensors.get(name)!;
      const n = t.dims.reduce((x, y) => x * y, 1);
      const values = new Float32Array(n);
      dequantizeRow(t.type, f16.bytes, t.offset, n, values);
      if (t.dims.length === 2) {
        expect(q.type).toBe(GGML_TYPE.Q8_0);
        expect(Buffer.from(outBytes.subarray(q.offset, q.offset + q.nbytes)).equals(Buffer.from(quantizeQ8_0(values)))).toBe(true);
      } else {
        expect(q.type).toBe(GGML_TYPE.F32);
        expect(Array.from(new Float32Array(outBytes.slice(q.offset, q.offset + q.nbytes).buffer))).toEqual(Array.from(values));
      }
    }
  });

  it("gives a file llama.cpp and our engine generate the same greedy tokens from", async () => {
    const bf16 = await testModel("tiny-gqa", "bf16", 5);
    const out = join(dir, "bf16-q4.gguf");
    expect((await run("quantize", "--in", bf16.path, "--out", out, "--type", "q4_0")).code).toBe(0);
    for (const { ours, ref } of await greedyBothWays(out, ["Hello world", "Once upon a time"])) {
      expect(ours.length).toBeGreaterThan(0);
      expect(ours).toEqual(ref);
    }
  });

  it("refuses already-quantized input and unknown types, naming them", async () => {
    const q4 = await testModel("tiny", "q4_0");
    const r = await run("quantize", "--in", q4.path, "--out", join(dir, "x.gguf"), "--type", "q8_0");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tensor "token_embd\.weight" has type Q4_0; quantize reads F32, F16 or BF16 weights/);
    expect(existsSync(join(dir, "x.gguf"))).toBe(false);
    const t = await run("quantize", "--in", q4.path, "--out", join(dir, "x.gguf"), "--type", "q3_k");
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/--type must be one of q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, q4_k_m, got "q3_k"/);
  });
});
