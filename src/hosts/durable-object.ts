// The Durable Object that owns one model (one instance per model id): the coordinator. It reads the GGUF header
// from R2, plans the parts the model runs in for its memory budget (engine/shard-plan.ts), and runs the queue
// and the sampler. A model that fits the budget (or any model, without one) is one part, held here in
// WebAssembly memory; a larger one runs in shards, Durable Objects of their own Worker scripts (shard-host.ts)
// bound as SHARD_0, SHARD_1, ..., each holding its part, driven through the same pipeline. It speaks the
// RemoteModelService protocol to the Worker. What it serves (R2 key, context size, queue settings) arrives with
// each call from the Worker, so that one class can host any configured model.
import type { DurableObjectNamespace, DurableObjectState, R2Bucket, WebSocket as CfWebSocket } from "@cloudflare/workers-types";
import { hasRelaxedSimd, WasmBackend } from "../engine/backend/wasm.ts";
import { loadModel, pipelineBatch, readModelHeader, type LoadOptions, type RunnableModel } from "../engine/model/load.ts";
import { partTensors } from "../engine/model/part.ts";
import { Pipeline } from "../engine/pipeline.ts";
import { budgetBytes, coordinatorReserveBytes, planShards, planSizing } from "../engine/shard-plan.ts";
import { provideSamplerWasm, samplerKernels } from "../engine/sampler-wasm.ts";
import relaxedKernels from "../../build/kernels-relaxed.wasm";
import simdKernels from "../../build/kernels-simd.wasm";
import grammarWasm from "../../build/xgrammar.wasm";
import type { ServiceRequest, ShardReport } from "../service/contract.ts";
import { LocalModelService } from "./model-service.ts";
import { pullIntoR2 } from "./pull-through.ts";
import { R2ByteSource } from "./r2-source.ts";
import { eachLimited, RemoteShard } from "./shard-client.ts";

/** Shards loading at once: each reads its ~100 MB from R2 (docs/sharding.md, start-up). */
const SHARD_LOAD_CONCURRENCY = 4;

export interface CoordinatorEnv {
  MODELS: R2Bucket;
  MODEL_SOURCE_AUTH?: string;
  /** WebAssembly memory per part, in MB (10^6 bytes); unset: no budget (one part, up to 4 GiB). */
  SHARD_BUDGET_MB?: string;
  /** Shard scripts this deployment has, bound as SHARD_0 ... SHARD_<n-1>. */
  SHARD_COUNT?: string;
  /** "1" in test configurations only: POST /__test/reset-shard/<i> resets a shard. */
  ALLOW_SHARD_RESET?: string;
  [binding: `SHARD_${number}`]: DurableObjectNamespace | undefined;
}

/** The parts of the loaded model (or of the one being loaded), for /health. */
interface Parts {
  local?: { backend: WasmBackend; report: Omit<ShardReport, "status" | "wasm_memory_bytes" | "sequences_in_use">; inUse: () => number };
  remote?: RemoteShard[];
  budgetBytes: number | null;
}

/** How the Worker tells the Durable Object what to serve (the x-model-config header, JSON). */
export interface HostedModelConfig {
  modelId: string;
  key: string;
  contextSize?: number;
  maxBatch?: number;
  maxBatchSize?: number;
  prefillChunk?: number;
  promptCacheSlots?: number;
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

  private readonly env: CoordinatorEnv;
  private readonly budgetBytes: number | undefined;
  private readonly shardCount: number;
  private parts: Parts | undefined;

  constructor(_state: DurableObjectState, env: CoordinatorEnv) {
    this.env = env;
    this.bucket = env.MODELS;
    this.sourceAuth = env.MODEL_SOURCE_AUTH || undefined;
    const mb = env.SHARD_BUDGET_MB ? Number(env.SHARD_BUDGET_MB) : undefined;
    if (mb !== undefined && !(mb > 0)) throw new Error(`SHARD_BUDGET_MB must be a positive number of MB, got "${env.SHARD_BUDGET_MB}"`);
    this.budgetBytes = mb === undefined ? undefined : budgetBytes(mb);
    this.shardCount = Number(env.SHARD_COUNT ?? 0) || 0;
  }

