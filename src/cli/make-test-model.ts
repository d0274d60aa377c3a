// `gemma-edge make-test-model`: a Gemma-architecture GGUF with deterministic random weights (src/tools/make-test-model.ts).
import { num, parse, required, UsageError, writeFileStreaming, type Command } from "./args.ts";
import { SHAPES, WEIGHT_MIXES, WEIGHT_TYPES, writeTestModel, type TestModelShape } from "../tools/make-test-model.ts";
import { ARCHITECTURES, type Architecture } from "../engine/config.ts";

export const makeTestModelCommand: Command = {
  name: "make-test-model",
  summary: "write a Gemma-architecture GGUF (gemma, gemma2, gemma3) with deterministic random weights",
  help: `Usage: gemma-edge make-test-model --out FILE [options]

  --arch A             ${ARCHITECTURES.join(" | ")}: the default shape becomes tiny, tiny-gemma2 or tiny-gemma3
  --shape NAME         ${Object.keys(SHAPES).join(" | ")} (default tiny)
  --type T             ${[...Object.keys(WEIGHT_TYPES), ...Object.keys(WEIGHT_MIXES)].join(" | ")} (default q4_0;
                       K-quants need a shape whose matrices have multiples of 256 columns, e.g. tiny-k)
  --seed N             weight seed (default 1)
  --vocab N --dim N --hidden-dim N --layers N --heads N --kv-heads N --head-dim N --context N
                       override single dimensions of the shape
  --rope-dims N        rotate only the first N dimensions of each head (gemma.rope.dimension_count)
  --window N           Gemma 2 and 3: the sliding window of local layers
  --attn-softcap X --final-softcap X   Gemma 2 (final: and 3): soft-caps
  --rope-scaling X     Gemma 3: linear RoPE scaling factor of global layers
  --no-chat-template   leave tokenizer.chat_template out of the file`,
  run,
};

async function run(args: string[]): Promise<number> {
  const { values } = parse(args, {
    out: { type: "string" }, shape: { type: "string" }, type: { type: "string" }, seed: { type: "string" },
    vocab: { type: "string" }, dim: { type: "string" }, "hidden-dim": { type: "string" }, layers: { type: "string" },
    heads: { type: "string" }, "kv-heads": { type: "string" }, "head-dim": { type: "string" }, context: { type: "string" },
    "rope-dims": { type: "string" }, "no-chat-template": { type: "boolean" }, arch: { type: "string" }, window: { type: "string" },
    "attn-softcap": { type: "string" }, "final-softcap": { type: "string" }, "rope-scaling": { type: "string" },
  });
  const arch = values.arch === undefined ? undefined : String(values.arch) as Architecture;
  if (arch !== undefined && !ARCHITECTURES.includes(arch)) throw new UsageError(`--arch must be one of ${ARCHITECTURES.join(", ")}, got "${arch}"`);
  const out = required(values.out, "out");
  const shapeName = String(values.shape ?? (arch && arch !== "gemma" ? `tiny-${arch}` : "tiny"));
  const base = SHAPES[shapeName];
  if (!base) throw new UsageError(`--shape must be one of ${Object.keys(SHAPES).join(", ")}, got "${shapeName}"`);
  const typeName = String(values.type ?? "q4_0").toLowerCase();
  const mix = WEIGHT_MIXES[typeName];
  const type = mix?.type ?? WEIGHT_TYPES[typeName];
  if (type === undefined) throw new UsageError(`--type must be one of ${[...Object.keys(WEIGHT_TYPES), ...Object.keys(WEIGHT_MIXES)].join(", ")}, got "${values.type}"`);
  if (arch !== undefined && (base.arch ?? "gemma") !== arch) throw new UsageError(`--shape ${shapeName} is a ${base.arch ?? "gemma"} shape, not ${arch}`);
  const dim = (flag: string, key: "vocabSize" | "dim" | "hiddenDim" | "nLayers" | "nHeads" | "nKvHeads" | "headDim" | "contextLength") =>
    num(values[flag], flag, { min: 1, int: true }) ?? base[key];
  const shape: TestModelShape = {
    ...base,
    vocabSize: dim("vocab", "vocabSize"), dim: dim("dim", "dim"), hiddenDim: dim("hidden-dim", "hiddenDim"),
    nLayers: dim("layers", "nLayers"), nHeads: dim("heads", "nHeads"), nKvHeads: dim("kv-heads", "nKvHeads"),
    headDim: dim("head-dim", "headDim"), contextLength: dim("context", "contextLength"),
    ropeDims: num(values["rope-dims"], "rope-dims", { min: 2, int: true }) ?? base.ropeDims,
    window: num(values.window, "window", { min: 1, int: true }) ?? base.window,
    attnSoftcap: num(values["attn-softcap"], "attn-softcap", { min: 0 }) ?? base.attnSoftcap,
    finalSoftcap: num(values["final-softcap"], "final-softcap", { min: 0 }) ?? base.finalSoftcap,
    ropeScaling: num(values["rope-scaling"], "rope-scaling", { min: 1 }) ?? base.ropeScaling,
  };
  if ((shape.arch ?? "gemma") === "gemma" && (shape.window ?? shape.attnSoftcap ?? shape.finalSoftcap ?? shape.ropeScaling) !== undefined) {
    throw new UsageError("--window, --attn-softcap, --final-softcap and --rope-scaling are for --arch gemma2 or gemma3");
  }
  if (shape.ropeDims !== undefined && (shape.ropeDims % 2 || shape.ropeDims > shape.headDim)) {
    throw new UsageError(`--rope-dims must be even and at most --head-dim ${shape.headDim}, got ${shape.ropeDims}`);
  }
  if (shape.vocabSize < 512) throw new UsageError(`--vocab must be at least 512 (special, byte and character tokens), got ${shape.vocabSize}`);
  if (shape.nHeads % shape.nKvHeads !== 0) throw new UsageError(`--heads ${shape.nHeads} must be a multiple of --kv-heads ${shape.nKvHeads}`);
  if (shape.headDim % 2) throw new UsageError(`--head-dim must be even, got ${shape.headDim}`);
  const seed = num(values.seed, "seed", { min: 0, max: 2 ** 32 - 1, int: true }) ?? 1;
  const { nodeRowEncoder } = await import("../hosts/node-wasm.ts");
  const encode = await nodeRowEncoder();
  const t0 = performance.now();
  const size = await writeFileStreaming(out, (sink) => writeTestModel({ shape, type, mix, seed, encode, chatTemplate: values["no-chat-template"] ? null : undefined }, sink));
  process.stderr.write(`wrote ${out} (${(size / 1e6).toFixed(1)} MB, ${shapeName}, ${typeName}, seed ${seed}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return 0;
}
