// `gemma-edge deploy`: a sharded deployment of a model in R2: the plan for the budget, one wrangler config per
// Worker script (front, coordinator, each shard; src/tools/shard-configs.ts), then `wrangler deploy` of each in
// dependency order (a script that binds another's Durable Object class needs that script deployed first).
// --dry-run builds every bundle with `wrangler deploy --dry-run` (no account needed) and prints its size.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { AwsClient } from "aws4fetch";
import { HttpByteSource, type ByteSource } from "../engine/byte-source.ts";
import { DEFAULT_BUDGET_MB, describePlan, planModel } from "../engine/shard-plan.ts";
import { FileByteSource } from "../hosts/node-file-source.ts";
import { MODELS_BUCKET, PROJECT_ROOT, runWrangler } from "../tools/r2.ts";
import { planVars, projectVars, shardedConfigs } from "../tools/shard-configs.ts";
import { num, parse, required, UsageError, type Command } from "./args.ts";

export const deployCommand: Command = {
  name: "deploy",
  summary: "deploy a model in R2 as a sharded set of Workers (or --dry-run: build and size them)",
  help: `Usage: gemma-edge deploy --model-key KEY [options]

Plans the model at KEY in the R2 bucket for a memory budget per isolate, writes one wrangler config per Worker
script (<prefix> the front, <prefix>-coordinator, <prefix>-shard-<i>) into --outdir, and deploys them with
"wrangler deploy": shards first, then the coordinator, then the front. Shards and the coordinator have no
public URL (workers_dev = false, preview_urls = false).

  --model-key KEY      the GGUF's key in the bucket (what MODEL_KEY names)
  --model FILE         a local copy of that file, to read its header from (default: the file "npm start" put into
                       local R2 under KEY, or models/KEY; else the bucket itself through R2's S3 API with
                       R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and R2_ENDPOINT or CLOUDFLARE_ACCOUNT_ID)
  --model-id NAME      the name clients send (default: KEY without .gguf)
  --budget-mb N        WebAssembly memory per isolate, MB (default ${DEFAULT_BUDGET_MB})
  --context N          KV positions per sequence (default: the model's, at most 8192)
  --prefix NAME        Worker script names start with this (default gemma-edge)
  --bucket NAME        the R2 bucket (default ${MODELS_BUCKET})
  --outdir DIR         where the configs (and, with --dry-run, the bundles) go (default .wrangler/deploy)
  --dry-run            build every bundle with "wrangler deploy --dry-run" and print its size; deploy nothing
Deploying needs wrangler's credentials (CLOUDFLARE_API_TOKEN, or "npx wrangler login").`,
  async run(args) {
    const { values } = parse(args, {
      "model-key": { type: "string" }, model: { type: "string" }, "model-id": { type: "string" }, "budget-mb": { type: "string" },
      context: { type: "string" }, prefix: { type: "string" }, bucket: { type: "string" }, outdir: { type: "string" }, "dry-run": { type: "boolean" },
    });
    const key = required(values["model-key"], "model-key");
    const budgetMb = num(values["budget-mb"], "budget-mb", { min: 0, above: true }) ?? DEFAULT_BUDGET_MB;
    const contextSize = num(values.context, "context", { min: 1, int: true });
    const prefix = String(values.prefix ?? "gemma-edge");
    if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(prefix)) throw new UsageError(`--prefix must be lowercase letters, digits and dashes (a Worker name), got "${prefix}"`);
    const bucket = String(values.bucket ?? MODELS_BUCKET);
    const outdir = resolve(process.env.INIT_CWD ?? process.cwd(), String(values.outdir ?? resolve(PROJECT_ROOT, ".wrangler/deploy")));
    const modelId = String(values["model-id"] ?? key.replace(/\.gguf$/i, ""));

    const src = await headerSource(key, bucket, typeof values.model === "string" ? values.model : undefined);
    let plan;
    try {
      // the coordinator plans from the same settings
      const pv = planVars(projectVars());
      plan = await planModel(src, { budgetMb, ...pv, contextSize: contextSize ?? pv.contextSize });
    } finally {
      await src.close?.();
    }
    process.stdout.write(`${key} (read from ${src.name}):\n${describePlan(plan)}\n\n`);

    const vars = projectVars();
    if (contextSize) vars.CONTEXT_SIZE = String(contextSize);
    const configs = shardedConfigs({ prefix, plan, modelId, modelKey: key, budgetMb, bucket, vars }, outdir);
    mkdirSync(outdir, { recursive: true });
    for (const c of configs) writeFileSync(resolve(outdir, `${c.name}.toml`), c.toml);
    // dependency order: what a script binds must exist first
    const order = [...configs.filter((c) => c.role === "shard"), ...configs.filter((c) => c.role === "coordinator"), ...configs.filter((c) => c.role === "front")];
    const width = Math.max(...order.map((c) => c.name.length));
    for (const c of order) {
      const file = resolve(outdir, `${c.name}.toml`);
      const wranglerArgs = values["dry-run"] ? ["deploy", "--dry-run", "--outdir", resolve(outdir, c.name), "-c", file] : ["deploy", "-c", file];
      const r = await runWrangler(wranglerArgs, "pipe");
      if (r.code !== 0) throw new Error(`wrangler ${wranglerArgs.join(" ")} failed (exit ${r.code}):\n${(r.stderr + r.stdout).trim().split("\n").slice(-15).join("\n")}`);
      const size = /Total Upload: ([^\n]+)/.exec(r.stdout + r.stderr)?.[1]?.trim() ?? "size not reported";
      const part = plan.parts.length > 1 ? plan.parts[Number(/-shard-(\d+)$/.exec(c.name)?.[1] ?? -1)] : undefined;
      const holds = c.role === "shard" && part
        ? [part.spec.layers && `layers [${part.spec.layers[0]}, ${part.spec.layers[1]})`, part.spec.vocab && `vocab [${part.spec.vocab[0]}, ${part.spec.vocab[1]})`].filter(Boolean).join(" + ")
        : c.role;
      process.stdout.write(`${values["dry-run"] ? "built" : "deployed"} ${c.name.padEnd(width)}  ${holds.padEnd(26)} bundle ${size}\n`);
    }
    process.stdout.write(values["dry-run"] ? `\n${order.length} Worker scripts built into ${outdir} (nothing deployed)\n` : `\n${order.length} Worker scripts deployed; the API is the front, ${prefix}\n`);
    return 0;
  },
};

