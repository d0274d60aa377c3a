// Tokenizer behaviour that llama.cpp comparisons alone do not pin down: decoding, streaming holdback,
// special-token handling and the space-prefix option.
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { GGUF_VALUE, readGguf } from "../../src/engine/gguf.ts";
import { writeGguf } from "../../src/engine/gguf-writer.ts";
import { StreamingDecoder, Tokenizer } from "../../src/engine/tokenizer.ts";
import { SHAPES, testModelMetadata } from "../../src/tools/make-test-model.ts";
import { testModel } from "../helpers/models.ts";

let tok: Tokenizer;
beforeAll(async () => {
  tok = new Tokenizer(await readGguf(new MemoryByteSource((await testModel("tiny", "q4_0")).bytes)));
});

describe("SentencePiece BPE tokenizer", () => {
  it("knows Gemma's special ids and stop tokens from the vocab", () => {
    expect([tok.padId, tok.eosId, tok.bosId, tok.unkId]).toEqual([0, 1, 2, 3]);
    expect(tok.tokenId("<start_of_turn>")).toBe(106);
    expect(tok.tokenId("<end_of_turn>")).toBe(107);
    expect(tok.stopIds.sort()).toEqual([1, 107]);
  });

  it("decodes what it encodes, whitespace, scripts and emoji included", () => {
    for (const s of ["Hello world", "  two  spaces\tand\ttabs\n\nlines", "日本語 한국어 Ελληνικά", "👨‍👩‍👧 🏳️‍🌈 e\u0301"]) {
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  it("turns a literal U+2581 into a space on the way back, as llama.cpp does (SentencePiece's space marker)", () => {
    expect(tok.decode(tok.encode("\u2581x"))).toBe(" x");
  });

  it("falls back to byte tokens for characters outside the vocab", () => {
    const ids = tok.encode("\u{1F9EA}"); // 🧪 is not in the corpus: 4 UTF-8 bytes
    expect(ids.map((i) => tok.tokens[i])).toEqual(["<0xF0>", "<0x9F>", "<0xA7>", "<0xAA>"]);
  });

  it("matches user-defined tokens atomically but not control tokens in user text", () => {
    expect(tok.encode("a<unused10>b")).toContain(tok.tokenId("<unused10>"));
    const ids = tok.encode("<start_of_turn>user");
    expect(ids).not.toContain(106);
    expect(tok.decode(ids)).toBe("<start_of_turn>user");
  });

  it("recognizes control tokens only when asked to (template text)", () => {
    expect(tok.encode("<start_of_turn>user", { parseSpecial: true })[0]).toBe(106);
  });

  it("puts exactly one BOS in front when asked", () => {
    expect(tok.encode("hi", { addBos: true })[0]).toBe(2);
    expect(tok.encode("hi", { addBos: true }).filter((i) => i === 2)).toHaveLength(1);
  });

  it("renders control tokens as nothing in generated text", () => {
    expect(tok.decode([106, ...tok.encode("x"), 107, 1])).toBe("x");
  });

  it("adds a space prefix when the file says add_space_prefix = true", async () => {
    const meta = testModelMetadata({ shape: SHAPES.tiny!, type: GGML_TYPE.Q4_0, seed: 1 }).map((e) =>
      e.key === "tokenizer.ggml.add_space_prefix" ? { ...e, type: GGUF_VALUE.BOOL, value: true } : e,
    );
    const parts: Uint8Array[] = [];
    await writeGguf((b) => void parts.push(b.slice()), meta, []);
    const t2 = new Tokenizer(await readGguf(new MemoryByteSource(Buffer.concat(parts))));
    expect(t2.encode("the")).toEqual(tok.encode(" the"));
    expect(t2.encode("the")).not.toEqual(tok.encode("the"));
  });
});

describe("streaming detokenizer", () => {
  it("holds back an incomplete UTF-8 sequence until its last byte arrives", () => {
    const ids = tok.encode("\u{1F9EA}!"); // four byte tokens, then "!"
    const d = new StreamingDecoder(tok);
    const out = ids.map((i) => d.push(i));
    expect(out.slice(0, 3)).toEqual(["", "", ""]);
    expect(out[3]).toBe("\u{1F9EA}");
    expect(out.join("") + d.flush()).toBe("\u{1F9EA}!");
  });

  it("flushes a dangling partial sequence as U+FFFD", () => {
    const d = new StreamingDecoder(tok);
    expect(d.push(tok.tokenId("<0xF0>")!)).toBe("");
    expect(d.flush()).toBe("\uFFFD");
  });
});
