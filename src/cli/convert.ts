// `gemma-edge convert`: a Hugging Face Gemma checkpoint (safetensors, tokenizer.model) to GGUF (src/tools/convert.ts).
import { parse, required, UsageError, writeFileStreaming, type Command } from "./args.ts";

export const convertCommand: Command = {
  name: "convert",
  summary: "Hugging Face Gemma checkpoint (safetensors) to GGUF",
  help: `Usage: gemma-edge convert --hf DIR --out FILE [--type f16|f32|q8_0|q4_0]

Converts a Hugging Face Gemma checkpoint (config.json, model.safetensors or shards with
model.safetensors.index.json, tokenizer.model, tokenizer_config.json; F32, F16 or BF16 weights) to a GGUF laid out
as llama.cpp's convert_hf_to_gguf.py writes it: tensor names, norm weights stored as 1 + w, metadata, the
SentencePiece vocabulary with scores and token types, the chat template. 2-D weights in --type (default f16),
1-D tensors F32. Memory stays flat.`,
  run,
};

async function run(args: string[]): Promise<number> {
  const { values } = parse(args, { hf: { type: "string" }, out: { type: "string" }, type: { type: "string" } });
  const dir = required(values.hf, "hf");
  const out = required(values.out, "out");
  const { CONVERT_TYPES, prepareConvert } = await import("../tools/convert.ts");
  const { writeGguf } = await import("../engine/gguf-writer.ts");
  const { nodeRowEncoder } = await import("../hosts/node-wasm.ts");
  const typeName = String(values.type ?? "f16").toLowerCase();
  const target = CONVERT_TYPES[typeName];
  if (target === undefined) throw new UsageError(`--type must be one of ${Object.keys(CONVERT_TYPES).join(", ")}, got "${values.type}"`);
  const t0 = performance.now();
  const { metadata, tensors } = await prepareConvert(dir, target, await nodeRowEncoder()); // checks the whole checkpoint before writing
  const size = await writeFileStreaming(out, (sink) => writeGguf(sink, metadata, tensors));
  const rss = process.resourceUsage().maxRSS / 1024;
  process.stderr.write(`wrote ${out} (${(size / 1e6).toFixed(1)} MB, ${typeName}, ${tensors.length} tensors) in ${((performance.now() - t0) / 1000).toFixed(1)} s, peak RSS ${rss.toFixed(0)} MB\n`);
  return 0;
}
