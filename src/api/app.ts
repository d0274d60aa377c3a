// The HTTP application, host-independent: Cloudflare Workers (src/index.ts) and Node (src/hosts/node-server.ts)
// serve the same Hono app. It checks auth, CORS and body size, validates requests into the engine's request
// type and hands them to the model's ModelService; it never touches weights.
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { ApiError, errorBody } from "./errors.ts";
import type { ModelFiles, ModelService } from "../service/contract.ts";
import { modelFileRoutes } from "./model-file.ts";
import { openAiRoutes } from "./openai.ts";
import { tgiRoutes } from "./tgi.ts";
import { Counter, exponentialBuckets, Histogram, PROMETHEUS_CONTENT_TYPE, Registry } from "../service/metrics.ts";

export interface ServerConfig {
  modelId: string;
  /** Required bearer token for every route but /, /health and CORS preflights; undefined: open. */
  apiKey?: string;
  /** Allowed origins for CORS ("*" or a list). */
  corsOrigins: string[];
  maxBodyBytes: number;
  maxQueue: number;
  /** Sequences that run at once (for TGI's /info). */
  maxBatchSize?: number;
  version: string;
  /** Unix time the model was configured (for /v1/models). */
  created: number;
  fingerprint: string;
  /** Requests naming another model than `modelId` get 404 (default: the one model answers whatever they name). */
  strictModel?: boolean;
  /** The chat page served at / (build/chat.html); none: / answers 404. */
  chatPage?: string;
}

export type AppEnv = { Variables: { config: ServerConfig; service: ModelService } };

export const VERSION = "0.1.0";

export function defaultConfig(partial: Partial<ServerConfig> & { modelId: string }): ServerConfig {
  return {
    corsOrigins: ["*"],
    maxBodyBytes: 1 << 20,
    maxQueue: 8,
    version: VERSION,
    created: Math.floor(Date.now() / 1000),
    fingerprint: `fp_gemma_edge_${VERSION}`,
    ...partial,
  };
}

/** Parse the comma-separated CORS_ORIGINS setting. */
export function parseOrigins(v: string | undefined): string[] {
  const list = (v ?? "*").split(",").map((s) => s.trim()).filter(Boolean);
  return list.length ? list : ["*"];
}

function fail(c: Context, e: ApiError) {
  if (e.retryAfter !== undefined) c.header("Retry-After", String(e.retryAfter));
  return c.json(errorBody(c.req.path, e), e.status as 400);
}

/** `getService` is called per request with the host's bindings (Workers: env; I/O objects cannot outlive a request). */
/** `getFiles`: the model file for GET /v1/models/{id}/gguf (browsers running the engine), where the host has it. */
export function createApp(config: ServerConfig, getService: (bindings: unknown) => ModelService, getFiles?: (bindings: unknown) => ModelFiles): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const http = new Registry();
  const requests = http.add(new Counter("gemma_edge_http_requests_total", "HTTP requests by route and status"));
  const duration = http.add(new Histogram("tgi_request_duration", "Time from a request's arrival to its response's start, by route (seconds)", exponentialBuckets(0.001, 2.5, 14)));

  app.use("*", async (c, next) => {
    c.set("config", config);
    c.set("service", getService(c.env));
    // every response carries a request id: the client's own (X-Request-Id), or a new one
    const sent = c.req.header("X-Request-Id");
    const id = sent && /^[\x21-\x7e]{1,200}$/.test(sent) ? sent : crypto.randomUUID();
    const t0 = Date.now();
    await next();
    c.res.headers.set("X-Request-Id", id);
    const route = c.req.routePath && c.req.routePath !== "*" ? c.req.routePath : "unmatched";
    requests.inc(1, { route, method: c.req.method, status: String(c.res.status) });
    duration.observe((Date.now() - t0) / 1000, { route });
  });

  app.use(
    "*",
    cors({
      origin: config.corsOrigins.includes("*") ? "*" : config.corsOrigins,
      allowMethods: ["GET", "HEAD", "POST", "OPTIONS"],
      allowHeaders: ["Authorization", "Content-Type", "X-Request-Id", "Range", "If-None-Match", "OpenAI-Organization", "OpenAI-Project", "X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch", "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Retry-Count", "X-Stainless-Timeout"],
      exposeHeaders: ["X-Request-Id", "Retry-After", "Content-Range", "Content-Length", "Accept-Ranges", "ETag"],
      maxAge: 86400,
    }),
  );

  // API key on everything but /health (CORS preflights were answered above)
  app.use("*", async (c, next) => {
    if (!config.apiKey || c.req.path === "/health" || (c.req.path === "/" && c.req.method === "GET")) return next();
    const auth = c.req.header("Authorization") ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    if (!m || m[1] !== config.apiKey) {
      return fail(c, new ApiError(401, auth ? "Incorrect API key provided" : "Missing API key: send 'Authorization: Bearer <key>'", { code: "invalid_api_key" }));
    }
    return next();
  });

  app.use(
    "*",
    bodyLimit({
      maxSize: config.maxBodyBytes,
      onError: (c) => fail(c, new ApiError(413, `the request body is larger than ${config.maxBodyBytes} bytes`, { code: "request_too_large" })),
    }),
  );

  // the chat page (it asks for the API key itself when the server wants one)
  app.get("/", (c) => {
    if (!config.chatPage) throw new ApiError(404, "this server has no chat page (build/chat.html was not built)", { code: "not_found" });
    return c.html(config.chatPage);
  });

  app.get("/health", async (c) => {
    const s = await c.get("service").status().catch((e) => {
      throw new ApiError(503, `model host unreachable: ${(e as Error).message}`);
    });
    // the first probe starts loading (hosts that do not load by themselves are asked to warm up, in the background)
    const service = c.get("service");
    if ((s.status === "idle" || s.status === "error") && service.warmUp) {
      const warm = service.warmUp();
      try {
        c.executionCtx.waitUntil(warm);
      } catch {
        void warm; // no execution context (Node): the promise runs on by itself
      }
    }
    const body = { ...s, status: s.status === "idle" ? "loading" : s.status };
    return c.json(body, s.status === "ready" ? 200 : 503);
  });

  // Prometheus metrics: this app's HTTP counters, then the model service's (queue, batch, tokens, caches)
  app.get("/metrics", async (c) => {
    const service = await c.get("service").metrics?.().catch((e) => `# the model service's metrics are unavailable: ${(e as Error).message}\n`);
    return c.body(http.text() + (service ?? ""), 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
  });

  modelFileRoutes(app, getFiles);
  openAiRoutes(app);
  tgiRoutes(app);

  app.notFound((c) => fail(c, new ApiError(404, `no route for ${c.req.method} ${c.req.path}`, { code: "not_found" })));
  app.onError((err, c) => {
    if (err instanceof ApiError) return fail(c, err);
    console.error(err);
    return fail(c, new ApiError(500, `internal error: ${err.message}`, { kind: "generation" }));
  });
  return app;
}
