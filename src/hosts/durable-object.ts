// The Durable Object that owns one model (one instance per model id): the weights, read from R2 into
// WebAssembly memory once, and the queue of its requests. It speaks the RemoteModelService protocol.
import type { DurableObjectState } from "@cloudflare/workers-types";
import { hasRelaxedSimd, WasmBackend } from "../engine/backend/wasm.ts";
import relaxedKernels from "../../build/kernels-relaxed.wasm";
import simdKernels from "../../build/kernels-simd.wasm";
import { LocalModelService, type ServiceRequest } from "./model-service.ts";
import { R2ByteSource } from "./r2-source.ts";
import type { Env } from "./worker-env.ts";
import { intVar } from "./worker-env.ts";

export class ModelHost {
  private readonly service: LocalModelService;

  constructor(_state: DurableObjectState, env: Env) {
    const relaxed = hasRelaxedSimd();
    this.service = new LocalModelService({
      modelId: env.MODEL_ID,
      openSource: () => R2ByteSource.open(env.MODELS, env.MODEL_KEY),
      createBackend: async () => new WasmBackend(relaxed ? relaxedKernels : simdKernels, relaxed ? "relaxed" : "simd"),
      contextSize: intVar(env, "CONTEXT_SIZE"),
      maxBatch: intVar(env, "MAX_BATCH"),
      maxQueue: intVar(env, "MAX_QUEUE") ?? 8,
      requestTimeoutMs: intVar(env, "REQUEST_TIMEOUT_MS"),
      keepAliveMs: intVar(env, "KEEPALIVE_MS"),
    });
  }

  async fetch(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    try {
      switch (path) {
        case "/status":
          return Response.json(await this.service.status());
        case "/info":
          return Response.json(await this.service.info());
        case "/tokenize":
          return Response.json(await this.service.tokenize(((await request.json()) as { text: string }).text));
        case "/generate":
          return this.generate((await request.json()) as ServiceRequest);
        default:
          return Response.json({ error: `no model host route ${path}` }, { status: 404 });
      }
    } catch (e) {
      return Response.json({ error: (e as Error).message }, { status: 503 });
    }
  }

  /** Events as newline-delimited JSON; cancelling the stream aborts the generation. */
  private generate(req: ServiceRequest): Response {
    const abort = new AbortController();
    const events = this.service.generate(req, abort.signal);
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
