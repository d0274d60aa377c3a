// The `gemma-edge` command line: serve, bench, quantize, convert, r2 put, tokenize, generate, make-test-model,
// and (each in a module of its own, see COMMANDS) shard-plan and deploy. One clear line on stderr and a non-zero
// exit code for every error; `--help` for each command.
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { resolve } from "node:path";
import { generate } from "../engine/generate.ts";
import { num, openModelFile as open, parse, required, UsageError, type Command } from "./args.ts";
import { deployCommand } from "./deploy.ts";
import { shardPlanCommand } from "./shard-plan.ts";
import { BACKEND_NAMES, loadNodeModel } from "../hosts/node-backend.ts";
import { DEFAULT_MAX_BATCH_SIZE, DEFAULT_PREFILL_CHUNK, DEFAULT_PROMPT_CACHE_SLOTS } from "../hosts/model-service.ts";
import { SHAPES, WEIGHT_MIXES, WEIGHT_TYPES, writeTestModel, type TestModelShape } from "../tools/make-test-model.ts";

/** Commands that live in modules of their own (the rest are below, in this file). */
const COMMANDS: Command[] = [shardPlanCommand, deployCommand];
const COMMAND_LIST = COMMANDS.map((c) => `  ${c.name.padEnd(17)}${c.summary}`).join("\n");

