// The Node host: the same Hono app as the Worker, with the engine in-process (self-hosting, containers).
import { serve, type ServerType } from "@hono/node-server";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { basename, resolve } from "node:path";
import { createApp, defaultConfig, parseOrigins, type ServerConfig } from "../api/app.ts";
import type { ModelFiles } from "../service/contract.ts";
import { loadNodeModel } from "./node-backend.ts";
import { FileByteSource } from "./node-file-source.ts";
import { grammarModule } from "./node-wasm.ts";
import { DEFAULT_MAX_BATCH_SIZE, LocalModelService } from "./model-service.ts";

export interface NodeServerOptions {
  model: string;
  port: number;
  host?: string;
  modelId?: string;
  contextSize?: number;
  backend?: string;
  /** Worker threads for the wasm backend's matrix products. */
  threads?: number;
  apiKey?: string;
  corsOrigins?: string;
  /** Requests naming another model get 404. */
  strictModel?: boolean;
  maxQueue?: number;
  maxBatchSize?: number;
  prefillChunk?: number;
  promptCacheSlots?: number;
  requestTimeoutMs?: number;
  keepAliveMs?: number;
}

export function startNodeServer(o: NodeServerOptions): Promise<{ server: ServerType; url: string; config: ServerConfig; service: LocalModelService }> {
  const modelId = o.modelId ?? basename(o.model).replace(/\.gguf$/i, "");
  const page = resolve(import.meta.dirname, "../../build/chat.html");
  const chatPage = existsSync(page) ? readFileSync(page, "utf8") : undefined;
  const config = defaultConfig({ modelId, apiKey: o.apiKey, corsOrigins: parseOrigins(o.corsOrigins), maxQueue: o.maxQueue ?? 8, strictModel: o.strictModel, maxBatchSize: o.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE, chatPage });
  const service = new LocalModelService({
    modelId,
    openSource: () => FileByteSource.open(o.model),
    loadModel: (src, opts) => loadNodeModel(src, o.backend ?? "wasm", { ...opts, threads: o.threads }),
    contextSize: o.contextSize,
    maxQueue: config.maxQueue,
    maxBatchSize: o.maxBatchSize,
    prefillChunk: o.prefillChunk,
    promptCacheSlots: o.promptCacheSlots,
    requestTimeoutMs: o.requestTimeoutMs,
    keepAliveMs: o.keepAliveMs,
    grammarWasm: grammarModule,
  });
  const files: ModelFiles = {
    async stat() {
      const st = await stat(o.model).catch(() => null);
      return st ? { size: st.size, etag: `${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}` } : null;
    },
    async read(offset, length) {
      return Readable.toWeb(createReadStream(o.model, { start: offset, end: offset + length - 1 })) as ReadableStream<Uint8Array>;
    },
  };
  const app = createApp(config, () => service, () => files);
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: o.port, hostname: o.host ?? "127.0.0.1" }, (info) => {
      resolve({ server, url: `http://${o.host ?? "127.0.0.1"}:${info.port}`, config, service });
    });
    server.on("error", reject);
  });
}
