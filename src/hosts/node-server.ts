// The Node host: the same Hono app as the Worker, with the engine in-process (self-hosting, containers).
import { serve, type ServerType } from "@hono/node-server";
import { basename } from "node:path";
import { createApp, defaultConfig, parseOrigins, type ServerConfig } from "../api/app.ts";
import { loadNodeModel } from "./node-backend.ts";
import { FileByteSource } from "./node-file-source.ts";
import { LocalModelService } from "./model-service.ts";

export interface NodeServerOptions {
  model: string;
  port: number;
  host?: string;
  modelId?: string;
  contextSize?: number;
  backend?: string;
  apiKey?: string;
  corsOrigins?: string;
  maxQueue?: number;
  requestTimeoutMs?: number;
  keepAliveMs?: number;
}

export function startNodeServer(o: NodeServerOptions): Promise<{ server: ServerType; url: string; config: ServerConfig; service: LocalModelService }> {
  const modelId = o.modelId ?? basename(o.model).replace(/\.gguf$/i, "");
  const config = defaultConfig({ modelId, apiKey: o.apiKey, corsOrigins: parseOrigins(o.corsOrigins), maxQueue: o.maxQueue ?? 8 });
  const service = new LocalModelService({
    modelId,
    openSource: () => FileByteSource.open(o.model),
    loadModel: (src, opts) => loadNodeModel(src, o.backend ?? "wasm", opts),
    contextSize: o.contextSize,
    maxQueue: config.maxQueue,
    requestTimeoutMs: o.requestTimeoutMs,
    keepAliveMs: o.keepAliveMs,
  });
  const app = createApp(config, () => service);
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: o.port, hostname: o.host ?? "127.0.0.1" }, (info) => {
      resolve({ server, url: `http://${o.host ?? "127.0.0.1"}:${info.port}`, config, service });
    });
    server.on("error", reject);
  });
}
