// `gemma-edge shard-plan`: how a model file would be split for a memory budget (engine/shard-plan.ts), as text or JSON.
import { DEFAULT_BUDGET_MB, describePlan, planModel, type ShardPlan } from "../engine/shard-plan.ts";
import { planVars, projectVars } from "../tools/shard-configs.ts";
import { num, openModelFile, parse, required, type Command } from "./args.ts";

export const shardPlanCommand: Command = {
  name: "shard-plan",
  summary: "how a model splits into shards for a memory budget per isolate",
  help: `Usage: gemma-edge shard-plan --model FILE [--budget-mb N] [--context N] [--sequences N] [--json]

Prints the parts a model runs in when each isolate may hold N MB (10^6 bytes) of WebAssembly memory: ranges of
layers, slices of the vocabulary (the tied embedding / LM head), each with its weights, KV cache, activations and
scratch, and the prefill chunk chosen to fit. A model that fits is one part.

  --budget-mb N        WebAssembly memory per isolate (default ${DEFAULT_BUDGET_MB}; production isolates have 128 MB
                       for that and the JavaScript heap together)
  --context N          KV positions per sequence (default: CONTEXT_SIZE of wrangler.toml, else the model's, at
                       most 8192)
  --sequences N        KV slots wanted, running and kept for the prompt cache (default: MAX_BATCH_SIZE +
                       PROMPT_CACHE_SLOTS of wrangler.toml, as the coordinator plans); the plan keeps as many as fit
  --json               one JSON object instead`,
  async run(args) {
    const { values } = parse(args, { model: { type: "string" }, "budget-mb": { type: "string" }, context: { type: "string" }, sequences: { type: "string" }, json: { type: "boolean" } });
    const path = required(values.model, "model");
    const budgetMb = num(values["budget-mb"], "budget-mb", { min: 0, above: true }) ?? DEFAULT_BUDGET_MB;
    // defaults: the settings a coordinator plans with (wrangler.toml's [vars])
    const pv = planVars(projectVars());
    const contextSize = num(values.context, "context", { min: 1, int: true }) ?? pv.contextSize;
    const sequences = num(values.sequences, "sequences", { min: 1, max: 256, int: true }) ?? pv.sequences;
    const plan = await planFile(path, budgetMb, contextSize, sequences, pv.maxBatch);
    process.stdout.write((values.json ? JSON.stringify(planJson(plan)) : describePlan(plan)) + "\n");
    return 0;
  },
};

/** The plan for a model file (its header only is read). */
export async function planFile(path: string, budgetMb: number, contextSize?: number, sequences = 1, maxBatch?: number): Promise<ShardPlan> {
  const src = await openModelFile(path);
  try {
    return await planModel(src, { budgetMb, contextSize, sequences, maxBatch });
  } finally {
    await src.close();
  }
}

export function planJson(p: ShardPlan) {
  return {
    budget_bytes: p.budgetBytes ?? null, chunk: p.chunk, context_size: p.contextSize, sequences: p.sequences,
    parts: p.parts.map((s) => ({
      index: s.index, ...(s.spec.layers ? { layers: s.spec.layers } : {}), ...(s.spec.vocab ? { vocab: s.spec.vocab } : {}),
      wasm_memory_bytes: s.memoryBytes, weights_bytes: s.bytes.weights, kv_bytes: s.bytes.kv, activation_bytes: s.bytes.activations, scratch_bytes: s.bytes.scratch,
    })),
  };
}
