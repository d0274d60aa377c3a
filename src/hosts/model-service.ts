// One loaded model and its requests: loading (with progress, retried after a failure), validation of a request
// against the context, the queue limit (429), the batch scheduler that runs requests together
// (engine/batching.ts), keep-alives while a request waits, a time limit per request, cancellation, and what
// /metrics reports. Host-agnostic: the Durable Object and the Node server both run this; only the ByteSource and
// the Backend they hand in differ.
import type { ByteSource } from "../engine/byte-source.ts";
import { ChatTemplateError } from "../engine/chat-template.ts";
import { encodePrompt } from "../engine/generate.ts";
import { ToolMessageError } from "../engine/tools.ts";
import { ConstraintError, GrammarEngine, grammarWasmProvided, provideGrammarWasm, type TokenConstraint } from "../engine/grammar.ts";
import type { LoadOptions, RunnableModel } from "../engine/model/load.ts";
import { KvCache } from "../engine/model/kv-cache.ts";
import { BatchScheduler, singleSequenceBatch, SINGLE_SEQUENCE, type BatchEvent } from "../engine/batching.ts";
import { ServiceFailure, type ModelInfo, type ModelService, type ModelStatus, type ServiceEvent, type ServiceRequest, type ShardReport } from "../service/contract.ts";
import { ServiceMetrics } from "./service-metrics.ts";

export interface LocalServiceOptions {
  modelId: string;
  /** Opens the model file (an R2 object, a local file); reports progress while it first downloads it, if it does. */
  openSource: (onDownload?: (received: number, total: number) => void) => Promise<ByteSource>;
  /** Loads the model from the source on a fresh backend (each load attempt). */
  loadModel: (src: ByteSource, opts: LoadOptions) => Promise<RunnableModel>;
  contextSize?: number;
  /** Tokens one forward step holds (act rows): decode tokens plus prompt chunks (default 512). */
  maxBatch?: number;
  /** Sequences that run at once (TGI's max_batch_size; default DEFAULT_MAX_BATCH_SIZE). */
  maxBatchSize?: number;
  /** Prompt tokens per forward step while others decode (a multiple of 4; default DEFAULT_PREFILL_CHUNK). */
  prefillChunk?: number;
  /** Finished sequences kept for their prefixes beyond the running ones (0: no prompt cache; default 2). */
  promptCacheSlots?: number;
  /** The compiled build/xgrammar.wasm, fetched on the first constrained request (engine/grammar.ts). */
  grammarWasm?: () => Promise<WebAssembly.Module>;
  /** Requests that may wait for a batch slot before new ones get 429. */
  maxQueue?: number;
  requestTimeoutMs?: number;
  keepAliveMs?: number;
  /** The parts of the model and how they stand, for status() (hosts that know them). */
  shards?: () => Promise<ShardReport[]>;
  /**
   * Whether status() starts loading in the background (default true). The Durable Object says false: it loads
   * inside a response body (see durable-object.ts) when the Worker asks it to warm up.
   */
  autoLoad?: boolean;
}

/** Defaults measured with `npm run bench:serve` (docs/batching.md). */
export const DEFAULT_MAX_BATCH_SIZE = 4;
export const DEFAULT_PREFILL_CHUNK = 128;
export const DEFAULT_PROMPT_CACHE_SLOTS = 2;

/** KV slots a service loads its model with: the running sequences and the kept ones. */
export function serviceSlots(o: Pick<LocalServiceOptions, "maxBatchSize" | "promptCacheSlots">): number {
  return (o.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE) + (o.promptCacheSlots ?? DEFAULT_PROMPT_CACHE_SLOTS);
}

export class LocalModelService implements ModelService {
  readonly modelId: string;
  private readonly opts: LocalServiceOptions;
  private model: RunnableModel | undefined;
  private loading: Promise<RunnableModel> | undefined;
  private loadError: string | undefined;
  private progress = { loaded: 0, total: 0 };
  private phase: "downloading" | "loading" = "loading";
  private lastAttempt = 0;
  private scheduler: BatchScheduler | undefined;
  private readonly serviceMetrics = new ServiceMetrics();
  private requestIds = 0;
  /** The grammar engine of the loaded model's vocabulary (made on the first constrained request). */
  private grammar: { model: RunnableModel; engine: GrammarEngine } | undefined;

