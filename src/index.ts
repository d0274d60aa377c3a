// Worker entry: the Hono app in front, the model in its Durable Object behind (one instance per model id).
import { createApp, defaultConfig, parseOrigins, type ServerConfig } from "./api/app.ts";
import { RemoteModelService } from "./hosts/remote-service.ts";
import { intVar, type Env } from "./hosts/worker-env.ts";
import type { Hono } from "hono";
import type { AppEnv } from "./api/app.ts";

export { ModelHost } from "./hosts/durable-object.ts";

let cached: { env: Env; app: Hono<AppEnv> } | undefined;

function appFor(env: Env): Hono<AppEnv> {
  if (cached?.env === env) return cached.app;
  const config: ServerConfig = defaultConfig({
    modelId: env.MODEL_ID,
    apiKey: env.API_KEY || undefined,
    corsOrigins: parseOrigins(env.CORS_ORIGINS),
    maxBodyBytes: intVar(env, "MAX_BODY_BYTES") ?? 1 << 20,
    maxQueue: intVar(env, "MAX_QUEUE") ?? 8,
  });
  // a Durable Object stub is an I/O object: one per request
  const app = createApp(config, (bindings) => {
    const e = bindings as Env;
    const stub = e.MODEL_HOST.get(e.MODEL_HOST.idFromName(e.MODEL_ID));
    return new RemoteModelService(e.MODEL_ID, stub as unknown as ConstructorParameters<typeof RemoteModelService>[1]);
  });
  cached = { env, app };
  return app;
}

export default {
  fetch(request: Request, env: Env, ctx: unknown): Response | Promise<Response> {
    return appFor(env).fetch(request, env, ctx as never);
  },
};