  /**
   * Load the model as the plan for this host's budget says: one part here, or every part in its shard (at most
   * SHARD_LOAD_CONCURRENCY loading at once; all are tried, and a failure names each shard that failed).
   */
  private async loadModel(c: HostedModelConfig, src: R2ByteSource, opts: LoadOptions): Promise<RunnableModel> {
    this.parts?.remote?.forEach((s) => s.close()); // a model loaded before (an older file): its connections go
    const header = await readModelHeader(src, opts);
    const { cfg, gguf, contextSize, maxBatch } = header;
    const lookup = (name: string) => gguf.tensors.get(name);
    // a part held here shares this isolate with the grammar engine (engine/grammar.ts) and the sampler's kernels
    // (engine/sampler-wasm.ts): it gets the budget less what those may use, and the model is sharded when it does
    // not fit in that
    const relaxed = hasRelaxedSimd();
    if (!samplerKernels()) provideSamplerWasm(relaxed ? relaxedKernels : simdKernels);
    const reserve = coordinatorReserveBytes(cfg.vocabSize);
    const plan = planShards(cfg, lookup, { budgetBytes: this.budgetBytes, contextSize, maxChunk: maxBatch, sequences: opts.sequences, localReserveBytes: reserve });
    const budget = this.budgetBytes ?? null;
    const localBudget = this.budgetBytes === undefined ? undefined : this.budgetBytes - reserve;
    if (plan.parts.length === 1) {
      const backend = new WasmBackend(relaxed ? relaxedKernels : simdKernels, relaxed ? "relaxed" : "simd", { maxBytes: localBudget });
      const m = await loadModel(src, backend, { ...opts, sequences: plan.sequences }, { ...header, maxBatch: plan.chunk });
      this.parts = { local: { backend, report: { index: 0, ...plan.parts[0]!.spec, budget_bytes: localBudget ?? null }, inUse: () => m.part.sequencesInUse }, budgetBytes: budget };
      return m;
    }
    if (plan.parts.length > this.shardCount) {
      throw new Error(
        `the model needs ${plan.parts.length} shards for a budget of ${this.env.SHARD_BUDGET_MB} MB; this deployment has ${this.shardCount} ` +
          `(SHARD_0..SHARD_${this.shardCount - 1}): deploy it for this model with \`gemma-edge deploy\``,
      );
    }
    const shards = plan.parts.map((p) => {
      const tensors = partTensors(cfg, lookup, p.spec).map((t) => {
        const info = gguf.tensors.get(t.name)!;
        return { name: info.name, type: info.type, dims: info.dims, offset: info.offset, nbytes: info.nbytes };
      });
      const load = { index: p.index, key: c.key, etag: src.etag, cfg, spec: p.spec, tensors, sizing: planSizing(plan), budgetBytes: this.budgetBytes! };
      return new RemoteShard(load, () => this.connectShard(c.modelId, p.index));
    });
    this.parts = { remote: shards, budgetBytes: budget };
    let loaded = 0;
    const total = plan.parts.reduce((s, p) => s + p.bytes.weights, 0);
    const errors = await eachLimited(shards, SHARD_LOAD_CONCURRENCY, async (shard) => {
      await shard.ensureReady();
      loaded += plan.parts[shards.indexOf(shard)]!.bytes.weights;
      opts.onProgress?.(loaded, total);
    });
    if (errors.length) throw new Error(errors.map((e) => e.message).join("; "));
    const pipeline = new Pipeline(cfg, shards, { chunk: plan.chunk, contextSize });
    return { ...header, forward: (tokens, pos) => pipeline.forward(tokens, pos, 0), release: () => pipeline.release(0), batch: pipelineBatch(pipeline, plan.sequences, plan.chunk) };
  }

  /** A WebSocket to shard `index`'s Durable Object (one instance per model id in each shard script). */
  private async connectShard(modelId: string, index: number): Promise<CfWebSocket> {
    const ns = this.env[`SHARD_${index}`];
    if (!ns) throw new Error(`no SHARD_${index} binding in this deployment`);
    const res = await ns.get(ns.idFromName(modelId)).fetch("https://shard/connect", { headers: { Upgrade: "websocket" } });
    if (res.status !== 101 || !res.webSocket) throw new Error(`it answered ${res.status} to a WebSocket upgrade: ${await res.text().catch(() => "")}`);
    return res.webSocket;
  }

  /** Each part and how it stands (what /health lists). */
  private async shardReports(): Promise<ShardReport[]> {
    const p = this.parts;
    if (!p) return [];
    if (p.local) {
      return [{ ...p.local.report, status: "ready", wasm_memory_bytes: p.local.backend.memoryBytes, sequences_in_use: p.local.inUse() }];
    }
    return Promise.all(
      p.remote!.map(async (shard, index): Promise<ShardReport> => {
        const s = await shard.status();
        const base = { index, ...shard.spec, budget_bytes: p.budgetBytes };
        if (!s) return { ...base, status: shard.lastError ? "unreachable" : "empty", wasm_memory_bytes: 0, sequences_in_use: 0, ...(shard.lastError ? { error: shard.lastError } : {}) };
        const error = s.error ?? shard.lastError;
        return { ...base, status: s.status, wasm_memory_bytes: s.wasm_memory_bytes, sequences_in_use: s.sequences_in_use, ...(error ? { error } : {}) };
      }),
    );
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
    if (!service.readyAndIdle) return service; // (not status(): that asks every shard)
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
    this.configJson = json;
    this.config = c;
    this.service = new LocalModelService({
      modelId: c.modelId,
      openSource: (onDownload) => this.open(c, onDownload),
      loadModel: (src, opts) => this.loadModel(c, src as R2ByteSource, opts),
      shards: () => this.shardReports(),
      contextSize: c.contextSize,
      maxBatch: c.maxBatch,
      maxBatchSize: c.maxBatchSize,
      prefillChunk: c.prefillChunk,
      promptCacheSlots: c.promptCacheSlots,
      maxQueue: c.maxQueue,
      requestTimeoutMs: c.requestTimeoutMs,
      keepAliveMs: c.keepAliveMs,
      grammarWasm: async () => grammarWasm,
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
        case "/metrics":
          return new Response(await service.metrics(), { headers: { "Content-Type": "text/plain; charset=utf-8" } });
        case "/tokenize": {
          const { text } = (await request.json()) as { text: string };
          return deferredJson(() => service.tokenize(text));
        }
        case "/generate":
          return this.generate(service, (await request.json()) as ServiceRequest);
        case "/reset-shard": {
          // tests only: reset a shard as the platform may (eviction, restart) at any time
          const i = Number(new URL(request.url).searchParams.get("index"));
          const shard = this.parts?.remote?.[i];
          if (this.env.ALLOW_SHARD_RESET !== "1" || !shard) return Response.json({ host_error: "no such shard, or resets are not allowed here" }, { status: 404 });
          await shard.reset();
          return Response.json({ reset: i });
        }
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