  constructor(opts: LocalServiceOptions) {
    // settings checked before any load (a bad one would otherwise fail each load after the whole model was read)
    const check = (ok: boolean, what: string, v: unknown) => {
      if (!ok) throw new RangeError(`${what}, got ${String(v)}`);
    };
    const { maxBatchSize, prefillChunk, promptCacheSlots } = opts;
    check(maxBatchSize === undefined || (Number.isInteger(maxBatchSize) && maxBatchSize >= 1), "MAX_BATCH_SIZE must be a positive integer", maxBatchSize);
    check(prefillChunk === undefined || (Number.isInteger(prefillChunk) && prefillChunk >= 4 && prefillChunk % 4 === 0), "PREFILL_CHUNK must be a positive multiple of 4", prefillChunk);
    check(promptCacheSlots === undefined || (Number.isInteger(promptCacheSlots) && promptCacheSlots >= 0), "PROMPT_CACHE_SLOTS must be a non-negative integer", promptCacheSlots);
    this.opts = opts;
    this.modelId = opts.modelId;
  }

  /** Load the model once; concurrent callers share the load; a failed load is retried by the next caller. */
  load(): Promise<RunnableModel> {
    if (this.model) return Promise.resolve(this.model);
    this.loading ??= (async () => {
      this.lastAttempt = Date.now();
      this.loadError = undefined;
      this.progress = { loaded: 0, total: 0 };
      this.phase = "loading";
      let src: ByteSource | undefined;
      try {
        src = await this.opts.openSource((received, total) => {
          this.phase = "downloading";
          this.progress = { loaded: received, total };
        });
        this.phase = "loading";
        this.progress = { loaded: 0, total: 0 };
        const m = await this.opts.loadModel(src, {
          contextSize: this.opts.contextSize,
          maxBatch: this.opts.maxBatch,
          sequences: serviceSlots(this.opts),
          onProgress: (loaded, total) => (this.progress = { loaded, total }),
        });
        const o = this.opts;
        this.scheduler = m.batch
          ? new BatchScheduler(m.batch, m.tokenizer, {
              maxBatchSize: o.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE, prefillChunk: o.prefillChunk ?? DEFAULT_PREFILL_CHUNK, promptCache: (o.promptCacheSlots ?? DEFAULT_PROMPT_CACHE_SLOTS) > 0,
            })
          : new BatchScheduler(singleSequenceBatch(m), m.tokenizer, { ...SINGLE_SEQUENCE, promptCache: false }); // (WebGPU: see README, Known limits)
        this.serviceMetrics.attach(this.scheduler);
        this.model = m;
        return m;
      } catch (e) {
        this.loadError = (e as Error).message;
        throw new ServiceFailure({ kind: "unavailable", status: 503, message: `model "${this.modelId}" is unavailable: ${this.loadError}` });
      } finally {
        this.loading = undefined;
        await src?.close?.().catch(() => {});
      }
    })();
    return this.loading;
  }

  /** Loaded, and nothing running or waiting. */
  get readyAndIdle(): boolean {
    return this.model !== undefined && !!this.scheduler && this.scheduler.active === 0 && this.scheduler.queued === 0;
  }

  /** Whether a load should start: nothing loaded or loading, and no failure in the last few seconds. */
  get shouldLoad(): boolean {
    return !this.model && !this.loading && (!this.loadError || Date.now() - this.lastAttempt > 5000);
  }

  /** Where loading stands; starts loading (unless autoLoad is off) when idle, or a few seconds after a failure. */
  async status(): Promise<ModelStatus> {
    if (this.opts.autoLoad !== false && this.shouldLoad) void this.load().catch(() => {});
    const shards = await this.opts.shards?.();
    const base = { model: this.modelId, queue_length: (this.scheduler?.queued ?? 0) + (this.scheduler?.active ?? 0), ...(shards ? { shards } : {}) };
    if (this.model) {
      const total = this.progress.total;
      return {
        ...base, status: "ready", progress: 1, loaded_bytes: total, total_bytes: total, context_size: this.model.contextSize,
        architecture: this.model.cfg.arch, kv_bytes_per_sequence: KvCache.bytes(this.model.cfg, this.model.contextSize), kv_slots: this.model.batch?.slots ?? 1,
      };
    }
    const { loaded, total } = this.progress;
    const progress = total ? loaded / total : 0;
    if (this.loading) return { ...base, status: "loading", phase: this.phase, progress, loaded_bytes: loaded, total_bytes: total };
    if (this.loadError) return { ...base, status: "error", progress, loaded_bytes: loaded, total_bytes: total, error: this.loadError };
    return { ...base, status: "idle", progress: 0, loaded_bytes: 0, total_bytes: 0 };
  }