/** Where the model's header is read from (see --model in the help). */
async function headerSource(key: string, bucket: string, file?: string): Promise<ByteSource & { close?(): Promise<void> }> {
  const cwd = process.env.INIT_CWD ?? process.cwd();
  if (file) return FileByteSource.open(resolve(cwd, file)).catch((e: NodeJS.ErrnoException) => {
    throw new Error(e.code === "ENOENT" ? `model file not found: ${resolve(cwd, file)}` : e.message);
  });
  // the file npm start put into local R2 under this key (its stamp records the path), or models/<key>
  const stamp = resolve(PROJECT_ROOT, ".wrangler/state/gemma-edge-seeded.json");
  const seeded = existsSync(stamp) ? (JSON.parse(readFileSync(stamp, "utf8")) as Record<string, string>)[key]?.replace(/:\d+:[\d.]+$/, "") : undefined;
  for (const path of [seeded, resolve(PROJECT_ROOT, "models", basename(key))]) if (path && existsSync(path)) return FileByteSource.open(path);
  const env = process.env;
  const endpoint = env.R2_ENDPOINT ?? (env.CLOUDFLARE_ACCOUNT_ID ? `https://${env.CLOUDFLARE_ACCOUNT_ID}.r2.cloudflarestorage.com` : undefined);
  if (!endpoint || !env.R2_ACCESS_KEY_ID || !env.R2_SECRET_ACCESS_KEY) {
    throw new UsageError(`no copy of "${key}" here to read its header from: give --model FILE, or R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and R2_ENDPOINT (or CLOUDFLARE_ACCOUNT_ID) to read it from the bucket`);
  }
  const client = new AwsClient({ accessKeyId: env.R2_ACCESS_KEY_ID, secretAccessKey: env.R2_SECRET_ACCESS_KEY, service: "s3", region: "auto" });
  const url = `${endpoint.replace(/\/+$/, "")}/${encodeURIComponent(bucket)}/${key.split("/").map(encodeURIComponent).join("/")}`;
  return HttpByteSource.open(url, {}, (input, init) => client.fetch(input as string, init));
}