const HELP: Record<string, string> = {
  main: `gemma-edge: Gemma inference on WebAssembly, checked against llama.cpp

Usage: gemma-edge <command> [options]

Commands:
  serve            serve the OpenAI and TGI HTTP APIs for a model file
  bench            measure speed and memory, optionally next to llama.cpp
  quantize         F32/F16/BF16 GGUF to Q4_0, Q8_0, Q4_K, Q5_K, Q6_K or Q4_K_M
  convert          Hugging Face Gemma checkpoint (safetensors) to GGUF
  r2 put           put a model file into the local R2 bucket that wrangler dev serves
  tokenize         print the token ids of a text
  generate         generate text from a prompt
  make-test-model  write a Gemma-architecture GGUF with deterministic random weights
\${COMMAND_LIST}
Run "gemma-edge <command> --help" for the options of a command.`,
  tokenize: `Usage: gemma-edge tokenize --model FILE --text STR

Prints one JSON line {"ids":[...]}: the text tokenized as user text (no BOS, control-token text not parsed).`,
  generate: `Usage: gemma-edge generate --model FILE --prompt STR [options]

  --chat               send the prompt as one user message through the model's chat template
  --max-tokens N       tokens to generate at most (default 128)
  --temperature T      0 = greedy (default 0.8)
  --top-k K            keep the K most likely tokens (default 40; 0 = off)
  --top-p P            nucleus sampling (default 0.95)
  --min-p P            drop tokens below P x the top probability (default 0.05)
  --seed S             make sampling repeatable
  --stop STR           stop at this text (repeatable)
  --context N          context size to allocate (default: the model's, at most 8192)
  --backend NAME       ${BACKEND_NAMES.join(" | ")} (default wasm)
  --threads T          worker threads for the wasm backend's matrix products (default 1; Node only)
  --json               print one JSON line {"prompt_ids","ids","text","finish_reason"} instead of streaming
                       (ids: the generated tokens, without the end-of-generation token that stopped them)`,
  quantize: `Usage: gemma-edge quantize --in FILE --out FILE --type q4_0|q8_0|q4_k|q5_k|q6_k|q4_k_m

Quantizes every 2-D weight of an F32/F16/BF16 GGUF (token_embd included) with ggml's reference quantizers;
1-D tensors become F32; metadata is copied with general.file_type updated. q4_k_m is llama.cpp's mix: Q6_K for
token_embd and for attn_v/ffn_down in some layers, Q4_K elsewhere. K-quants need rows of multiples of 256
values. Memory stays flat: tensors are converted a slab of rows at a time.`,
  convert: `Usage: gemma-edge convert --hf DIR --out FILE [--type f16|f32|q8_0|q4_0]

Converts a Hugging Face Gemma checkpoint (config.json, model.safetensors or shards with
model.safetensors.index.json, tokenizer.model, tokenizer_config.json; F32, F16 or BF16 weights) to a GGUF laid out
as llama.cpp's convert_hf_to_gguf.py writes it: tensor names, norm weights stored as 1 + w, metadata, the
SentencePiece vocabulary with scores and token types, the chat template. 2-D weights in --type (default f16),
1-D tensors F32. Memory stays flat.`,
  bench: `Usage: gemma-edge bench --model FILE [options]

Measures load time, prefill and decode speed, time to first token (16-token prompt) and peak memory.

  --prompt-tokens N    prompt length for prefill (default 128)
  --gen-tokens M       tokens to decode (default 64)
  --threads T          threads for both engines (default 1; ours: worker threads for the wasm backend)
  --backend NAME       ${BACKEND_NAMES.join(" | ")} (default wasm)
  --repeats R          measurements of each engine, alternating (default 3; figures are medians)
  --vs-llama-cpp       also measure llama.cpp (node-llama-cpp, CPU) on the same file and report ratios
  --json               the last line of output is one JSON object`,
  r2: `Usage: gemma-edge r2 put --file FILE --key KEY (--local [--persist DIR] | --remote [--endpoint URL]) [--bucket NAME]

Puts FILE into R2 under KEY, as one object (readers never see half of it). Serve it with
"wrangler dev --var MODEL_KEY:KEY --var MODEL_ID:NAME" (or MODEL=FILE npm start, which does both).

  --local          the local bucket of "wrangler dev"
  --persist DIR    wrangler's state folder (default: .wrangler/state of this project, what "wrangler dev" reads)
  --remote         a real bucket, through R2's S3 multipart API, with a progress bar; a failed or interrupted
                   (Ctrl-C) upload is aborted, leaving nothing behind. Credentials: R2_ACCESS_KEY_ID and
                   R2_SECRET_ACCESS_KEY (an R2 API token's S3 credentials)
  --endpoint URL   S3 endpoint (default R2_ENDPOINT, or https://$CLOUDFLARE_ACCOUNT_ID.r2.cloudflarestorage.com)
  --part-size MIB  MiB per part (default 16, more for files over 160 GB; at least 5)
  --bucket NAME    bucket name (default gemma-edge-models, the MODELS binding of wrangler.toml)`,
  serve: `Usage: gemma-edge serve --model FILE [options]

Serves the OpenAI-compatible and TGI routes with the engine in this process (the Worker's app, on Node).

  --port N             port (default 8787)
  --host ADDR          address to listen on (default 127.0.0.1)
  --model-id NAME      the model name clients send (default: the file name without .gguf)
  --context N          context size (default: the model's, at most 8192)
  --backend NAME       ${BACKEND_NAMES.join(" | ")} (default wasm)
  --threads T          worker threads for the wasm backend's matrix products (default 1; Node only)
  --max-batch-size N   sequences that decode together (TGI's max_batch_size; default ${DEFAULT_MAX_BATCH_SIZE})
  --prefill-chunk N    prompt tokens per forward step, a multiple of 4 (default ${DEFAULT_PREFILL_CHUNK})
  --prompt-cache N     finished sequences kept for the prompt cache beyond the running ones (default
                       ${DEFAULT_PROMPT_CACHE_SLOTS}; 0 = off). Every sequence slot holds KV for the whole context.
  --max-queue N        requests that may wait for a slot before new ones get 429 (default 8)
  --strict-model       answer 404 to requests naming another model (default: this model answers whatever
                       "model" says, as TGI and llama.cpp's server do)
Environment: API_KEY (require "Authorization: Bearer <key>"), CORS_ORIGINS (comma-separated, default *).`,
  "make-test-model": `Usage: gemma-edge make-test-model --out FILE [options]

  --shape NAME         ${Object.keys(SHAPES).join(" | ")} (default tiny)
  --type T             ${[...Object.keys(WEIGHT_TYPES), ...Object.keys(WEIGHT_MIXES)].join(" | ")} (default q4_0;
                       K-quants need a shape whose matrices have multiples of 256 columns, e.g. tiny-k)
  --seed N             weight seed (default 1)
  --vocab N --dim N --hidden-dim N --layers N --heads N --kv-heads N --head-dim N --context N
                       override single dimensions of the shape
  --rope-dims N        rotate only the first N dimensions of each head (gemma.rope.dimension_count)
  --no-chat-template   leave tokenizer.chat_template out of the file`,
};

