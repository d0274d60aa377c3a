// The Worker scripts of a sharded deployment, as wrangler configs: the front (the Hono app, src/index.ts), the
// coordinator (the model's Durable Object, src/entries/coordinator.ts) and one script per shard
// (src/entries/shard.ts), each its own Worker so that each gets its own isolate and its own 128 MB: Durable
// Objects of one script "may share global memory with other instances defined in the same Worker code"
// (Cloudflare's Durable Objects docs). Used by `npm start` (all of them under one `wrangler dev`) and by
// `gemma-edge deploy` (deployed in dependency order: shards, coordinator, front).
import { serviceSlots } from "../hosts/model-service.ts";
import { readFileSync } from "node:fs";
import { relative, resolve } from "node:path";
import type { ShardPlan } from "../engine/shard-plan.ts";
import { MODELS_BUCKET, PROJECT_ROOT } from "./r2.ts";

export interface ShardedDeployment {
  /** Script names start with this (default "gemma-edge"): <prefix>, <prefix>-coordinator, <prefix>-shard-<i>. */
  prefix?: string;
  plan: ShardPlan;
  modelId: string;
  modelKey: string;
  budgetMb: number;
  bucket?: string;
  /** The front's other settings ([vars] of wrangler.toml: CONTEXT_SIZE, MAX_QUEUE, ...). */
  vars?: Record<string, string>;
  /** Test configurations: shards may be reset through the front's /__test/ route. */
  allowReset?: boolean;
}

export interface WorkerConfig {
  /** Script name, and the file name of its config (<name>.toml). */
  name: string;
  role: "front" | "coordinator" | "shard";
  toml: string;
}

const COMPAT = `compatibility_date = "2026-11-01"\ncompatibility_flags = ["enable_request_signal"]\nsend_metrics = false`;
const str = (s: string) => JSON.stringify(s); // a TOML basic string

/** The configs, for files written into `dir` (their `main` paths are relative to it). */
export function shardedConfigs(d: ShardedDeployment, dir: string): WorkerConfig[] {
  const prefix = d.prefix ?? "gemma-edge";
  const bucket = d.bucket ?? MODELS_BUCKET;
  const main = (entry: string) => str(relative(dir, resolve(PROJECT_ROOT, entry)));
  const r2 = `[[r2_buckets]]\nbinding = "MODELS"\nbucket_name = ${str(bucket)}`;
  const vars = (v: Record<string, string>) => `[vars]\n${Object.entries(v).map(([k, x]) => `${k} = ${str(x)}`).join("\n")}`;
  // no public URL: a shard or the coordinator answers only through its binding
  const privateWorker = `workers_dev = false\npreview_urls = false`;
  const reset: Record<string, string> = d.allowReset ? { ALLOW_SHARD_RESET: "1" } : {};
  const shards = d.plan.parts.length > 1 ? d.plan.parts : [];
  const coordinator = `${prefix}-coordinator`;
  const out: WorkerConfig[] = [];
  out.push({
    name: prefix, role: "front",
    toml: [
      `# The front: the Hono app; the model's Durable Object lives in ${coordinator}.`,
      `name = ${str(prefix)}`, `main = ${main("src/index.ts")}`, COMPAT,
      `[[rules]]\ntype = "Text"\nglobs = ["**/*.html"]\nfallthrough = true`,
      r2,
      `[[durable_objects.bindings]]\nname = "MODEL_HOST"\nclass_name = "ModelHost"\nscript_name = ${str(coordinator)}`,
      vars({ ...d.vars, MODEL_ID: d.modelId, MODEL_KEY: d.modelKey, ...reset }),
    ].join("\n\n") + "\n",
  });
  out.push({
    name: coordinator, role: "coordinator",
    toml: [
      `# The coordinator: tokenizer, sampler, queue; the model in ${shards.length || "no"} shard script(s) for a budget of ${d.budgetMb} MB each.`,
      `name = ${str(coordinator)}`, `main = ${main("src/entries/coordinator.ts")}`, COMPAT, privateWorker,
      `[limits]\ncpu_ms = 300000`,
      r2,
      `[[durable_objects.bindings]]\nname = "MODEL_HOST"\nclass_name = "ModelHost"`,
      ...shards.map((p) => `[[durable_objects.bindings]]\nname = "SHARD_${p.index}"\nclass_name = "ModelShard"\nscript_name = ${str(`${prefix}-shard-${p.index}`)}`),
      `[[migrations]]\ntag = "v1"\nnew_sqlite_classes = ["ModelHost"]`,
      vars({ SHARD_BUDGET_MB: String(d.budgetMb), SHARD_COUNT: String(shards.length), ...reset }),
    ].join("\n\n") + "\n",
  });
  for (const p of shards) {
    const what = [p.spec.layers && `layers [${p.spec.layers}]`, p.spec.vocab && `vocab [${p.spec.vocab}]`].filter(Boolean).join(", ");
    out.push({
      name: `${prefix}-shard-${p.index}`, role: "shard",
      toml: [
        `# Shard ${p.index} of ${d.modelKey}: ${what}, ${(p.memoryBytes / 1e6).toFixed(1)} MB of WebAssembly memory (budget ${d.budgetMb} MB).`,
        `name = ${str(`${prefix}-shard-${p.index}`)}`, `main = ${main("src/entries/shard.ts")}`, COMPAT, privateWorker,
        `[limits]\ncpu_ms = 300000`,
        r2,
        `[[durable_objects.bindings]]\nname = "SHARD"\nclass_name = "ModelShard"`,
        `[[migrations]]\ntag = "v1"\nnew_sqlite_classes = ["ModelShard"]`,
        ...(d.allowReset ? [vars(reset)] : []),
      ].join("\n\n") + "\n",
    });
  }
  return out;
}

/** The [vars] of the project's wrangler.toml (string values), but the model's: the sharded front's settings. */
export function projectVars(): Record<string, string> {
  const toml = readFileSync(resolve(PROJECT_ROOT, "wrangler.toml"), "utf8");
  const section = toml.slice(toml.indexOf("\n[vars]") + 1).split(/\n\[/)[0]!;
  const vars: Record<string, string> = {};
  for (const m of section.matchAll(/^([A-Z_]+)\s*=\s*"([^"]*)"/gm)) vars[m[1]!] = m[2]!;
  delete vars.MODEL_ID;
  delete vars.MODEL_KEY;
  return vars;
}

/**
 * The settings a coordinator plans with, from [vars]: CONTEXT_SIZE, MAX_BATCH and the KV slots of a model in one
 * part (MAX_BATCH_SIZE + PROMPT_CACHE_SLOTS, as the model service loads it).
 */
export function planVars(vars: Record<string, string>): { contextSize?: number; maxBatch?: number; sequences: number } {
  const n = (k: string) => (vars[k] ? Number(vars[k]) : undefined);
  return { contextSize: n("CONTEXT_SIZE"), maxBatch: n("MAX_BATCH"), sequences: serviceSlots({ maxBatchSize: n("MAX_BATCH_SIZE"), promptCacheSlots: n("PROMPT_CACHE_SLOTS") }) };
}