  async metrics(): Promise<string> {
    return this.serviceMetrics.text();
  }

  async info(): Promise<ModelInfo> {
    const m = await this.load();
    return { model: this.modelId, contextSize: m.contextSize, vocabSize: m.cfg.vocabSize, architecture: m.cfg.arch, kvBytesPerSequence: KvCache.bytes(m.cfg, m.contextSize) };
  }

  async tokenize(text: string): Promise<{ ids: number[]; pieces: string[] }> {
    const m = await this.load();
    const ids = m.tokenizer.encode(text);
    return { ids, pieces: ids.map((i) => m.tokenizer.decode([i])) };
  }

  async *generate(req: ServiceRequest, signal?: AbortSignal): AsyncGenerator<ServiceEvent> {
    let m: RunnableModel;
    try {
      m = await this.load();
    } catch (e) {
      yield (e as ServiceFailure).event;
      return;
    }
    // validate against the model before queueing: prompt length, completion budget, chat template
    let promptIds: number[];
    try {
      promptIds = encodePrompt(m, req.prompt);
    } catch (e) {
      if (e instanceof ChatTemplateError || e instanceof ToolMessageError) {
        yield { type: "error", kind: "template", status: 422, message: e.message, field: req.promptField ?? "messages" };
        return;
      }
      throw e;
    }
    const ctx = m.contextSize;
    const promptField = req.promptField ?? "prompt";
    if (promptIds.length >= ctx) {
      yield {
        type: "error", kind: "validation", status: 400, field: promptField,
        message: `This model's maximum context length is ${ctx} tokens. However, your ${promptField} resulted in ${promptIds.length} tokens, which leaves no room for a completion. Please shorten the ${promptField}.`,
      };
      return;
    }
    const room = ctx - promptIds.length;
    if (req.maxTokens !== undefined && req.maxTokens > room) {
      const field = req.maxTokensField ?? "max_tokens";
      yield {
        type: "error", kind: "validation", status: 400, field,
        message: `This model's maximum context length is ${ctx} tokens. However, you requested ${promptIds.length + req.maxTokens} tokens (${promptIds.length} in the ${promptField}, ${req.maxTokens} in the completion). Please reduce the length of the ${promptField} or the value of ${field} (at most ${room}).`,
      };
      return;
    }
    const maxTokens = req.maxTokens ?? room;
    for (const [id] of req.sampling?.logitBias ?? []) {
      if (id >= m.cfg.vocabSize) {
        yield { type: "error", kind: "validation", status: 400, field: "logit_bias", message: `'logit_bias' names token ${id}; the vocabulary has ${m.cfg.vocabSize} tokens` };
        return;
      }
    }
    const sched = this.scheduler!;
    // (those queued now include any the next step admits: the limit counts both)
    const busy = (): ServiceEvent | undefined => {
      if (sched.active + sched.queued < sched.opts.maxBatchSize + (this.opts.maxQueue ?? 8)) return undefined;
      this.serviceMetrics.failed("overloaded");
      return { type: "error", kind: "overloaded", status: 429, message: `model "${this.modelId}" is busy: ${sched.active} requests are running and ${sched.queued} waiting; retry shortly` };
    };
    // the grammar, compiled before the request queues (a schema it cannot enforce is the client's 400); a request
    // that would get a 429 gets it before it costs a compile
    let constraint: TokenConstraint | undefined;
    if (req.constraint) {
      const refused = busy();
      if (refused) {
        yield refused;
        return;
      }
      const field = req.constraintField ?? "response_format";
      try {
        if (!grammarWasmProvided()) {
          if (!this.opts.grammarWasm) throw new Error("this host has no grammar engine (LocalServiceOptions.grammarWasm)");
          provideGrammarWasm(await this.opts.grammarWasm());
        }
        if (!this.grammar || this.grammar.model !== m) this.grammar = { model: m, engine: new GrammarEngine(m.tokenizer, m.cfg.vocabSize) };
        constraint = await this.grammar.engine.constrain(req.constraint, field);
      } catch (e) {
        if (e instanceof ConstraintError) yield { type: "error", kind: "validation", status: 400, field: e.field ?? field, message: e.message };
        else yield { type: "error", kind: "unavailable", status: 503, message: `structured output is unavailable: ${(e as Error).message}` };
        return;
      }
    }

    // queue (checked and joined with no await between, so requests arriving together cannot overshoot it)
    const queuePosition = sched.queued + sched.active;
    const refused = busy();
    if (refused) {
      constraint?.dispose();
      yield refused;
      return;
    }
    // a seed is always set, so that a sampled answer can be reproduced from what the response reports
    const seed = req.sampling?.seed ?? Math.floor(Math.random() * 2 ** 32);
    const events = new EventQueue<BatchEvent>();
    const queuedAt = Date.now();
    const id = ++this.requestIds;
    let handle: ReturnType<typeof sched.submit>;
    try {
      handle = sched.submit(
        { promptIds, maxTokens, sampling: { ...req.sampling, seed }, stop: req.stop, topLogprobs: req.topLogprobs, logprobs: req.logprobs, cachePrompt: req.cachePrompt, constraint },
        (ev) => events.push(ev),
      );
    } catch (e) {
      constraint?.dispose(); // (the scheduler disposes it from here on)
      throw e;
    }
    // the caller going away, or the time limit: the request leaves the queue (or its slot) at once
    const timeoutMs = this.opts.requestTimeoutMs ?? 300_000;
    let timedOut = false;
    const onAbort = () => handle.cancel(); // the scheduler then ends the request with an abort event
    signal?.addEventListener("abort", onAbort);
    if (signal?.aborted) onAbort();
    let timer: ReturnType<typeof setTimeout> | undefined; // the time limit runs from the request's first step
    const tok = m.tokenizer;
    const piece = (id: number) => {
      const bytes = tok.pieceOf(id);
      return { piece: new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes), bytes: Array.from(bytes) };
    };
    let ended = false;
    try {
      yield { type: "accepted", promptTokens: promptIds.length, maxTokens, queuePosition, seed };
      const keepAlive = this.opts.keepAliveMs ?? 10_000;
      for (;;) {
        const ev = await events.next(keepAlive);
        if (ev === "timeout") {
          if (!signal?.aborted && !timedOut) yield { type: "keepalive" };
          continue;
        }
        if (ev.type === "started") {
          this.serviceMetrics.started(id, Date.now() - queuedAt, ev.cachedTokens);
          timer = setTimeout(() => ((timedOut = true), onAbort()), timeoutMs);
          continue;
        }
        if (ev.type === "error") {
          ended = true;
          this.serviceMetrics.failed("generation", id);
          yield { type: "error", kind: "generation", status: 500, message: `generation failed: ${ev.message}` };
          return;
        }
        if (ev.type === "done") {
          ended = true;
          if (ev.finishReason === "abort") this.serviceMetrics.failed(timedOut ? "timeout" : "cancelled", id);
          else this.serviceMetrics.finished(id, ev.promptTokens, ev.completionTokens);
          if (ev.finishReason === "abort" && timedOut) {
            yield { type: "error", kind: "timeout", status: 504, message: `the request exceeded the time limit of ${timeoutMs} ms and was stopped after ${ev.completionTokens} tokens` };
            return;
          }
          if (ev.finishReason === "abort" && signal?.aborted) return;
          yield ev;
          return;
        }
        yield { ...ev, ...piece(ev.id), top: ev.top.map((t) => ({ ...t, ...piece(t.id) })) };
      }
    } finally {
      // the consumer stopped listening (a disconnect) or the request ended: free its place either way
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (!ended) {
        handle.cancel();
        this.serviceMetrics.failed(timedOut ? "timeout" : "cancelled", id);
      }
    }
  }
}

/** Events pushed by the scheduler, pulled by a request's generator (with a time limit per wait for keep-alives). */
class EventQueue<T> {
  private readonly items: T[] = [];
  private waiter: (() => void) | undefined;
  push(v: T): void {
    this.items.push(v);
    this.waiter?.();
  }
  async next(timeoutMs: number): Promise<T | "timeout"> {
    if (this.items.length) return this.items.shift()!;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.waiter = resolve;
      timer = setTimeout(resolve, timeoutMs);
    });
    if (timer !== undefined) clearTimeout(timer);
    this.waiter = undefined;
    return this.items.length ? this.items.shift()! : "timeout";
  }
}