async function cmdTokenize(args: string[]): Promise<number> {
  const { values } = parse(args, { model: { type: "string" }, text: { type: "string" } });
  if (values.help) return help("tokenize");
  const path = required(values.model, "model");
  if (typeof values.text !== "string") throw new UsageError("--text is required");
  const src = await open(path);
  try {
    const { readGguf } = await import("../engine/gguf.ts");
    const { Tokenizer } = await import("../engine/tokenizer.ts");
    const tok = new Tokenizer(await readGguf(src));
    process.stdout.write(JSON.stringify({ ids: tok.encode(values.text) }) + "\n");
  } finally {
    await src.close();
  }
  return 0;
}

/** --backend (one of BACKEND_NAMES, default wasm) and --threads (default 1), checked before any file is opened. */
function engineOptions(values: { backend?: unknown; threads?: unknown }): { backend: string; threads: number } {
  const backend = String(values.backend ?? "wasm");
  if (!BACKEND_NAMES.includes(backend)) throw new UsageError(`--backend must be one of ${BACKEND_NAMES.join(", ")}, got "${backend}"`);
  return { backend, threads: num(values.threads, "threads", { min: 1, max: 256, int: true }) ?? 1 };
}

async function cmdGenerate(args: string[]): Promise<number> {
  const { values } = parse(args, {
    model: { type: "string" }, prompt: { type: "string" }, chat: { type: "boolean" },
    "max-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
    "top-p": { type: "string" }, "min-p": { type: "string" }, seed: { type: "string" },
    stop: { type: "string", multiple: true }, context: { type: "string" }, backend: { type: "string" },
    threads: { type: "string" }, json: { type: "boolean" },
  });
  if (values.help) return help("generate");
  const path = required(values.model, "model");
  if (typeof values.prompt !== "string") throw new UsageError("--prompt is required");
  const maxTokens = num(values["max-tokens"], "max-tokens", { min: 1, int: true }) ?? 128;
  const temperature = num(values.temperature, "temperature", { min: 0, max: 100 }) ?? 0.8;
  const sampling = {
    temperature,
    topK: num(values["top-k"], "top-k", { min: 0, int: true }) ?? 40,
    topP: num(values["top-p"], "top-p", { min: 0, max: 1 }) ?? 0.95,
    minP: num(values["min-p"], "min-p", { min: 0, max: 1 }) ?? 0.05,
    seed: num(values.seed, "seed", { min: 0, max: 2 ** 32 - 1, int: true }),
  };
  const contextSize = num(values.context, "context", { min: 1, int: true });
  const { backend, threads } = engineOptions(values);

  const src = await open(path);
  let m;
  try {
    m = await loadNodeModel(src, backend, { contextSize, threads });
  } finally {
    await src.close();
  }
  const prompt = values.chat ? { messages: [{ role: "user" as const, content: values.prompt as string }] } : { text: values.prompt as string };
  const ids: number[] = [];
  let text = "";
  let promptIds: number[] = [];
  const { encodePrompt } = await import("../engine/generate.ts");
  promptIds = encodePrompt(m, prompt);
  let finish = "length";
  for await (const ev of generate(m, { prompt: { ids: promptIds }, maxTokens, sampling, stop: values.stop as string[] | undefined })) {
    if (ev.type === "token") {
      ids.push(ev.id);
      text += ev.text;
      if (!values.json && ev.text) process.stdout.write(ev.text);
    } else {
      text += ev.text;
      finish = ev.finishReason;
      // ids are the generated tokens; the end-of-generation token that stopped them is not one (as in llama.cpp)
      if (typeof ev.stoppedBy === "number") ids.pop();
      if (!values.json) process.stdout.write(ev.text + "\n");
    }
  }
  if (values.json) process.stdout.write(JSON.stringify({ prompt_ids: promptIds, ids, text, finish_reason: finish }) + "\n");
  return 0;
}

