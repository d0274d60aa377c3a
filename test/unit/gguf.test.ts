// The GGUF reader: a valid file round-trips through our writer, and each kind of broken file gets its own
// error naming what is wrong.
import { describe, expect, it } from "vitest";
import { ReferenceBackend } from "../../src/engine/backend/reference.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { GGUF_VALUE, readGguf } from "../../src/engine/gguf.ts";
import { writeGguf, type MetaEntry, type TensorToWrite } from "../../src/engine/gguf-writer.ts";
import { loadModel } from "../../src/engine/model/load.ts";
import { testModelMetadata, testModelTensors, SHAPES } from "../../src/tools/make-test-model.ts";
import { testModel } from "../helpers/models.ts";

async function toBytes(meta: MetaEntry[], tensors: TensorToWrite[], alignment?: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await writeGguf((b) => void parts.push(b.slice()), meta, tensors, alignment);
  return Buffer.concat(parts);
}

const opts = { shape: SHAPES.tiny!, type: GGML_TYPE.Q4_0, seed: 1 };
/** A tiny model with edits to its metadata and tensor list. */
async function variant(edit: { meta?: (m: MetaEntry[]) => MetaEntry[]; tensors?: (t: TensorToWrite[]) => TensorToWrite[] }) {
  const meta = (edit.meta ?? ((m) => m))(testModelMetadata(opts));
  const tensors = (edit.tensors ?? ((t) => t))(testModelTensors(opts));
  return toBytes(meta, tensors);
}
const load = (bytes: Uint8Array) => loadModel(new MemoryByteSource(bytes, "model.gguf"), new ReferenceBackend(), { contextSize: 64 });

describe("GGUF reader", () => {
  it("reads back what the writer wrote: metadata, types and tensor layout", async () => {
    const { bytes } = await testModel("tiny", "q4_0");
    const f = await readGguf(new MemoryByteSource(bytes));
    expect(f.version).toBe(3);
    expect(f.metadata.get("general.architecture")).toBe("gemma");
    expect(f.metadata.get("gemma.attention.head_count_kv")).toBe(1);
    expect(f.metadata.get("tokenizer.ggml.add_space_prefix")).toBe(false);
    const emb = f.tensors.get("token_embd.weight")!;
    expect(emb.dims).toEqual([128, 1024]);
    expect(emb.type).toBe(GGML_TYPE.Q4_0);
    expect(emb.nbytes).toBe((128 / 32) * 18 * 1024);
    expect(emb.offset % 32).toBe(0);
    expect(f.tensors.get("output_norm.weight")!.type).toBe(GGML_TYPE.F32);
  });

  it("honours general.alignment", async () => {
    const meta: MetaEntry[] = [{ key: "general.alignment", type: GGUF_VALUE.UINT32, value: 64 }];
    const t: TensorToWrite = { name: "a", dims: [3], type: GGML_TYPE.F32, data: () => [new Uint8Array(12)] };
    const f = await readGguf(new MemoryByteSource(await toBytes(meta, [t, { ...t, name: "b" }], 64)));
    expect(f.alignment).toBe(64);
    expect(f.tensors.get("b")!.offset - f.tensors.get("a")!.offset).toBe(64);
  });
});

