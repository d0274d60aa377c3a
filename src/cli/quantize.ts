// `gemma-edge quantize`: an F32/F16/BF16 GGUF to Q4_0, Q8_0 or K-quants with ggml's reference quantizers (src/tools/quantize.ts).
import { openModelFile as open, parse, required, UsageError, writeFileStreaming, type Command } from "./args.ts";

export const quantizeCommand: Command = {
  name: "quantize",
  summary: "F32/F16/BF16 GGUF to Q4_0, Q8_0, Q4_K, Q5_K, Q6_K or Q4_K_M",
  help: `Usage: gemma-edge quantize --in FILE --out FILE --type q4_0|q8_0|q4_k|q5_k|q6_k|q4_k_m

Quantizes every 2-D weight of an F32/F16/BF16 GGUF (token_embd included) with ggml's reference quantizers;
1-D tensors become F32; metadata is copied with general.file_type updated. q4_k_m is llama.cpp's mix: Q6_K for
token_embd and for attn_v/ffn_down in some layers, Q4_K elsewhere. K-quants need rows of multiples of 256
values. Memory stays flat: tensors are converted a slab of rows at a time.`,
  run,
};

async function run(args: string[]): Promise<number> {
  const { values } = parse(args, { in: { type: "string" }, out: { type: "string" }, type: { type: "string" } });
  const input = required(values.in, "in");
  const out = required(values.out, "out");
  const { QUANTIZE_TYPES, prepareQuantize } = await import("../tools/quantize.ts");
  const { nodeRowEncoder } = await import("../hosts/node-wasm.ts");
  const typeName = String(values.type ?? "").toLowerCase();
  const target = QUANTIZE_TYPES[typeName];
  if (target === undefined) throw new UsageError(`--type must be one of ${Object.keys(QUANTIZE_TYPES).join(", ")}, got "${values.type ?? ""}"`);
  const src = await open(input);
  const t0 = performance.now();
  try {
    const write = await prepareQuantize(src, target, await nodeRowEncoder()); // checks every tensor before the output file is created
    const size = await writeFileStreaming(out, write);
    const rss = process.resourceUsage().maxRSS / 1024;
    process.stderr.write(`wrote ${out} (${(size / 1e6).toFixed(1)} MB, ${typeName}) from ${(src.size / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s, peak RSS ${rss.toFixed(0)} MB\n`);
  } finally {
    await src.close();
  }
  return 0;
}
