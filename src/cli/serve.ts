// `gemma-edge serve`: the Worker's Hono app on Node with the engine in this process (src/hosts/node-server.ts).
import { engineOptions, num, openModelFile as open, parse, required, UsageError, type Command } from "./args.ts";
import { BACKEND_NAMES } from "../hosts/node-backend.ts";
import { DEFAULT_MAX_BATCH_SIZE, DEFAULT_PREFILL_CHUNK, DEFAULT_PROMPT_CACHE_SLOTS } from "../hosts/model-service.ts";

export const serveCommand: Command = {
  name: "serve",
  summary: "serve the OpenAI and TGI HTTP APIs for a model file",
  help: `Usage: gemma-edge serve --model FILE [options]

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
  run,
};

async function run(args: string[]): Promise<number> {
  const { values } = parse(args, {
    model: { type: "string" }, port: { type: "string" }, host: { type: "string" }, "model-id": { type: "string" },
    context: { type: "string" }, backend: { type: "string" }, threads: { type: "string" },
    "max-batch-size": { type: "string" }, "prefill-chunk": { type: "string" }, "prompt-cache": { type: "string" }, "max-queue": { type: "string" }, "strict-model": { type: "boolean" },
  });
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
