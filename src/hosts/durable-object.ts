// The Durable Object that owns one model (one instance per model id): the weights, read from R2 into
// WebAssembly memory once, and the queue of its requests. It speaks the RemoteModelService protocol. What it
// serves (R2 key, context size, queue settings) arrives with each call from the Worker, so that one class can
// host any configured model.
import type { DurableObjectState, R2Bucket } from "@cloudflare/workers-types";
import { hasRelaxedSimd, WasmBackend } from "../engine/backend/wasm.ts";
import { loadModel } from "../engine/model/load.ts";
import relaxedKernels from "../../build/kernels-relaxed.wasm";
import simdKernels from "../../build/kernels-simd.wasm";
import { LocalModelService, type ServiceRequest } from "./model-service.ts";
import { pullIntoR2 } from "./pull-through.ts";
import { R2ByteSource } from "./r2-source.ts";

/** How the Worker tells the Durable Object what to serve (the x-model-config header, JSON). */
export interface HostedModelConfig {
  modelId: string;
  key: string;
  contextSize?: number;
  maxBatch?: number;
  maxQueue?: number;
  requestTimeoutMs?: number;
  keepAliveMs?: number;
  /** Where to download the model from when `key` is missing from R2 (pull-through), and its SHA-256. */
  sourceUrl?: string;
  sourceSha256?: string;
}

export const CONFIG_HEADER = "x-model-config";

export class ModelHost {
  private readonly bucket: R2Bucket;
  private readonly sourceAuth: string | undefined;
  private service: LocalModelService | undefined;
  private configJson = "";
  private config: HostedModelConfig | undefined;
  /** The etag of the R2 object the current service loaded. */
  private loadedEtag: string | undefined;

  constructor(_state: DurableObjectState, env: { MODELS: R2Bucket; MODEL_SOURCE_AUTH?: string }) {
    this.bucket = env.MODELS;
    this.sourceAuth = env.MODEL_SOURCE_AUTH || undefined;
  }

  /** The model's R2 object, first pulled from the configured source when it is missing. */
  private async open(c: HostedModelConfig, onDownload?: (received: number, total: number) => void): Promise<R2ByteSource> {
    if (c.sourceUrl && !(await this.bucket.head(c.key))) {
      await pullIntoR2(this.bucket, c.key, { url: c.sourceUrl, sha256: c.sourceSha256, authorization: this.sourceAuth }, onDownload);
    }
    const src = await R2ByteSource.open(this.bucket, c.key);
    this.loadedEtag = src.etag;
    return src;
  }

  /**
   * The service, replaced by a fresh one (which loads the new file) when the model's R2 object has another etag
   * than the one loaded: checked by each request that finds the model loaded and idle, so a request in progress
   * finishes on the old weights and the next one gets the new.
   */
  private async currentService(json: string | null): Promise<LocalModelService> {
    const service = this.serviceFor(json);
    if (!this.loadedEtag) return service;
    const s = await service.status();
    if (s.status !== "ready" || s.queue_length > 0) return service;
    const head = await this.bucket.head(this.config!.key);
    if (!head || head.etag === this.loadedEtag) return service; // deleted: keep serving what is loaded
    this.service = undefined;
    this.loadedEtag = undefined;
    return this.serviceFor(json);
  }

  private serviceFor(json: string | null): LocalModelService {
    if (!json) throw new Error(`missing ${CONFIG_HEADER} header`);
    if (this.service && json === this.configJson) return this.service;
    const c = JSON.parse(json) as HostedModelConfig;
    this.loadedEtag = undefined;
    const relaxed = hasRelaxedSimd();
    this.configJson = json;
    this.config = c;
    this.service = new LocalModelService({
      modelId: c.modelId,
      openSource: (onDownload) => this.open(c, onDownload),
      loadModel: (src, opts) => loadModel(src, new WasmBackend(relaxed ? relaxedKernels : simdKernels, relaxed ? "relaxed" : "simd"), opts),
      contextSize: c.contextSize,
      maxBatch: c.maxBatch,
      maxQueue: c.maxQueue,
      requestTimeoutMs: c.requestTimeoutMs,
      keepAliveMs: c.keepAliveMs,
      autoLoad: false,
    });
    return this.service;
  }

  async fetch(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    try {
      const json = request.headers.get(CONFIG_HEADER);
      const service = path === "/generate" ? await this.currentService(json) : this.serviceFor(json);
      switch (path) {
        case "/status":
          return Response.json(await service.status());
        case "/load":
          // load now (unless loaded, loading, or failed a moment ago); answers the status when done
          return deferredJson(async () => {
            if (service.shouldLoad) await service.load().catch(() => {});
            return service.status();
          });
        case "/info":
          return deferredJson(() => service.info());
        case "/tokenize": {
          const { text } = (await request.json()) as { text: string };
          return deferredJson(() => service.tokenize(text));
        }
        case "/generate":
          return this.generate(service, (await request.json()) as ServiceRequest);
        default:
          return Response.json({ host_error: `no model host route ${path}` }, { status: 404 });
      }
    } catch (e) {
      return Response.json({ host_error: (e as Error).message }, { status: 503 });
    }
  }

  /** Events as newline-delimited JSON; cancelling the stream aborts the generation. */
  private generate(service: LocalModelService, req: ServiceRequest): Response {
    const abort = new AbortController();
    const events = service.generate(req, abort.signal);
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await events.next();
        if (done) controller.close();
        else controller.enqueue(enc.encode(JSON.stringify(value) + "\n"));
      },
      async cancel() {
        abort.abort();
        await events.return(undefined);
      },
    });
    return new Response(body, { headers: { "Content-Type": "application/x-ndjson" } });
  }
}

/**
 * A JSON answer produced inside the response body. Work that may take long (loading a model) runs while the
 * response streams, never before the handler returns: measured in workerd with a 1.4 GB model, an object whose
 * handler (or floating promise) spent the load before answering was reset right after, and loaded again on
 * every probe; loading inside a response body, as generation does, keeps it resident.
 */
function deferredJson(work: () => Promise<unknown>): Response {
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      let out: unknown;
      try {
        out = await work();
      } catch (e) {
        out = { host_error: (e as Error).message };
      }
      controller.enqueue(new TextEncoder().encode(JSON.stringify(out)));
      controller.close();
    },
  });
  return new Response(body, { headers: { "Content-Type": "application/json" } });
}