async function cmdConvert(args: string[]): Promise<number> {
  const { values } = parse(args, { hf: { type: "string" }, out: { type: "string" }, type: { type: "string" } });
  if (values.help) return help("convert");
  const dir = required(values.hf, "hf");
  const out = required(values.out, "out");
  const { CONVERT_TYPES, prepareConvert } = await import("../tools/convert.ts");
  const { writeGguf } = await import("../engine/gguf-writer.ts");
  const typeName = String(values.type ?? "f16").toLowerCase();
  const target = CONVERT_TYPES[typeName];
  if (target === undefined) throw new UsageError(`--type must be one of ${Object.keys(CONVERT_TYPES).join(", ")}, got "${values.type}"`);
  const t0 = performance.now();
  const { metadata, tensors } = await prepareConvert(dir, target); // checks the whole checkpoint before writing
  const size = await writeFileStreaming(out, (sink) => writeGguf(sink, metadata, tensors));
  const rss = process.resourceUsage().maxRSS / 1024;
  process.stderr.write(`wrote ${out} (${(size / 1e6).toFixed(1)} MB, ${typeName}, ${tensors.length} tensors) in ${((performance.now() - t0) / 1000).toFixed(1)} s, peak RSS ${rss.toFixed(0)} MB\n`);
  return 0;
}

async function cmdQuantize(args: string[]): Promise<number> {
  const { values } = parse(args, { in: { type: "string" }, out: { type: "string" }, type: { type: "string" } });
  if (values.help) return help("quantize");
  const input = required(values.in, "in");
  const out = required(values.out, "out");
  const { QUANTIZE_TYPES, prepareQuantize } = await import("../tools/quantize.ts");
  const typeName = String(values.type ?? "").toLowerCase();
  const target = QUANTIZE_TYPES[typeName];
  if (target === undefined) throw new UsageError(`--type must be one of ${Object.keys(QUANTIZE_TYPES).join(", ")}, got "${values.type ?? ""}"`);
  const src = await open(input);
  const t0 = performance.now();
  try {
    const write = await prepareQuantize(src, target); // checks every tensor before the output file is created
    const size = await writeFileStreaming(out, write);
    const rss = process.resourceUsage().maxRSS / 1024;
    process.stderr.write(`wrote ${out} (${(size / 1e6).toFixed(1)} MB, ${typeName}) from ${(src.size / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s, peak RSS ${rss.toFixed(0)} MB\n`);
  } finally {
    await src.close();
  }
  return 0;
}

/**
 * Write a file through a sink that waits for the stream to drain; the first write error rejects. A failure removes
 * the file: never half a file left behind.
 */
async function writeFileStreaming(path: string, produce: (sink: (b: Uint8Array) => Promise<void>) => Promise<number>): Promise<number> {
  const file = createWriteStream(path);
  const failed = new Promise<never>((_, reject) => file.on("error", reject));
  failed.catch(() => {}); // observed below; not an unhandled rejection when nothing is racing it
  const write = (b: Uint8Array) => Promise.race([failed, new Promise<void>((res) => (file.write(b) ? res() : file.once("drain", () => res())))]);
  try {
    const size = await produce(write);
    await Promise.race([failed, new Promise<void>((res) => file.end(() => res()))]);
    return size;
  } catch (e) {
    file.destroy();
    await rm(path, { force: true });
    throw e;
  }
}