describe("broken GGUF files: one clear error each", () => {
  it("bad magic", async () => {
    const bytes = new Uint8Array(64);
    bytes.set([0x7f, 0x45, 0x4c, 0x46]);
    await expect(readGguf(new MemoryByteSource(bytes, "x.bin"))).rejects.toThrow(/x\.bin: not a GGUF file \(magic bytes 7f 45 4c 46/);
  });

  it("unsupported version", async () => {
    const { bytes } = await testModel("tiny", "q4_0");
    const b = bytes.slice();
    new DataView(b.buffer).setUint32(4, 7, true);
    await expect(readGguf(new MemoryByteSource(b))).rejects.toThrow(/unsupported GGUF version 7 \(supported: 2, 3\)/);
  });

  it("a file cut inside the header", async () => {
    const { bytes } = await testModel("tiny", "q4_0");
    await expect(readGguf(new MemoryByteSource(bytes.slice(0, 5000), "cut.gguf"))).rejects.toThrow(/cut\.gguf: truncated GGUF header: reading .* at offset \d+, file is 5000 bytes/);
  });

  it("a file too short for any header", async () => {
    await expect(readGguf(new MemoryByteSource(new Uint8Array([0x47, 0x47, 0x55, 0x46, 3]), "t.gguf"))).rejects.toThrow(/t\.gguf: truncated GGUF header: file is 5 bytes/);
  });

  it("a file cut inside the tensor data", async () => {
    const { bytes } = await testModel("tiny", "q4_0");
    await expect(readGguf(new MemoryByteSource(bytes.slice(0, bytes.length - 100), "short.gguf"))).rejects.toThrow(
      /tensor "output_norm\.weight" .* ends past the end of the file .*; the file is truncated/,
    );
  });

  it("duplicate metadata key", async () => {
    const b = await variant({ meta: (m) => [...m, { key: "gemma.block_count", type: GGUF_VALUE.UINT32, value: 2 }] });
    await expect(readGguf(new MemoryByteSource(b))).rejects.toThrow(/duplicate metadata key "gemma\.block_count"/);
  });

  it("duplicate tensor name", async () => {
    const b = await variant({ tensors: (t) => [...t, { ...t.at(-1)!, name: "output_norm.weight" }] });
    await expect(readGguf(new MemoryByteSource(b))).rejects.toThrow(/duplicate tensor name "output_norm\.weight"/);
  });

  it("another architecture", async () => {
    const b = await variant({ meta: (m) => m.map((e) => (e.key === "general.architecture" ? { ...e, value: "llama" } : e)) });
    await expect(load(b)).rejects.toThrow(/unsupported architecture "llama" \(general\.architecture\)/);
  });

  it("a missing required key", async () => {
    const b = await variant({ meta: (m) => m.filter((e) => e.key !== "gemma.feed_forward_length") });
    await expect(load(b)).rejects.toThrow(/missing required metadata key "gemma\.feed_forward_length"/);
  });

  it("a key of the wrong type", async () => {
    const b = await variant({ meta: (m) => m.map((e) => (e.key === "gemma.block_count" ? { ...e, type: GGUF_VALUE.STRING, value: "two" } : e)) });
    await expect(load(b)).rejects.toThrow(/metadata key "gemma\.block_count" should be a number, got string "two"/);
  });

  it("a missing tensor", async () => {
    const b = await variant({ tensors: (t) => t.filter((x) => x.name !== "blk.1.ffn_up.weight") });
    await expect(load(b)).rejects.toThrow(/missing tensor "blk\.1\.ffn_up\.weight"/);
  });

  it("a tensor of the wrong shape", async () => {
    const b = await variant({
      tensors: (t) => t.map((x) => (x.name === "blk.0.attn_k.weight" ? { ...x, dims: [128, 64], data: () => [new Uint8Array((128 / 32) * 18 * 64)] } : x)),
    });
    await expect(load(b)).rejects.toThrow(/tensor "blk\.0\.attn_k\.weight" has shape \[128, 64\], expected \[128, 32\]/);
  });

  it("an unsupported tensor type", async () => {
    // our writer cannot produce Q3_K bytes: patch the type id of a valid file instead
    const { bytes } = await testModel("tiny", "q4_0");
    const f = await readGguf(new MemoryByteSource(bytes));
    const patched = bytes.slice();
    const name = new TextEncoder().encode("blk.0.attn_q.weight");
    const at = Buffer.from(patched).indexOf(Buffer.from(name));
    // name, then u32 n_dims (2), 2 x u64 dims, then the u32 type
    new DataView(patched.buffer).setUint32(at + name.length + 4 + 16, GGML_TYPE.Q3_K, true);
    expect(f.tensors.get("blk.0.attn_q.weight")!.type).toBe(GGML_TYPE.Q4_0);
    await expect(load(patched)).rejects.toThrow(/tensor "blk\.0\.attn_q\.weight" has type Q3_K, which this engine does not support \(supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16\)/);
  });

  it("a K-quant matrix whose rows are not whole 256-value super-blocks", async () => {
    const { bytes } = await testModel("tiny", "q4_0"); // 128-value rows
    const patched = bytes.slice();
    const name = new TextEncoder().encode("blk.0.attn_q.weight");
    const at = Buffer.from(patched).indexOf(Buffer.from(name));
    new DataView(patched.buffer).setUint32(at + name.length + 4 + 16, GGML_TYPE.Q4_K, true);
    await expect(load(patched)).rejects.toThrow(/tensor "blk\.0\.attn_q\.weight": row length 128 is not a multiple of the Q4_K block size/);
  });

  it("a vocabulary that does not match the embedding", async () => {
    const b = await variant({
      meta: (m) => m.map((e) => (e.key === "tokenizer.ggml.tokens" ? { ...e, value: { itemType: GGUF_VALUE.STRING, items: (e.value as { items: string[] }).items.slice(0, 1000) } } : e)),
    });
    await expect(load(b)).rejects.toThrow(/tokenizer\.ggml\.scores has 1024 entries, tokens has 1000/);
  });

  it("a non-SentencePiece tokenizer", async () => {
    const b = await variant({ meta: (m) => m.map((e) => (e.key === "tokenizer.ggml.model" ? { ...e, value: "gpt2" } : e)) });
    await expect(load(b)).rejects.toThrow(/unsupported tokenizer model "gpt2" \(tokenizer\.ggml\.model\)/);
  });
});
