// `npm start`: serve a model with `wrangler dev` on 127.0.0.1. Makes the built-in default model (a generated
// tiny Gemma GGUF with the chat template) when it is missing, or serves MODEL=path/to/file.gguf, after putting
// the file into the local R2 bucket under its own name. PORT changes the port (default 8787).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync, createWriteStream } from "node:fs";
import { basename, resolve } from "node:path";
import { SHAPES, WEIGHT_TYPES, writeTestModel } from "../src/tools/make-test-model.ts";
import { MODELS_BUCKET, putLocal } from "../src/tools/r2.ts";

const root = resolve(import.meta.dirname, "..");
const port = Number(process.env.PORT ?? 8787);
if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`PORT must be a port number, got "${process.env.PORT}"`);
const BUCKET = MODELS_BUCKET;

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
const stamp = resolve(root, ".wrangler/state/gemma-edge-seeded.json");
const st = statSync(model);
const want = `${model}:${st.size}:${st.mtimeMs}`;
const seeded: Record<string, string> = existsSync(stamp) ? JSON.parse(readFileSync(stamp, "utf8")) : {};
if (seeded[key] !== want) {
  process.stderr.write(`putting ${model} (${(st.size / 1e6).toFixed(1)} MB) into local R2 as ${BUCKET}/${key} ...\n`);
  await putLocal({ file: model, key, bucket: BUCKET }).catch((e: Error) => fail(`could not put the model into local R2: ${e.message}`));
  mkdirSync(resolve(root, ".wrangler/state"), { recursive: true });
  writeFileSync(stamp, JSON.stringify({ ...seeded, [key]: want }));
}

const child = spawn(
  "wrangler",
  ["dev", "--ip", "127.0.0.1", "--port", String(port), "--var", `MODEL_ID:${modelId}`, "--var", `MODEL_KEY:${key}`, "--show-interactive-dev-session=false"],
  { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" } },
);
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

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