async function cmdBench(args: string[]): Promise<number> {
  const { values } = parse(args, {
    model: { type: "string" }, "prompt-tokens": { type: "string" }, "gen-tokens": { type: "string" }, threads: { type: "string" },
    backend: { type: "string" }, repeats: { type: "string" }, "vs-llama-cpp": { type: "boolean" }, json: { type: "boolean" },
    internal: { type: "string" },
  });
  if (values.help) return help("bench");
  const model = required(values.model, "model");
  const { backend, threads } = engineOptions(values);
  await (await open(model)).close();
  const o = {
    model,
    promptTokens: num(values["prompt-tokens"], "prompt-tokens", { min: 16, int: true }) ?? 128,
    genTokens: num(values["gen-tokens"], "gen-tokens", { min: 1, int: true }) ?? 64,
    threads,
    repeats: num(values.repeats, "repeats", { min: 1, max: 100, int: true }) ?? 3,
    backend,
  };
  const b = await import("../tools/bench.ts");
  if (values.internal === "ours" || values.internal === "llama-cpp") {
    const r = values.internal === "ours" ? await b.measureOurs(o) : await b.measureLlamaCpp(o);
    process.stdout.write(JSON.stringify(r) + "\n");
    return 0;
  }
  if (o.threads > 1 && o.backend !== "wasm") process.stderr.write(`note: --threads ${o.threads} applies to llama.cpp; the ${o.backend} backend has no threads\n`);
  const r = await b.bench(o, !!values["vs-llama-cpp"], (line) => process.stderr.write(line + "\n"));
  process.stdout.write(`ours (median of ${o.repeats}): ${b.fmt(r)}\n`);
  if (r.llama_cpp) {
    process.stdout.write(`llama.cpp (median of ${o.repeats}, ${o.threads} thread${o.threads > 1 ? "s" : ""}): ${b.fmt(r.llama_cpp)}\n`);
    process.stdout.write(`ratio ours/llama.cpp: decode ${r.ratio_decode!.toFixed(2)}, prefill ${r.ratio_prefill!.toFixed(2)}\n`);
  }
  if (values.json) process.stdout.write(JSON.stringify(r) + "\n");
  return 0;
}

