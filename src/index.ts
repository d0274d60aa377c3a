// Worker entry: the Hono app in front, the model in its Durable Object behind (one instance per model id).
import type { Hono } from "hono";
import { createApp, defaultConfig, parseOrigins, type AppEnv } from "./api/app.ts";
import { CONFIG_HEADER, type HostedModelConfig } from "./hosts/durable-object.ts";
import { r2ModelFiles } from "./hosts/r2-source.ts";
import { DEFAULT_MAX_BATCH_SIZE } from "./hosts/model-service.ts";
import { RemoteModelService, type FetchTarget } from "./hosts/remote-service.ts";
import { intVar, positive, type Env } from "./hosts/worker-env.ts";
import chatPage from "../build/chat.html";

export { ModelHost } from "./hosts/durable-object.ts";

const apps = new WeakMap<object, Hono<AppEnv>>();
const configJson = new WeakMap<object, string>();

/** The app for a set of bindings (built once per env object; settings are read once). */
export function appFor(env: Env): Hono<AppEnv> {
  let app = apps.get(env);
  if (app) return app;
  const hosted: HostedModelConfig = {
    modelId: env.MODEL_ID,
    key: env.MODEL_KEY,
    contextSize: intVar(env, "CONTEXT_SIZE"),
    maxBatch: intVar(env, "MAX_BATCH"),
    maxBatchSize: positive(env, "MAX_BATCH_SIZE"),
    prefillChunk: intVar(env, "PREFILL_CHUNK"),
    promptCacheSlots: intVar(env, "PROMPT_CACHE_SLOTS"),
    maxQueue: intVar(env, "MAX_QUEUE") ?? 8,
    requestTimeoutMs: intVar(env, "REQUEST_TIMEOUT_MS"),
    keepAliveMs: intVar(env, "KEEPALIVE_MS"),
    sourceUrl: env.MODEL_SOURCE_URL || undefined,
    sourceSha256: env.MODEL_SOURCE_SHA256 || undefined,
  };
  const config = defaultConfig({
    modelId: env.MODEL_ID,
    apiKey: env.API_KEY || undefined,
    corsOrigins: parseOrigins(env.CORS_ORIGINS),
    maxBodyBytes: intVar(env, "MAX_BODY_BYTES") ?? 1 << 20,
    maxQueue: hosted.maxQueue!,
    strictModel: env.STRICT_MODEL === "1",
    maxBatchSize: hosted.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE,
    chatPage,
  });
  const headers = { [CONFIG_HEADER]: JSON.stringify(hosted) };
  configJson.set(env, headers[CONFIG_HEADER]);
  // a Durable Object stub is an I/O object: one per request
  app = createApp(config, (bindings) => {
    const ns = (bindings as Env).MODEL_HOST;
    return new RemoteModelService(env.MODEL_ID, ns.get(ns.idFromName(env.MODEL_ID)) as unknown as FetchTarget, headers);
  }, (bindings) => r2ModelFiles((bindings as Env).MODELS, env.MODEL_KEY));
  apps.set(env, app);
  return app;
}

export default {
  fetch(request: Request, env: Env, ctx: unknown): Response | Promise<Response> {
    const path = new URL(request.url).pathname;
    if (env.ALLOW_SHARD_RESET === "1" && path.startsWith("/__test/reset-shard/")) return resetShard(env, path.slice("/__test/reset-shard/".length));
    return appFor(env).fetch(request, env, ctx as never);
  },
};

/** Tests only (ALLOW_SHARD_RESET = "1"): reset shard <i> of the model, as the platform may at any time. */
async function resetShard(env: Env, index: string): Promise<Response> {
  appFor(env); // the model's settings, as the app sends them
  const stub = env.MODEL_HOST.get(env.MODEL_HOST.idFromName(env.MODEL_ID)) as unknown as FetchTarget;
  return stub.fetch(`https://model-host/reset-shard?index=${encodeURIComponent(index)}`, { headers: { [CONFIG_HEADER]: configJson.get(env)! } });
}
