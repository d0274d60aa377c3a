// `npm start`: serve a model with `wrangler dev` on 127.0.0.1. Makes the built-in default model (a generated
// tiny Gemma GGUF with the chat template) when it is missing, or serves MODEL=path/to/file.gguf, after putting
// the file into the local R2 bucket under its own name. PORT changes the port (default 8787). SHARD_BUDGET_MB
// splits the model across shard Workers, each within that much WebAssembly memory (see shard-configs.ts).
// CONTEXT_SIZE, MAX_BATCH, MAX_BATCH_SIZE, PREFILL_CHUNK, PROMPT_CACHE_SLOTS and MAX_QUEUE override wrangler.toml.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, createWriteStream } from "node:fs";
import { basename, resolve } from "node:path";
import { SHAPES, WEIGHT_TYPES, writeTestModel } from "../src/tools/make-test-model.ts";
import { MODELS_BUCKET, putLocal } from "../src/tools/r2.ts";
import { describePlan, planModel } from "../src/engine/shard-plan.ts";
import { FileByteSource } from "../src/hosts/node-file-source.ts";
import { planVars, projectVars, shardedConfigs } from "../src/tools/shard-configs.ts";

const root = resolve(import.meta.dirname, "..");
const port = Number(process.env.PORT ?? 8787);
if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`PORT must be a port number, got "${process.env.PORT}"`);
const BUCKET = MODELS_BUCKET;
// wrangler dev's local state (R2, Durable Objects); GEMMA_EDGE_STATE_DIR gives tests servers of their own
const state = resolve(root, process.env.GEMMA_EDGE_STATE_DIR ?? ".wrangler/state");

function fail(msg: string): never {
  process.stderr.write(`npm start: ${msg}\n`);
  process.exit(1);
}

async function defaultModel(): Promise<string> {
  const path = resolve(root, "models/gemma-edge-tiny.gguf");
  if (existsSync(path)) return path;
  mkdirSync(resolve(root, "models"), { recursive: true });
  process.stderr.write(`making the built-in default model ${path} ...\n`);
  const out = createWriteStream(path);
  await writeTestModel({ shape: SHAPES.tiny!, type: WEIGHT_TYPES.q4_0!, seed: 1 }, (b) => new Promise<void>((r) => (out.write(b) ? r() : out.once("drain", () => r()))));
  await new Promise<void>((r) => out.end(() => r()));
  return path;
}

// a relative MODEL is relative to where the user ran npm (INIT_CWD), not to the package root npm runs scripts in
const model = process.env.MODEL ? resolve(process.env.INIT_CWD ?? process.cwd(), process.env.MODEL) : await defaultModel();
if (!existsSync(model)) fail(`MODEL file not found: ${model}`);
const key = basename(model);
const modelId = key.replace(/\.gguf$/i, "");

// seed local R2 (skipped when this exact file is already there)
// kept inside the local state folder: deleting the state forgets the seeding too
const stamp = resolve(state, "gemma-edge-seeded.json");
const st = statSync(model);
const want = `${model}:${st.size}:${st.mtimeMs}`;
const seeded: Record<string, string> = existsSync(stamp) ? JSON.parse(readFileSync(stamp, "utf8")) : {};
if (seeded[key] !== want) {
  process.stderr.write(`putting ${model} (${(st.size / 1e6).toFixed(1)} MB) into local R2 as ${BUCKET}/${key} ...\n`);
  await putLocal({ file: model, key, bucket: BUCKET, persistTo: state }).catch((e: Error) => fail(`could not put the model into local R2: ${e.message}`));
  mkdirSync(state, { recursive: true });
  writeFileSync(stamp, JSON.stringify({ ...seeded, [key]: want }));
}

// SHARD_BUDGET_MB: the model split by the plan for that budget, each shard a Worker script of its own, all of
// them under one wrangler dev (the first config is the front; the others are reachable through bindings only)
const configs = process.env.SHARD_BUDGET_MB ? await shardedDev(process.env.SHARD_BUDGET_MB) : undefined;
const child = spawn(
  "wrangler",
  [
    "dev", "--ip", "127.0.0.1", "--port", String(port), "--show-interactive-dev-session=false",
    ...(configs
      ? configs.flatMap((c) => ["-c", c])
      : ["--var", `MODEL_ID:${modelId}`, "--var", `MODEL_KEY:${key}`, ...Object.entries(overrides()).flatMap(([k, v]) => ["--var", `${k}:${v}`])]),
    "--persist-to", state,
  ],
  { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" } },
);
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

/** Settings of wrangler.toml's [vars] that the environment overrides for this run. */
function overrides(): Record<string, string> {
  const names = ["CONTEXT_SIZE", "MAX_BATCH", "MAX_BATCH_SIZE", "PREFILL_CHUNK", "PROMPT_CACHE_SLOTS", "MAX_QUEUE"];
  return Object.fromEntries(names.flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])));
}

/** Plan the split of MODEL for a budget of `mb` MB, print it, and write the Worker configs; their paths. */
async function shardedDev(mb: string): Promise<string[]> {
  const budgetMb = Number(mb);
  if (!(budgetMb > 0)) fail(`SHARD_BUDGET_MB must be a positive number of MB, got "${mb}"`);
  const vars = { ...projectVars(), ...overrides() };
  const src = await FileByteSource.open(model);
  let plan;
  try {
    // the coordinator plans from the same settings (CONTEXT_SIZE, MAX_BATCH, the KV slots), so it finds the shards planned here
    plan = await planModel(src, { budgetMb, ...planVars(vars) });
  } catch (e) {
    fail(`cannot split ${model} for SHARD_BUDGET_MB=${mb}: ${(e as Error).message}`);
  } finally {
    await src.close?.();
  }
  process.stderr.write(`${describePlan(plan)}\n`);
  const dir = resolve(state, "../sharded");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const configs = shardedConfigs({ plan, modelId, modelKey: key, budgetMb, vars, allowReset: process.env.ALLOW_SHARD_RESET === "1" }, dir);
  return configs.map((c) => {
    const file = resolve(dir, `${c.name}.toml`);
    writeFileSync(file, c.toml);
    return file;
  });
}

// tell the user where it is once the model answers
const url = `http://127.0.0.1:${port}`;
for (let i = 0; i < 600; i++) {
  await new Promise((r) => setTimeout(r, 500));
  try {
    const res = await fetch(`${url}/health`);
    const body = (await res.json()) as { status: string; error?: string };
    if (res.ok) {
      process.stderr.write(
        `\ngemma-edge is serving ${modelId} at ${url} (chat page: open ${url}/ in a browser)\n` +
          `  curl ${url}/v1/chat/completions -H 'Content-Type: application/json' \\\n` +
          `    -d '{"model":"${modelId}","messages":[{"role":"user","content":"Hello"}],"max_tokens":32}'\n\n`,
      );
      break;
    }
    if (body.status === "error") {
      process.stderr.write(`\nthe model failed to load: ${body.error}\n`);
      break;
    }
  } catch {
    // not listening yet
  }
}