async function cmdR2(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h") return help("r2");
  if (sub !== "put") throw new UsageError(`unknown r2 command "${sub}" (commands: put)`);
  const { values } = parse(rest, {
    file: { type: "string" }, key: { type: "string" }, local: { type: "boolean" }, persist: { type: "string" }, bucket: { type: "string" },
    remote: { type: "boolean" }, endpoint: { type: "string" }, "part-size": { type: "string" },
  });
  if (values.help) return help("r2");
  const file = required(values.file, "file");
  const key = required(values.key, "key");
  if (!values.local === !values.remote) throw new UsageError("give one of --local or --remote");
  if (key.length > 1024 || /[\x00-\x1f]/.test(key)) throw new UsageError(`--key must be at most 1024 characters without control characters`);
  const bucket = String(values.bucket ?? "gemma-edge-models");
  if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) throw new UsageError(`--bucket "${bucket}" is not a valid R2 bucket name`);
  const src = await open(file); // a clear error for a missing or unreadable file
  const size = src.size;
  await src.close();
  const r2 = await import("../tools/r2.ts");
  const t0 = performance.now();
  const mb = (n: number) => (n / 1e6).toFixed(1);
  if (values.local) {
    await r2.putLocal({ file, key, bucket, persistTo: values.persist === undefined ? undefined : resolve(String(values.persist)) });
    process.stderr.write(`put ${file} (${mb(size)} MB) into local R2 as ${bucket}/${key} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    return 0;
  }
  const env = process.env;
  const endpoint = values.endpoint ?? env.R2_ENDPOINT ?? (env.CLOUDFLARE_ACCOUNT_ID ? `https://${env.CLOUDFLARE_ACCOUNT_ID}.r2.cloudflarestorage.com` : undefined);
  if (!endpoint) throw new UsageError("--remote needs --endpoint, R2_ENDPOINT or CLOUDFLARE_ACCOUNT_ID");
  if (!/^https?:\/\//.test(String(endpoint))) throw new UsageError(`--endpoint must be an http(s) URL, got "${endpoint}"`);
  if (!env.R2_ACCESS_KEY_ID || !env.R2_SECRET_ACCESS_KEY) throw new UsageError("--remote needs R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY in the environment");
  const partMiB = num(values["part-size"], "part-size", { min: 5, max: 5120, int: true });
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  let lastShown = -10;
  const progress = (sent: number, total: number) => {
    const pct = total === 0 ? 100 : Math.floor((sent / total) * 100);
    if (process.stderr.isTTY) {
      const bar = "#".repeat(Math.floor(pct / 4)).padEnd(25, ".");
      process.stderr.write(`\r[${bar}] ${pct}% ${mb(sent)}/${mb(total)} MB`);
    } else if (pct >= lastShown + 10 || sent === total) {
      lastShown = pct;
      process.stderr.write(`${pct}% ${mb(sent)}/${mb(total)} MB\n`);
    }
  };
  try {
    const etag = await r2.putRemote({
      file, key, bucket, endpoint: String(endpoint), accessKeyId: env.R2_ACCESS_KEY_ID, secretAccessKey: env.R2_SECRET_ACCESS_KEY,
      partSize: partMiB === undefined ? undefined : partMiB * 2 ** 20, onProgress: progress, signal: ac.signal,
    });
    if (process.stderr.isTTY) process.stderr.write("\n");
    process.stderr.write(`put ${file} (${mb(size)} MB) into R2 as ${bucket}/${key} (etag ${etag}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    return 0;
  } catch (e) {
    if (process.stderr.isTTY) process.stderr.write("\n");
    throw new Error(`${(e as Error).message}; nothing was stored under ${bucket}/${key}`);
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}

async function cmdServe(args: string[]): Promise<number> {
  const { values } = parse(args, {
    model: { type: "string" }, port: { type: "string" }, host: { type: "string" }, "model-id": { type: "string" },
    context: { type: "string" }, backend: { type: "string" }, threads: { type: "string" },
    "max-batch-size": { type: "string" }, "prefill-chunk": { type: "string" }, "prompt-cache": { type: "string" }, "max-queue": { type: "string" }, "strict-model": { type: "boolean" },
  });
  if (values.help) return help("serve");
  const prefillChunk = num(values["prefill-chunk"], "prefill-chunk", { min: 4, max: 512, int: true });
  if (prefillChunk !== undefined && prefillChunk % 4 !== 0) throw new UsageError(`--prefill-chunk must be a multiple of 4, got ${prefillChunk}`);
  const model = required(values.model, "model");
  const { backend, threads } = engineOptions(values);
  await (await open(model)).close();
  const { startNodeServer } = await import("../hosts/node-server.ts");
  const { url, config, service } = await startNodeServer({
    model,
    port: num(values.port, "port", { min: 0, max: 65535, int: true }) ?? 8787,
    host: values.host as string | undefined,
    modelId: values["model-id"] as string | undefined,
    contextSize: num(values.context, "context", { min: 1, int: true }),
    backend,
    threads,
    apiKey: process.env.API_KEY || undefined,
    corsOrigins: process.env.CORS_ORIGINS,
    maxBatchSize: num(values["max-batch-size"], "max-batch-size", { min: 1, max: 64, int: true }),
    prefillChunk,
    promptCacheSlots: num(values["prompt-cache"], "prompt-cache", { min: 0, max: 64, int: true }),
    maxQueue: num(values["max-queue"], "max-queue", { min: 0, max: 10000, int: true }),
    strictModel: values["strict-model"] === true,
  });
  process.stderr.write(`serving ${config.modelId} at ${url} (chat page: ${url}/; loading ${model})\n`);
  await service.load().then(
    () => process.stderr.write(`model ready: curl ${url}/v1/chat/completions -H 'Content-Type: application/json' -d '{"model":"${config.modelId}","messages":[{"role":"user","content":"Hello"}]}'\n`),
    (e) => process.stderr.write(`model failed to load: ${(e as Error).message}\n`),
  );
  return new Promise<number>(() => {}); // serve until killed
}

async function cmdMakeTestModel(args: string[]): Promise<number> {
  const { values } = parse(args, {
    out: { type: "string" }, shape: { type: "string" }, type: { type: "string" }, seed: { type: "string" },
    vocab: { type: "string" }, dim: { type: "string" }, "hidden-dim": { type: "string" }, layers: { type: "string" },
    heads: { type: "string" }, "kv-heads": { type: "string" }, "head-dim": { type: "string" }, context: { type: "string" },
    "rope-dims": { type: "string" }, "no-chat-template": { type: "boolean" },
  });
  if (values.help) return help("make-test-model");
  const out = required(values.out, "out");
  const shapeName = String(values.shape ?? "tiny");
  const base = SHAPES[shapeName];
  if (!base) throw new UsageError(`--shape must be one of ${Object.keys(SHAPES).join(", ")}, got "${shapeName}"`);
  const typeName = String(values.type ?? "q4_0").toLowerCase();
  const mix = WEIGHT_MIXES[typeName];
  const type = mix?.type ?? WEIGHT_TYPES[typeName];
  if (type === undefined) throw new UsageError(`--type must be one of ${[...Object.keys(WEIGHT_TYPES), ...Object.keys(WEIGHT_MIXES)].join(", ")}, got "${values.type}"`);
  const dim = (flag: string, key: Exclude<keyof TestModelShape, "ropeDims">) => num(values[flag], flag, { min: 1, int: true }) ?? base[key];
  const shape: TestModelShape = {
    vocabSize: dim("vocab", "vocabSize"), dim: dim("dim", "dim"), hiddenDim: dim("hidden-dim", "hiddenDim"),
    nLayers: dim("layers", "nLayers"), nHeads: dim("heads", "nHeads"), nKvHeads: dim("kv-heads", "nKvHeads"),
    headDim: dim("head-dim", "headDim"), contextLength: dim("context", "contextLength"),
    ropeDims: num(values["rope-dims"], "rope-dims", { min: 2, int: true }),
  };
  if (shape.ropeDims !== undefined && (shape.ropeDims % 2 || shape.ropeDims > shape.headDim)) {
    throw new UsageError(`--rope-dims must be even and at most --head-dim ${shape.headDim}, got ${shape.ropeDims}`);
  }
  if (shape.vocabSize < 512) throw new UsageError(`--vocab must be at least 512 (special, byte and character tokens), got ${shape.vocabSize}`);
  if (shape.nHeads % shape.nKvHeads !== 0) throw new UsageError(`--heads ${shape.nHeads} must be a multiple of --kv-heads ${shape.nKvHeads}`);
  if (shape.headDim % 2) throw new UsageError(`--head-dim must be even, got ${shape.headDim}`);
  const seed = num(values.seed, "seed", { min: 0, max: 2 ** 32 - 1, int: true }) ?? 1;
  const size = await writeFileStreaming(out, (sink) => writeTestModel({ shape, type, mix, seed, chatTemplate: values["no-chat-template"] ? null : undefined }, sink));
  process.stderr.write(`wrote ${out} (${(size / 1e6).toFixed(1)} MB, ${shapeName}, ${typeName}, seed ${seed})\n`);
  return 0;
}

function help(cmd: string): number {
  process.stdout.write(HELP[cmd] + "\n");
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    const own = COMMANDS.find((c) => c.name === cmd);
    if (own) {
      if (rest.includes("--help") || rest.includes("-h")) return (process.stdout.write(own.help + "\n"), 0);
      return await own.run(rest);
    }
    switch (cmd) {
      case undefined:
      case "help":
      case "--help":
      case "-h":
        return help("main");
      case "tokenize":
        return await cmdTokenize(rest);
      case "generate":
        return await cmdGenerate(rest);
      case "make-test-model":
        return await cmdMakeTestModel(rest);
      case "serve":
        return await cmdServe(rest);
      case "bench":
        return await cmdBench(rest);
      case "quantize":
        return await cmdQuantize(rest);
      case "r2":
        return await cmdR2(rest);
      case "convert":
        return await cmdConvert(rest);
      default:
        throw new UsageError(`unknown command "${cmd}" (commands: serve, bench, quantize, convert, r2, tokenize, generate, make-test-model, ${COMMANDS.map((c) => c.name).join(", ")})`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`gemma-edge ${cmd ?? ""}: ${e.message} (see --help)\n`);
      return 2;
    }
    throw e;
  }
}
